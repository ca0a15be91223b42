#!/usr/bin/env bash
# TLS benchmarks: the Islet harness over TLS against nginx, on loopback: full handshakes,
# keep-alive requests and memory per idle connection (the cases: islet_bench/tls.py).
# The TLS part of tools/bench/run.sh, with its options; waits up to 120 s for quiet.
#
#   tools/bench/tls_bench.sh                # full run; appends to docs/BENCHMARKS_TLS.md
#   tools/bench/tls_bench.sh --smoke        # one short run of each case; writes nothing
#   tools/bench/tls_bench.sh --no-record    # full run, table on stdout only
#   tools/bench/tls_bench.sh --bin_dir=DIR  # the binaries from DIR/tools/...; builds nothing
set -euo pipefail
exec "$(dirname "$0")/run.sh" --only=tls --quiet_wait=120 "$@" --command="tools/bench/tls_bench.sh${*:+ $*}"
