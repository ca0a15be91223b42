#!/usr/bin/env bash
# Islet's abuse benchmark (issue 12): builds the harness and the flood client (-c opt),
# then runs tools/bench/abuse_bench.py, which measures the cases (about 2 minutes) and
# writes docs/ABUSE.md. `abuse.sh --help` lists the options.
#
#   tools/bench/abuse.sh                 # every case; rewrites docs/ABUSE.md
#   tools/bench/abuse.sh --no_write      # the report on stdout only
#   tools/bench/abuse.sh --bin_dir=DIR   # the binaries from DIR/tools/...; builds nothing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=(/usr/bin/python3 -B "$here/abuse_bench.py" --command="tools/bench/abuse.sh${*:+ $*}")
if [[ " $* " != *" --bin_dir="* && " $* " != *" -h "* && " $* " != *" --help "* ]]; then
  cd "$here/../.."
  echo "abuse: building (-c opt)" >&2
  timeout 1800 bazel build -c opt //tools/harness //tools/abuse:flood_client >&2
  bench+=(--bin_dir="$(bazel info -c opt bazel-bin 2>/dev/null)" --build_mode="bazel build -c opt")
fi
exec timeout 900 "${bench[@]}" "$@"
