"""The three macros every BUILD file in Islet uses: they carry the shared flags."""

# Warnings are errors on our code only; system headers come in through -isystem.
ISLET_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

def islet_cc_library(name, copts = [], **kwargs):
    native.cc_library(name = name, copts = ISLET_COPTS + copts, **kwargs)

def islet_cc_binary(name, copts = [], **kwargs):
    native.cc_binary(name = name, copts = ISLET_COPTS + copts, **kwargs)

def islet_cc_test(name, copts = [], deps = [], size = "small", **kwargs):
    native.cc_test(
        name = name,
        copts = ISLET_COPTS + copts,
        deps = deps + ["//third_party:gtest_main"],
        size = size,
        **kwargs
    )
