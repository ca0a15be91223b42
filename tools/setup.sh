#!/usr/bin/env bash
# Installs the Debian 12 packages Islet builds and tests with. Idempotent and quiet
# when everything is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  bazel-bootstrap        # Bazel 4.2.3
  g++                    # the default toolchain (gcc 12)
  clang                  # --config=fuzz
  libclang-rt-14-dev     # libFuzzer and sanitizer runtimes for clang
  libabsl-dev            # Abseil 20220623
  android-libboringssl-dev  # BoringSSL
  libgtest-dev libgmock-dev # GoogleTest / GoogleMock 1.12
  libbenchmark-dev       # Google Benchmark
  netcat-openbsd         # the README's "try it" step
  wrk nginx-light        # peers and load for the benchmark smoke test
  nghttp2-client         # h2load: keep-alive load for the TLS benchmark smoke
  openssl                # s_client, an external TLS client for tls/tls_external_test (curl too)
  curl                   # the harness test's HTTP client (//tools/harness:harness_test)
  python3                # the benchmark program (tools/bench/bench.py) and its unit tests
  prometheus             # promtool and a real Prometheus for //tools/harness:harness_metrics_test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
