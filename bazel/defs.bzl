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

def islet_cc_binary(name, copts = [], deps = [], **kwargs):
    native.cc_binary(
        name = name,
        copts = ISLET_COPTS + copts,
        # Empty except under --config=tsan (see islet_cc_test).
        deps = deps + ["//testing:tsan_absl_sync"],
        **kwargs
    )

def islet_cc_test(name, copts = [], deps = [], size = "small", io_uring_twin = True, **kwargs):
    """A C++ test, and its io_uring twin `<name>_io_uring` unless io_uring_twin is False.

    The twin runs the same binary with ISLET_EVENT_LOOP=io_uring (bazel/with_event_loop.sh),
    so every server the test starts with the default ServerOptions::event_loop runs on
    io_uring; no second build. Turn it off only for tests that start no event loop.
    Twins of the tools' and examples' tests (the harness, the abuse clients) run in
    tools/test.sh only, tagged no_sanitizer_stage: under the sanitizers the library's own
    twins (server/, tls/, metrics/) cover the io_uring loop, and these would add minutes.
    """
    native.cc_test(
        name = name,
        copts = ISLET_COPTS + copts,
        # tsan_absl_sync is empty except under --config=tsan, where it lets TSan see
        # Debian's uninstrumented Abseil locks.
        deps = deps + ["//third_party:gtest_main", "//testing:tsan_absl_sync"],
        size = size,
        **kwargs
    )
    if not io_uring_twin:
        return
    native.sh_test(
        name = name + "_io_uring",
        srcs = ["//bazel:with_event_loop.sh"],
        args = [
            "io_uring",
            "$(location //server:io_uring_probe)",
            "$(location :%s)" % name,
        ] + kwargs.get("args", []),
        data = [":" + name] + [
            d
            for d in ["//server:io_uring_probe"]
            if d not in kwargs.get("data", [])
        ] + kwargs.get("data", []),
        size = size,
        tags = kwargs.get("tags", []) + (
            ["no_sanitizer_stage"] if native.package_name().startswith(("tools/", "examples/")) else []
        ),
        timeout = kwargs.get("timeout", None),
    )

def islet_cc_fuzz_test(name, srcs, deps = [], corpus = None, **kwargs):
    """A fuzz target that is also an ordinary test.

    By default (gcc) it links a small driver that replays every file in the checked-in
    corpus directory (`<name>_corpus/`, crash regressions included) through
    LLVMFuzzerTestOneInput. Under --config=fuzz it links libFuzzer: `bazel test` then
    replays the corpus with -runs=0, and tools/fuzz.sh runs it as a real fuzzer.
    """
    corpus = corpus or name + "_corpus"
    native.cc_test(
        name = name,
        srcs = srcs,
        copts = ISLET_COPTS,
        deps = deps + select({
            "//bazel:libfuzzer": [],
            "//conditions:default": ["//fuzz:replay_main"],
        }),
        linkopts = select({
            "//bazel:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        data = native.glob([corpus + "/**"]),
        args = [native.package_name() + "/" + corpus] + select({
            "//bazel:libfuzzer": ["-runs=0"],
            "//conditions:default": [],
        }),
        size = kwargs.pop("size", "small"),
        **kwargs
    )
