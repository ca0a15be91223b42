#!/usr/bin/env bash
# Runs fuzz targets as real fuzzers (clang, libFuzzer, ASan, UBSan), each for a bounded
# time, and fails on any finding. A crash input is kept under fuzz/<target>_corpus/ as
# crash-<hash>: commit it with the fix, and it replays in every test run from then on.
#
#   tools/fuzz.sh                 # every target, 60 s each
#   tools/fuzz.sh 30 setopts_fuzz # one target, 30 s
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(sed -n 's/^ *name = "\(.*_fuzz\)",/\1/p' fuzz/BUILD)
fi
tools/setup.sh
bazel build --config=fuzz "${targets[@]/#///fuzz:}"
# Ask Bazel where the fuzz build went: bazel-bin follows whichever build ran last.
bin=$(bazel info --config=fuzz bazel-bin 2>/dev/null)
status=0
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp -r "fuzz/${t}_corpus/." "$work/"
  echo "fuzz: $t for ${seconds}s"
  # New inputs go to a scratch copy of the corpus; findings come back as crash files.
  if ! "$bin/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="fuzz/${t}_corpus/" "$work" 2>"$work.log"; then
    echo "fuzz: $t FOUND A PROBLEM; the input is in fuzz/${t}_corpus/; the log ends:" >&2
    tail -40 "$work.log" >&2
    status=1
  fi
  grep -E "DONE|stat::number_of_executed_units|stat::average_exec_per_sec" "$work.log" || true
  rm -rf "$work" "$work.log"
done
exit $status
