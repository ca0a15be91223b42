#!/usr/bin/env bash
# Restart benchmark: the harness under wrk with and without a takeover half-way through
# (the case: islet_bench/restart.py). The restart part of tools/bench/run.sh.
#
#   tools/bench/restart_bench.sh              # full run; appends to docs/BENCHMARKS_RESTART.md
#   tools/bench/restart_bench.sh --smoke      # one short run; writes nothing
#   tools/bench/restart_bench.sh --no-record  # full run, table on stdout only
set -euo pipefail
exec "$(dirname "$0")/run.sh" --only=restart --quiet_wait=120 "$@" --command="tools/bench/restart_bench.sh${*:+ $*}"
