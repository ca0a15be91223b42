#!/usr/bin/env bash
# Installs the Debian 12 packages Islet builds and tests with, and fetches BoringSSL's
# source once. Idempotent and quiet when everything is already there. Needs root (or
# sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  bazel-bootstrap        # Bazel 4.2.3
  g++                    # the default toolchain (gcc 12)
  clang                  # --config=fuzz
  libclang-rt-14-dev     # libFuzzer and sanitizer runtimes for clang
  libabsl-dev            # Abseil 20220623
  libgtest-dev libgmock-dev # GoogleTest / GoogleMock 1.12
  libbenchmark-dev       # Google Benchmark
  liburing-dev           # liburing 2.3: the io_uring event loop and benchmark floors
  netcat-openbsd         # the README's "try it" step
  wrk nginx-light        # peers and load for the benchmark smoke test
  nghttp2-client         # h2load: keep-alive load for the TLS benchmark smoke
  openssl                # s_client, an external TLS client for tls/tls_external_test (curl too)
  curl                   # the harness test's HTTP client (//tools/harness:harness_test)
  python3                # the benchmark program (tools/bench/bench.py) and its unit tests
  gnuplot-nox            # the chart of docs/BENCHMARKS.md (docs/benchmarks_cpu.svg)
  prometheus             # promtool and a real Prometheus for //tools/harness:harness_metrics_test
  haproxy libnginx-mod-stream # real PROXY protocol senders (//tools/harness:harness_proxy_protocol_test)
)
# BoringSSL is not a package here: Debian's (android-libboringssl) is built with
# OPENSSL_SMALL, which leaves P-256 on portable C. It is built from source instead.

sudo=()
need_root() {
  ((${#sudo[@]} > 0)) || [[ $(id -u) -eq 0 ]] && return 0
  command -v sudo >/dev/null || { echo "setup: need root to $1" >&2; exit 1; }
  sudo=(sudo)
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  need_root "install: ${missing[*]}"
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BoringSSL's source: the orig tarball of Debian's android-platform-external-boringssl,
# which @boringssl (bazel/repositories.bzl, the one place these values live) reads from a
# fixed directory and checks against the same sha256. Any Debian revision of the package
# carries the same orig tarball; a new upstream version would not: its name differs.
bzl_value() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" bazel/repositories.bzl; }
archive=$(bzl_value BORINGSSL_ARCHIVE)
sha256=$(bzl_value BORINGSSL_SHA256)
cache_dir=$(bzl_value BORINGSSL_CACHE_DIR)
[[ -n $archive && -n $sha256 && -n $cache_dir ]] ||
  { echo "setup: cannot read the BORINGSSL_* values in bazel/repositories.bzl" >&2; exit 1; }
has_sha256() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$sha256" ]]; }
has_sha256 "$cache_dir/$archive" && exit 0

# apt needs deb-src entries to fetch a source package. The machine's configuration stays
# untouched: a private source list, with a deb-src entry for each of its deb entries
# (one-line .list files and deb822 .sources files), private package lists and cache.
work=$(mktemp -d)
# apt may have run through sudo and left root-owned files there.
trap '"${sudo[@]}" rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/download"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f $f ]] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
done >"$work/sources.list"
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f $f ]] || continue
  # Each stanza (blank-line separated) whose Types has deb, as a deb-src stanza.
  awk 'BEGIN { RS = "" }
       {
         n = split($0, line, "\n"); out = ""; deb = 0
         for (i = 1; i <= n; i++) {
           if (line[i] ~ /^Types:/) {
             deb = (line[i] ~ /[: ]deb( |$)/); line[i] = "Types: deb-src"
           }
           out = out line[i] "\n"
         }
         if (deb) printf "%s\n", out
       }' "$f" >"$work/parts/$(basename "$f")"
done
apt_options=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
)
log=$(mktemp "${TMPDIR:-/tmp}/islet-setup-boringssl.XXXXXX.log")
if [[ ! -w $cache_dir && ! ( ! -e $cache_dir && -w $(dirname "$cache_dir") ) ]]; then
  need_root "write $cache_dir"
fi
# The download directory must be writable by apt's unprivileged download user.
chmod 755 "$work" && chmod 777 "$work/download"
# An unreachable third-party entry fails the update but not the fetch from the others.
if ! { "${sudo[@]}" apt-get "${apt_options[@]}" update
       (cd "$work/download" && "${sudo[@]}" apt-get "${apt_options[@]}" source --download-only \
         android-platform-external-boringssl); } >"$log" 2>&1 ||
   [[ ! -f $work/download/$archive ]]; then
  echo "setup: could not fetch $archive with apt (deb-src entries derived from this machine's deb entries); apt's output is in $log" >&2
  exit 1
fi
rm -f "$log"
if ! has_sha256 "$work/download/$archive"; then
  echo "setup: $archive from apt has sha256 $(sha256sum "$work/download/$archive" | cut -d' ' -f1), expected $sha256 (bazel/repositories.bzl)" >&2
  exit 1
fi
"${sudo[@]}" mkdir -p "$cache_dir"
"${sudo[@]}" cp "$work/download/$archive" "$cache_dir/$archive.partial"
"${sudo[@]}" mv "$cache_dir/$archive.partial" "$cache_dir/$archive"
echo "setup: fetched $archive into $cache_dir" >&2
