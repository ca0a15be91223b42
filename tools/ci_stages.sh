#!/usr/bin/env bash
# The CI stages after the test suite (.ci/run calls this after tools/test.sh):
#   1. every test under AddressSanitizer + UndefinedBehaviorSanitizer (gcc),
#   2. every test under ThreadSanitizer (gcc),
#   3. each fuzz target as a real fuzzer for FUZZ_SECONDS (default 60) under clang.
# Any failure or fuzzer finding fails the stage. Each stage builds into its own output
# tree (see .bazelrc), so they do not rebuild each other.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
echo "ci: tests under asan+ubsan"
bazel test --config=asan --config=ubsan //...
echo "ci: tests under tsan"
bazel test --config=tsan //...
echo "ci: fuzzing, ${FUZZ_SECONDS:-60}s per target"
tools/fuzz.sh "${FUZZ_SECONDS:-60}"
