#!/usr/bin/env bash
# Islet's benchmark suite, the one command: builds the servers and load tools (-c opt),
# then runs tools/bench/bench.py, which measures every case (median of 5 runs of 10 s,
# with min and max; the harness on its epoll and its io_uring loop, the bare epoll and
# io_uring servers, nginx), rewrites the tables in docs/BENCHMARKS.md, redraws their chart
# (docs/benchmarks_cpu.svg, with gnuplot) and, last, runs the TLS cases
# (docs/BENCHMARKS_TLS.md). `run.sh --help` lists the options.
#
#   tools/bench/run.sh                # everything (~25 minutes on a quiet machine)
#   tools/bench/run.sh --smoke        # each case once for ~1 s, writes nothing; nonzero
#                                     # exit on any failure (//tools/bench:bench_smoke_test)
#   tools/bench/run.sh --bin_dir=DIR  # the binaries from DIR/tools/...; builds nothing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=(/usr/bin/python3 -B "$here/bench.py" --command="tools/bench/run.sh${*:+ $*}")
if [[ " $* " != *" --bin_dir="* && " $* " != *" -h "* && " $* " != *" --help "* ]]; then
  cd "$here/../.."
  echo "bench: building (-c opt)" >&2
  timeout 1800 bazel build -c opt //tools/harness //tools/bench:epoll_echo //tools/bench:epoll_http \
    //tools/bench:uring_echo //tools/bench:uring_http \
    //tools/bench:echo_load //tools/bench:idle_conns //tools/bench:pipelined_load \
    //tools/bench:tls_handshake_load //tools/bench:tls_idle_conns >&2
  bench+=(--bin_dir="$(bazel info -c opt bazel-bin 2>/dev/null)" --build_mode="bazel build -c opt")
fi
exec "${bench[@]}" "$@"
