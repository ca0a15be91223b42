#!/usr/bin/env bash
# Runs every test: installs what is missing, runs `bazel test //...`, then builds and
# tests examples/consumer, a separate workspace that depends on Islet as an external
# repository (so depending on our targets can never silently break).
# Extra arguments go to the main bazel test (e.g. tools/test.sh --config=asan).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel test //... "$@"
(cd examples/consumer && bazel test //... && bazel shutdown)
