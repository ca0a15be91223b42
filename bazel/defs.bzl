"""The three macros every BUILD file in Atoll uses: they carry the shared flags."""

# Warnings are errors on our code only; system headers come in through -isystem.
ATOLL_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

def atoll_cc_library(name, copts = [], **kwargs):
    native.cc_library(name = name, copts = ATOLL_COPTS + copts, **kwargs)

def atoll_cc_binary(name, copts = [], **kwargs):
    native.cc_binary(name = name, copts = ATOLL_COPTS + copts, **kwargs)

def atoll_cc_test(name, copts = [], deps = [], size = "small", **kwargs):
    native.cc_test(
        name = name,
        copts = ATOLL_COPTS + copts,
        deps = deps + ["//third_party:gtest_main"],
        size = size,
        **kwargs
    )
