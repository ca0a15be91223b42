"""Declares what Islet's targets need, for a workspace that depends on Islet.

    local_repository(name = "islet", path = "/path/to/islet")   # or an http_archive
    load("@islet//bazel:repositories.bzl", "islet_dependencies")
    islet_dependencies(islet_path = "/path/to/islet")

Offline, Bazel 4's built-in rules ask for repositories it would download; Islet ships
local stand-ins for them under third_party/offline/. A workspace with internet access can
declare the real repositories instead and skip the stand-ins (with_offline_stand_ins =
False).

BoringSSL is built from source (@boringssl, third_party/boringssl.BUILD): the orig
tarball of Debian's source package android-platform-external-boringssl, which
tools/setup.sh fetches once with apt into BORINGSSL_CACHE_DIR. Bazel checks its sha256
and keeps it in its repository cache. A workspace that declares its own @boringssl
(with upstream's `crypto` and `ssl` targets) before calling islet_dependencies keeps it.
"""

load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")

# tools/setup.sh reads the last three: keep each a one-line assignment.
BORINGSSL_VERSION = "13.0.0+r24"
BORINGSSL_ARCHIVE = "android-platform-external-boringssl_13.0.0+r24.orig.tar.xz"
BORINGSSL_SHA256 = "583b7aeee1fca68b8244d086cea6fca23bd19d517bd63f0b9de714e048f92a7d"
BORINGSSL_CACHE_DIR = "/var/cache/islet"

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
    if "boringssl" not in native.existing_rules():
        http_archive(
            name = "boringssl",
            urls = ["file://%s/%s" % (BORINGSSL_CACHE_DIR, BORINGSSL_ARCHIVE)],
            sha256 = BORINGSSL_SHA256,
            strip_prefix = "android-platform-external-boringssl-" + BORINGSSL_VERSION,
            build_file = "@islet//third_party:boringssl.BUILD",
        )
