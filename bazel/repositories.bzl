"""Declares what Islet's targets need, for a workspace that depends on Islet.

    local_repository(name = "islet", path = "/path/to/islet")   # or an http_archive
    load("@islet//bazel:repositories.bzl", "islet_dependencies")
    islet_dependencies(islet_path = "/path/to/islet")

Offline, Bazel 4's built-in rules ask for repositories it would download; Islet ships
local stand-ins for them under third_party/offline/. BoringSSL's headers come from
Debian's android-libboringssl-dev. A workspace with internet access can declare the real
repositories instead and skip the stand-ins (with_offline_stand_ins = False).
"""

_STAND_INS = [
    "bazel_skylib",
    "platforms",
    "remote_coverage_tools",
    "remote_java_tools_linux",
    "rules_cc",
    "rules_java",
    "rules_pkg",
    "rules_proto",
]

def islet_dependencies(islet_path, with_offline_stand_ins = True):
    if with_offline_stand_ins:
        for name in _STAND_INS:
            if name not in native.existing_rules():
                native.local_repository(
                    name = name,
                    path = islet_path + "/third_party/offline/" + name,
                )
    # BoringSSL's headers get a repository of their own so that they reach the compiler
    # through -isystem ahead of /usr/include, where OpenSSL's headers of the same names
    # may live. The libraries are linked in //third_party:boringssl.
    native.new_local_repository(
        name = "system_boringssl_headers",
        build_file = "@islet//third_party:boringssl_headers.BUILD",
        path = "/usr/include/android",
    )
