#!/usr/bin/env bash
# The CI stages after the test suite (.ci/run calls this after tools/test.sh):
#   1. every test but the benchmark smoke tests under AddressSanitizer and
#      UndefinedBehaviorSanitizer (gcc),
#   2. the same under ThreadSanitizer (gcc),
#   3. each fuzz target as a real fuzzer for FUZZ_SECONDS (default 40) under clang.
# Any failure or fuzzer finding fails the stage. Each stage builds into its own output
# tree (see .bazelrc), so they do not rebuild each other.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# The benchmark smoke tests (tagged no_sanitizer_stage) run in tools/test.sh only: they
# drive the same harness code the other tests cover, and under a sanitizer they would
# add minutes to CI for no coverage of their own.
# --build_tests_only: the benchmark servers and load tools are not built again under
# each sanitizer for nothing.
echo "ci: tests under asan+ubsan"
bazel test --config=asan --config=ubsan --build_tests_only --test_tag_filters=-no_sanitizer_stage //...
echo "ci: tests under tsan"
bazel test --config=tsan --build_tests_only --test_tag_filters=-no_sanitizer_stage //...
echo "ci: fuzzing, ${FUZZ_SECONDS:-40}s per target"
tools/fuzz.sh "${FUZZ_SECONDS:-40}"
