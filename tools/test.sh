#!/usr/bin/env bash
# Runs every test: installs what is missing, then `bazel test //...`.
# Extra arguments go to bazel (e.g. tools/test.sh --config=asan).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel test //... "$@"
