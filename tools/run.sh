#!/usr/bin/env bash
# Builds and starts the server harness (echo on 127.0.0.1:4000 by default).
# Extra arguments are harness flags, e.g. tools/run.sh --port=5000.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build -c opt //tools/harness
exec bazel-bin/tools/harness/harness "$@"
