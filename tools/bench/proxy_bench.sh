#!/usr/bin/env bash
# Proxy benchmarks: examples/proxy in the harness against HAProxy (mode tcp), one thread
# each, on loopback: keep-alive requests, bulk transfer and new connections (the cases:
# islet_bench/proxy.py). The proxy part of tools/bench/run.sh, with its options.
#
#   tools/bench/proxy_bench.sh               # full run; appends to docs/BENCHMARKS_PROXY.md
#   tools/bench/proxy_bench.sh --smoke       # one short run of each case; writes nothing
#   tools/bench/proxy_bench.sh --no-record   # full run, table on stdout only
set -euo pipefail
exec "$(dirname "$0")/run.sh" --only=proxy --quiet_wait=120 "$@" --command="tools/bench/proxy_bench.sh${*:+ $*}"
