#!/usr/bin/env bash
# Runs a test binary with its servers on another event loop: the io_uring twin of each
# islet_cc_test (bazel/defs.bzl). Usage: with_event_loop.sh KIND PROBE TEST [ARGS...]
# Where the kernel or its policy refuses io_uring (PROBE exits 77), the twin passes
# after saying so on stderr and in the test log: such a machine has nothing to test.
set -uo pipefail
kind=$1
probe=$2
shift 2
if [[ $kind == io_uring ]]; then
  why=$("$probe" 2>&1)
  status=$?
  if [[ $status == 77 ]]; then
    echo "SKIPPED: io_uring is refused on this machine: $why" >&2
    exit 0
  elif [[ $status != 0 ]]; then
    echo "io_uring probe failed ($status): $why" >&2
    exit 1
  fi
fi
export ISLET_EVENT_LOOP=$kind
exec "$@"
