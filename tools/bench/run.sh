#!/usr/bin/env bash
# Islet's benchmark suite: the one command.
#
#   tools/bench/run.sh            # builds -c opt, runs every case (median of 5 runs of
#                                 # 10 s each, with min and max), prints the table and
#                                 # writes it, the command and the machine into
#                                 # docs/BENCHMARKS.md
#   tools/bench/run.sh --smoke    # one ~1 s run of each case, no medians, writes nothing;
#                                 # exits nonzero if any case fails (also a Bazel test:
#                                 # //tools/bench:bench_smoke_test)
#
# Options: --runs=N (5)  --duration=SECONDS (10)  --only=http,echo,footprint,scaling,tls
#          --idle_connections=N (10000)  --no_write (print only)
#          --quiet_wait=SECONDS (300; 0 in the smoke): before each case, wait up to this
#          long for the machine to be idle (under 10% busy) without us; a run during
#          which other processes took over 15% of the machine is done again (twice at
#          most)
#          --bin_dir=DIR: take the binaries from DIR/tools/... and build nothing
#          (the Bazel test passes its runfiles).
#
# The TLS cases (handshakes, keep-alive and idle memory against nginx) are
# tools/bench/tls_bench.sh, run last with the same binaries; it keeps its own table in
# docs/BENCHMARKS_TLS.md.
#
# What runs: each server on 127.0.0.1, pinned to core 0 (taskset); the load generator
# pinned to core 1 (one thread). The first figure of every case is the server's CPU
# time per operation: utime+stime of the server's processes (/proc/PID/stat) over the
# measured run, divided by the operations the load tool completed. A single load thread
# cannot saturate a fast server, so requests/s mostly measures the load tool; CPU/op
# does not. Every process started here runs under `timeout`, and every server is
# stopped (by its own pid) on exit.
set -euo pipefail

smoke=0
runs=5
duration=10
only="http,echo,footprint,scaling,tls"
idle_connections=10000
write_doc=1
bin_dir=""
quiet_wait=300
command_line="tools/bench/run.sh${*:+ $*}"
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --runs=*) runs=${arg#*=} ;;
    --duration=*) duration=${arg#*=} ;;
    --only=*) only=${arg#*=} ;;
    --idle_connections=*) idle_connections=${arg#*=} ;;
    --no_write) write_doc=0 ;;
    --bin_dir=*) bin_dir=${arg#*=} ;;
    --quiet_wait=*) quiet_wait=${arg#*=} ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "run.sh: unknown argument $arg (see --help)" >&2
      exit 2
      ;;
  esac
done
if ((smoke)); then
  runs=1
  duration=1
  write_doc=0
  quiet_wait=0
  if [[ $idle_connections == 10000 ]]; then idle_connections=1000; fi
fi

script_dir=$(cd "$(dirname "$0")" && pwd)
lua_script=$script_dir/pipeline.lua
started=$SECONDS

# ---- Binaries ----------------------------------------------------------------------

if [[ -z $bin_dir ]]; then
  repo=$(cd "$script_dir/../.." && pwd)
  cd "$repo"
  echo "bench: building (-c opt)" >&2
  timeout 1800 bazel build -c opt //tools/harness //tools/bench:epoll_echo \
    //tools/bench:epoll_http //tools/bench:echo_load //tools/bench:idle_conns \
    //tools/bench:pipelined_load //tools/bench:tls_handshake_load //tools/bench:tls_idle_conns >&2
  bin_dir=$(bazel info -c opt bazel-bin 2>/dev/null)
  build_mode="bazel build -c opt"
else
  bin_dir=$(cd "$bin_dir" && pwd)
  repo=""
  build_mode="given by --bin_dir (the Bazel test: that build's mode)"
fi
harness=$bin_dir/tools/harness/harness
epoll_echo=$bin_dir/tools/bench/epoll_echo
epoll_http=$bin_dir/tools/bench/epoll_http
echo_load=$bin_dir/tools/bench/echo_load
pipelined_load=$bin_dir/tools/bench/pipelined_load
idle_conns=$bin_dir/tools/bench/idle_conns
for b in "$harness" "$epoll_echo" "$epoll_http" "$echo_load" "$pipelined_load" "$idle_conns"; do
  [[ -x $b ]] || { echo "run.sh: missing binary $b" >&2; exit 1; }
done

find_tool() {  # name: prints its path, or nothing
  local p
  p=$(command -v "$1" 2>/dev/null) && { echo "$p"; return; }
  for d in /usr/sbin /sbin /usr/local/sbin /usr/local/bin /usr/bin; do
    [[ -x $d/$1 ]] && { echo "$d/$1"; return; }
  done
  return 0
}
wrk=$(find_tool wrk)
nginx=$(find_tool nginx)

# Pinning: server on core 0, load on core 1, when there are two cores to pin to.
server_cpu=""
load_cpu=""
if [[ $(nproc) -ge 2 ]] && taskset -c 0,1 true 2>/dev/null; then
  server_cpu=0
  load_cpu=1
else
  echo "bench: fewer than 2 usable cores: nothing pinned" >&2
fi
on_load_cpu=()  # the prefix that pins a load generator
[[ -n $load_cpu ]] && on_load_cpu=(taskset -c "$load_cpu")

tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/islet-bench.XXXXXX")
# One line per run: case|server|cpu_us_per_op|ops_per_s|p99_us|server_cpu_%|foreign_cpu_%
# (scaling: case|server|workers|...); footprint: server|connections|rss_before_kb|
# rss_after_kb|threads.
results=$tmp/results
footprint=$tmp/footprint
scaling=$tmp/scaling
: >"$results"
: >"$footprint"
: >"$scaling"
failures_file=$tmp/failures  # one line per failure (written from subshells too)
: >"$failures_file"
skipped=()

fail() {
  echo "bench: FAIL: $*" >&2
  echo "$*" >>"$failures_file"
}

# ---- Processes -----------------------------------------------------------------------

children_of() {  # pid: its child processes, one per line
  if command -v pgrep >/dev/null; then
    pgrep -P "$1" || true
  else  # no procps: read the parent of every process
    awk -v parent="$1" 'FNR == 1 { line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
      if (f[2] == parent) { split(FILENAME, d, "/"); print d[3] } }' /proc/[0-9]*/stat 2>/dev/null || true
  fi
}

# Our children, the `timeout` processes around the servers: their pids stay ours until
# we wait for them. The servers (their children) and nginx's workers are kept as
# PID:START_TIME, so that a pid the system has given to another process since is never
# signalled.
wrappers=()
server_pids=()

start_time() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || true; }
remember_server() { server_pids+=("$1:$(start_time "$1")"); }
signal_server() {  # signal PID:START_TIME
  local pid=${2%%:*}
  if [[ -n ${2#*:} && $(start_time "$pid") == "${2#*:}" ]]; then
    kill "-$1" "$pid" 2>/dev/null || true
  fi
}

stop_all() {
  local w p
  for w in "${wrappers[@]}"; do
    kill -TERM "$w" 2>/dev/null || true  # timeout passes it on to the server
  done
  for p in "${server_pids[@]}"; do signal_server TERM "$p"; done
  for p in "${wrappers[@]}" "${server_pids[@]%%:*}"; do
    for _ in $(seq 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
  done
  for p in "${server_pids[@]}"; do signal_server KILL "$p"; done
  for w in "${wrappers[@]}"; do
    kill -KILL "$w" 2>/dev/null || true
    wait "$w" 2>/dev/null || true
  done
  wrappers=()
  server_pids=()
}

on_exit() {
  stop_all
  rm -rf "$tmp"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Starts a server under `timeout`; waits until `ready_check` passes. Sets SERVER_PID
# (the server process itself), SERVER_PORT.
SERVER_PID=""
SERVER_PORT=""
start_server() {  # name cpu lifetime port_source cmd...  (port_source: stdout or a number)
  local name=$1 cpu=$2 lifetime=$3 port_source=$4
  shift 4
  local out=$tmp/$name.out err=$tmp/$name.err
  if [[ -n $cpu ]]; then
    timeout -k 5 "$lifetime" taskset -c "$cpu" "$@" >"$out" 2>"$err" &
  else
    timeout -k 5 "$lifetime" "$@" >"$out" 2>"$err" &
  fi
  local w=$!
  wrappers+=("$w")
  SERVER_PID=""
  SERVER_PORT=""
  local i
  for i in $(seq 150); do
    if ! kill -0 "$w" 2>/dev/null; then
      fail "$name did not start: $(tail -3 "$err" | tr '\n' ' ')"
      return 1
    fi
    if [[ $port_source == stdout ]]; then
      SERVER_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$out" | head -1)
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port_source") 2>/dev/null; then
      SERVER_PORT=$port_source
    fi
    if [[ -n $SERVER_PORT ]]; then
      SERVER_PID=$(children_of "$w" | head -1)
      if [[ -n $SERVER_PID ]]; then
        remember_server "$SERVER_PID"
        return 0
      fi
    fi
    sleep 0.1
  done
  fail "$name did not listen within 15 s: $(tail -3 "$err" | tr '\n' ' ')"
  return 1
}

# The server's processes: the pid and its children (nginx's workers).
tree_pids() {
  echo "$1"
  children_of "$1"
}

# utime+stime, in clock ticks, of the given processes (all threads of each).
cpu_ticks() {
  local total=0 p stat rest
  for p in "$@"; do
    stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    # shellcheck disable=SC2086
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

status_sum() {  # field pids...: sums a /proc/PID/status field (VmRSS in kB, Threads)
  local field=$1 total=0 p v
  shift
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

fd_count() {
  local total=0 p n
  for p in "$@"; do
    n=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
    total=$((total + n))
  done
  echo "$total"
}

free_port() {  # a port nothing listens on, outside the ephemeral range
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

clk_tck=$(getconf CLK_TCK)

# Busy ticks of all cores together (/proc/stat).
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# CPU ticks of this shell's finished children (the load tool once it has exited), from
# `times` run by the caller's shell itself (not in a $(...) subshell) into FILE.
children_ticks() {  # file
  tail -1 "$1" | awk -v hz="$clk_tck" '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] }
    printf "%.0f", t * hz }'
}

# How busy the machine is without us (other processes steal from the figures): the
# percentage of all cores busy over 2 s, sampled while nothing of ours runs.
busy_percent() {
  local a b
  read -r -a a < <(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  sleep 2
  read -r -a b < <(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
  awk -v busy=$((b[0] - a[0])) -v idle=$((b[1] - a[1])) \
    'BEGIN { printf "%.0f", (busy + idle > 0) ? 100 * busy / (busy + idle) : 0 }'
}
background_before=$(busy_percent)
if ((background_before > 10)); then
  echo "bench: WARNING: the machine is ${background_before}% busy without us: figures will be noisy" >&2
fi
busiest_wait=""  # the busiest sample we went ahead with after --quiet_wait ran out

# Waits (up to --quiet_wait seconds) until the machine is under 10% busy without us.
wait_quiet() {
  ((quiet_wait > 0)) || return 0
  local waited=0 busy
  while :; do
    busy=$(busy_percent)
    ((busy < 10)) && break
    if ((waited >= quiet_wait)); then
      echo "bench: WARNING: still ${busy}% busy without us after ${waited} s: going ahead" >&2
      [[ -z $busiest_wait || $busy -gt $busiest_wait ]] && busiest_wait=$busy
      break
    fi
    ((waited == 0)) && echo "bench: the machine is ${busy}% busy without us: waiting (up to ${quiet_wait} s)" >&2
    sleep 3
    waited=$((waited + 5))
  done
}

# ---- The servers -------------------------------------------------------------------

# start_peer KIND LIFETIME [WORKERS] [PIN]: starts one server; sets SERVER_PID/PORT.
# Kinds: islet_http, islet_echo, epoll_http, epoll_echo, nginx.
start_peer() {
  local kind=$1 lifetime=$2 workers=${3:-1} cpu=${4-$server_cpu}
  case "$kind" in
    islet_http | islet_echo)
      local handler=http_hello
      [[ $kind == islet_echo ]] && handler="echo"
      start_server "$kind" "$cpu" "$lifetime" stdout "$harness" --handler="$handler" \
        --port=0 --num_workers="$workers" --log=off --shutdown_timeout=1s
      ;;
    epoll_http)
      start_server "$kind" "$cpu" "$lifetime" stdout "$epoll_http" --port=0 --threads="$workers" ;;
    epoll_echo)
      start_server "$kind" "$cpu" "$lifetime" stdout "$epoll_echo" --port=0 --threads="$workers" ;;
    nginx)
      local dir=$tmp/nginx port user=""
      mkdir -p "$dir"
      port=$(free_port) || { fail "nginx: no free port"; return 1; }
      [[ $(id -u) == 0 ]] && user="user $(id -un) $(id -gn);"
      local nofile
      nofile=$(ulimit -Hn)
      [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
      cat >"$dir/nginx.conf" <<EOF
# Written by tools/bench/run.sh: the nginx peer for the HTTP hello benchmarks.
worker_processes 1;
daemon off;
master_process on;
$user
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $nofile;
events {
  worker_connections $((nofile - 100));
}
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type text/plain;
      return 200 "Hello world!";
    }
  }
}
EOF
      start_server nginx "$cpu" "$lifetime" "$port" "$nginx" -p "$dir" -c "$dir/nginx.conf" \
        -e "$dir/error.log" || return 1
      local p
      for p in $(children_of "$SERVER_PID"); do remember_server "$p"; done
      ;;
  esac
}

# ---- Loads ---------------------------------------------------------------------------

to_us() {  # "16.32ms", "214.00us", "1.2s", "850ns", absl's "1.5ms" -> microseconds
  [[ $1 == - ]] && { echo -; return; }
  awk -v d="$1" 'BEGIN {
    if (match(d, /^[0-9.]+/)) { v = substr(d, 1, RLENGTH); u = substr(d, RLENGTH + 1) } else { print "nan"; exit }
    if (u == "ns") v /= 1000; else if (u == "ms") v *= 1000; else if (u == "s") v *= 1000000;
    else if (u == "m") v *= 60000000;
    printf "%.1f", v }'
}

# measure KIND PIDS LOAD...: runs one load against the server, records CPU per op.
# LOAD is "wrk CONNECTIONS DEPTH" or "echo CONNECTIONS DEPTH". Prints
# "cpu_us_per_op ops_per_s p99_us" on success.
measure() {
  local name=$1 port=$2 pid=$3 tool=$4 conns=$5 depth=$6
  local pids out=$tmp/load.out before after wall foreign ops rate p99 rc=0
  mapfile -t pids < <(tree_pids "$pid")
  if ! kill -0 "$pid" 2>/dev/null; then
    fail "$name: the server is gone"
    return 1
  fi
  before=$(cpu_ticks "${pids[@]}")
  local t0 busy0 kids0
  busy0=$(machine_busy_ticks)
  times >"$tmp/times.0"
  kids0=$(children_ticks "$tmp/times.0")
  t0=$(date +%s%N)
  if [[ $tool == wrk ]]; then
    local script=()
    ((depth > 1)) && script=(-s "$lua_script")
    "${on_load_cpu[@]}" timeout -k 5 $((duration + 30)) "$wrk" -t1 -c"$conns" -d"${duration}s" \
      --timeout 5s --latency "${script[@]}" "http://127.0.0.1:$port/" \
      ${script:+-- "$depth"} >"$out" 2>&1 || rc=$?
    after=$(cpu_ticks "${pids[@]}")
    wall=$(($(date +%s%N) - t0))
    times >"$tmp/times.1"
    foreign=$(($(machine_busy_ticks) - busy0 - (after - before) - ($(children_ticks "$tmp/times.1") - kids0)))
    ops=$(awk '/requests in/ { print $1 }' "$out")
    rate=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    # wrk corrects its histogram for coordinated omission assuming one request per
    # round trip: under pipelining that correction makes its percentiles meaningless.
    p99=-
    ((depth == 1)) && p99=$(awk '/^ +99%/ { print $2 }' "$out")
    local errs
    errs=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 } /Non-2xx/ { print $NF }' "$out" |
      awk '{ s += $1 } END { print s + 0 }')
    if ((rc != 0)) || [[ -z $ops || -z $rate ]] || ((errs > 0)); then
      fail "$name: wrk -c$conns depth $depth: exit $rc, errors ${errs:-?}: $(tr '\n' ' ' <"$out" | tail -c 400)"
      return 1
    fi
  elif [[ $tool == pipelined_* ]]; then
    "${on_load_cpu[@]}" timeout -k 5 $((duration + 30)) "$pipelined_load" \
      --target="127.0.0.1:$port" --request="${tool#pipelined_}" --connections="$conns" \
      --depth="$depth" --duration="${duration}s" --warmup=0s >"$out" 2>&1 || rc=$?
    after=$(cpu_ticks "${pids[@]}")
    wall=$(($(date +%s%N) - t0))
    times >"$tmp/times.1"
    foreign=$(($(machine_busy_ticks) - busy0 - (after - before) - ($(children_ticks "$tmp/times.1") - kids0)))
    ops=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' "$out")
    rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' "$out")
    p99=-
    if ((rc != 0)) || [[ -z $ops ]]; then
      fail "$name: pipelined_load -c$conns depth $depth: exit $rc: $(tr '\n' ' ' <"$out" | tail -c 400)"
      return 1
    fi
  else
    "${on_load_cpu[@]}" timeout -k 5 $((duration + 30)) "$echo_load" \
      --target="127.0.0.1:$port" --connections="$conns" --size=64 --depth="$depth" \
      --duration="${duration}s" --warmup=0s >"$out" 2>&1 || rc=$?
    after=$(cpu_ticks "${pids[@]}")
    wall=$(($(date +%s%N) - t0))
    times >"$tmp/times.1"
    foreign=$(($(machine_busy_ticks) - busy0 - (after - before) - ($(children_ticks "$tmp/times.1") - kids0)))
    ops=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$out")
    rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' "$out")
    p99=$(sed -n 's/.*p99=\([^ ]*\).*/\1/p' "$out")
    if ((rc != 0)) || [[ -z $ops ]]; then
      fail "$name: echo_load -c$conns depth $depth: exit $rc: $(tr '\n' ' ' <"$out" | tail -c 400)"
      return 1
    fi
  fi
  if ((ops == 0)); then
    fail "$name: zero throughput ($tool -c$conns depth $depth)"
    return 1
  fi
  # CPU per op (µs), ops/s, p99 (µs), the server's CPU use (% of one core) over the
  # load's whole run (connection set-up included), the load tool's CPU use (% of one
  # core), and the CPU used meanwhile by processes other than the server and the load
  # tool (% of the machine).
  local load_ticks=$(($(children_ticks "$tmp/times.1") - kids0))
  awk -v t=$((after - before)) -v hz="$clk_tck" -v ops="$ops" -v rate="$rate" -v p99="$(to_us "$p99")" \
    -v wall="$wall" -v foreign="$foreign" -v cores="$(nproc)" -v load="$load_ticks" 'BEGIN {
      printf "%.3f %.0f %s %.0f %.0f %.0f\n", t / hz * 1e6 / ops, rate, p99, t / hz / (wall / 1e9) * 100,
        load / hz / (wall / 1e9) * 100, foreign < 0 ? 0 : foreign / hz / (wall / 1e9) / cores * 100 }'
}

# measure_clean: measure, again (up to twice, after waiting for quiet) when other
# processes took more than 15% of the machine during the run. Same arguments and output.
measure_clean() {
  local attempt line
  for attempt in 1 2 3; do
    line=$(measure "$@") || return 1
    if ((!smoke && attempt < 3 && ${line##* } > 15)); then
      echo "  $1: other processes took ${line##* }% of the machine during the run: again" >&2
      wait_quiet
      continue
    fi
    echo "$line"
    return 0
  done
}

# run_case CASE TOOL CONNS DEPTH KIND...: starts each server, then for each run measures
# every server in turn (interleaved: drift hits them alike), then stops them.
run_case() {
  local case=$1 tool=$2 conns=$3 depth=$4
  shift 4
  local kinds=("$@") names=() ports=() pids=() kind i r line
  # Bounded, but long enough for every run, retry and wait for quiet.
  local lifetime=$(((runs + 1) * ${#kinds[@]} * 3 * (duration + 15 + quiet_wait) + 60))
  wait_quiet
  echo "bench: $case" >&2
  for kind in "${kinds[@]}"; do
    if start_peer "$kind" "$lifetime"; then
      names+=("$kind")
      ports+=("$SERVER_PORT")
      pids+=("$SERVER_PID")
    fi
  done
  if ((!smoke)); then  # warm-up, not recorded
    local saved=$duration
    duration=2
    for i in "${!names[@]}"; do
      measure "${names[$i]}" "${ports[$i]}" "${pids[$i]}" "$tool" "$conns" "$depth" >/dev/null || true
    done
    duration=$saved
  fi
  for ((r = 1; r <= runs; r++)); do
    for i in "${!names[@]}"; do
      if line=$(measure_clean "${names[$i]}" "${ports[$i]}" "${pids[$i]}" "$tool" "$conns" "$depth"); then
        echo "  ${names[$i]} run $r: $line (cpu_us/op ops/s p99_us server_cpu% load_cpu% foreign_cpu%)" >&2
        echo "$case|${names[$i]}|${line// /|}" >>"$results"
      fi
    done
  done
  stop_all
}

# run_scaling CASE TOOL CONNS DEPTH KIND: the KIND server with 1 worker (thread) pinned
# to the server's core, and with 2 unpinned, measured in turn within each run; the load
# generator stays on its core. TOOL is one of pipelined_load's loads: cheap enough per
# request that the server, not the client, sets the pace.
run_scaling() {
  local case=$1 tool=$2 conns=$3 depth=$4 kind=$5 r w line
  local lifetime=$(((runs + 1) * 2 * 3 * (duration + 15 + quiet_wait) + 60))
  wait_quiet
  echo "bench: scaling: $case, $kind with 1 and 2 workers" >&2
  local ports=() pids=()
  start_peer "$kind" "$lifetime" 1 || return 0
  ports[1]=$SERVER_PORT pids[1]=$SERVER_PID
  start_peer "$kind" "$lifetime" 2 "" || { stop_all; return 0; }
  ports[2]=$SERVER_PORT pids[2]=$SERVER_PID
  if ((!smoke)); then
    local saved=$duration
    duration=2
    for w in 1 2; do
      measure "$kind" "${ports[$w]}" "${pids[$w]}" "$tool" "$conns" "$depth" >/dev/null || true
    done
    duration=$saved
  fi
  for ((r = 1; r <= runs; r++)); do
    for w in 1 2; do
      if line=$(measure_clean "$kind x$w" "${ports[$w]}" "${pids[$w]}" "$tool" "$conns" "$depth"); then
        echo "  $kind x$w run $r: $line" >&2
        echo "$case|$kind|$w|${line// /|}" >>"$scaling"
      fi
    done
  done
  stop_all
}

# Footprint: RSS of the server before and after N idle connections, and its threads.
run_footprint() {
  local kind=$1 n=$idle_connections
  local hold=$((smoke ? 20 : 60)) ready=$tmp/idle.ready
  wait_quiet
  echo "bench: footprint: $kind, $n idle connections" >&2
  start_peer "$kind" $((hold + 90)) || return 0
  local pid=$SERVER_PID port=$SERVER_PORT pids
  sleep 0.5
  mapfile -t pids < <(tree_pids "$pid")
  local rss0 fds0
  rss0=$(status_sum VmRSS "${pids[@]}")
  fds0=$(fd_count "${pids[@]}")
  rm -f "$ready"
  "${on_load_cpu[@]}" timeout -k 5 $((hold + 30)) "$idle_conns" --target="127.0.0.1:$port" \
    --connections="$n" --hold="${hold}s" --ready_file="$ready" >"$tmp/idle.out" 2>&1 &
  local load=$!
  local i ok=0
  for i in $(seq 600); do
    [[ -e $ready ]] && { ok=1; break; }
    kill -0 "$load" 2>/dev/null || break
    sleep 0.1
  done
  if ((ok)); then  # every connection is open; wait until the server has taken them all
    ok=0
    for i in $(seq 200); do
      (($(fd_count "${pids[@]}") >= fds0 + n)) && { ok=1; break; }
      sleep 0.1
    done
  fi
  if ((ok)); then
    sleep 1
    local rss1 threads
    rss1=$(status_sum VmRSS "${pids[@]}")
    threads=$(status_sum Threads "${pids[@]}")
    echo "  $kind: RSS ${rss0} kB -> ${rss1} kB, $(((rss1 - rss0) * 1024 / n)) B/connection, $threads threads" >&2
    echo "$kind|$n|$rss0|$rss1|$threads" >>"$footprint"
  else
    fail "$kind: footprint: $n idle connections did not open: $(tr '\n' ' ' <"$tmp/idle.out" | tail -c 300)"
  fi
  kill -TERM "$load" 2>/dev/null || true
  wait "$load" 2>/dev/null || true
  stop_all
}

# ---- The cases -----------------------------------------------------------------------

wants() { [[ ",$only," == *",$1,"* ]]; }

http_peers=(islet_http epoll_http)
if [[ -z $nginx ]]; then
  skipped+=("nginx: not installed (apt-get install nginx-light): the nginx columns are skipped")
else
  http_peers+=(nginx)
fi

if wants http; then
  if [[ -z $wrk ]]; then
    skipped+=("HTTP cases: wrk is not installed (apt-get install wrk)")
  else
    run_case "HTTP hello, wrk -c 50" wrk 50 1 "${http_peers[@]}"
    run_case "HTTP hello, wrk -c 200" wrk 200 1 "${http_peers[@]}"
    run_case "HTTP hello, wrk -c 50, pipelined x16" wrk 50 16 "${http_peers[@]}"
  fi
fi
if wants echo; then
  run_case "Echo 64 B, 50 conns, depth 1" echo 50 1 islet_echo epoll_echo
  run_case "Echo 64 B, 50 conns, depth 16" echo 50 16 islet_echo epoll_echo
fi
if wants footprint; then
  run_footprint islet_echo
  run_footprint islet_http
  run_footprint epoll_echo
  [[ -n $nginx ]] && run_footprint nginx
fi
if wants scaling; then
  run_scaling "HTTP hello, pipelined_load -c 50, depth 64" pipelined_http 50 64 islet_http
  ((smoke)) || run_scaling "HTTP hello, pipelined_load -c 50, depth 64" pipelined_http 50 64 epoll_http
  run_scaling "Echo 64 B, pipelined_load -c 50, depth 64" pipelined_echo 50 64 islet_echo
  ((smoke)) || run_scaling "Echo 64 B, pipelined_load -c 50, depth 64" pipelined_echo 50 64 epoll_echo
fi

if wants tls; then
  if [[ -z $nginx ]] || [[ -z $(find_tool h2load) ]]; then
    skipped+=("TLS cases: they need nginx and h2load (apt-get install nginx-light nghttp2-client)")
  else
    tls_args=(--bin_dir="$bin_dir")
    ((smoke)) && tls_args+=(--smoke)
    ((write_doc)) || tls_args+=(--no-record)
    echo "bench: TLS: tools/bench/tls_bench.sh ${tls_args[*]}" >&2
    TLS_BENCH_QUIET_WAIT=$quiet_wait timeout -k 10 $((smoke ? 300 : 1800)) \
      "$script_dir/tls_bench.sh" "${tls_args[@]}" >"$tmp/tls.out" || fail "TLS cases: tls_bench.sh failed"
    cat "$tmp/tls.out" >&2
  fi
fi

# ---- The report ----------------------------------------------------------------------

label() {
  case "$1" in
    islet_http) echo "islet harness (http_hello)" ;;
    islet_echo) echo "islet harness (echo)" ;;
    epoll_http) echo "epoll_http (ceiling)" ;;
    epoll_echo) echo "epoll_echo (ceiling)" ;;
    nginx) echo "nginx" ;;
    *) echo "$1" ;;
  esac
}

machine() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "- Machine: $(nproc) cores ($cpu), $mem RAM; Linux $(uname -r) ($(uname -m))"
  echo "- Compiler: $(gcc --version 2>/dev/null | head -1); Bazel $(dpkg-query -W -f='${Version}' bazel-bootstrap 2>/dev/null || echo '?'); binaries: ${build_mode}"
  echo "- Load tools: wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?'), echo_load and idle_conns (tools/bench); peer: $("${nginx:-nginx}" -v 2>&1 | sed 's/^nginx version: //' || echo 'nginx: none')"
  echo "- Pinning: server on core ${server_cpu:-none}, load generator (one thread) on core ${load_cpu:-none}; 2-worker runs: server not pinned"
  echo "- Background load (all cores busy with nothing of ours running, 2 s samples): ${background_before}% before, ${background_after:-?}% after${busiest_wait:+; a case started at ${busiest_wait}% busy after --quiet_wait ran out}"
  cat "$results" <(cut -d'|' -f1,2,4- "$scaling") | cut -d'|' -f8 | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) printf "- Foreign CPU during the measured runs (processes other than the server and the load tool, %% of all cores): median %s%%, max %s%%\n", v[int((NR + 1) / 2)], v[NR] }'
  if ((smoke)); then
    echo "- Smoke: one run of ${duration} s per figure, no warm-up"
  else
    echo "- Runs: $runs per figure (median, min–max), ${duration} s each, after a 2 s warm-up; within each run the servers are measured in turn"
  fi
}

# Quantiles of a column: median min max.
# figures FILE PREFIX FIRST: "median min max" of the four columns from FIRST on (CPU/op,
# ops/s, p99, server CPU) of the rows starting with PREFIX: 12 numbers on one line.
figures() {
  local file=$1 prefix=$2 first=$3 col out=""
  for col in 0 1 2 3; do
    out+="$(awk -v p="$prefix" 'index($0, p) == 1' "$file" | cut -d'|' -f$((first + col)) | stats) "
  done
  echo "$out"
}

# "-" (no figure) values are left out; none at all gives "- - -".
stats() {
  { grep -v '^-$' || true; } | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) { print "- - -"; exit }
          m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}

report() {
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') with:"
  echo
  echo '```sh'
  echo "$command_line"
  echo '```'
  echo
  machine
  echo
  echo "### Throughput cases (1 worker)"
  echo
  echo "CPU µs/op: server utime+stime per request (HTTP) or message (echo), lower is better."
  echo "Ratio: islet's CPU/op divided by this server's (below 1: islet is cheaper)."
  echo
  echo "p99: wrk's 99th percentile (with its coordinated-omission correction) or echo_load's,"
  echo "per request or message. (a) wrk's histogram is meaningless under pipelining: none given."
  echo "Server CPU: the server's CPU use during the run, in % of one core; well under 100%"
  echo "means the load generator, not the server, set the pace."
  echo
  echo "| case | server | CPU µs/op: median (min–max) | ops/s: median (min–max) | p99 ms | server CPU | islet ÷ this (CPU/op) |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  local case server ours
  while IFS= read -r case; do
    ours=""
    for server in islet_http islet_echo epoll_http epoll_echo nginx; do
      [[ -n $(awk -v p="$case|$server|" 'index($0, p) == 1' "$results") ]] || continue
      local row
      row=$(figures "$results" "$case|$server|" 3)
      [[ $server == islet_* ]] && ours=${row%% *}
      awk -v case="$case" -v name="$(label "$server")" -v row="$row" -v ours="$ours" \
        -v self="$([[ $server == islet_* ]] && echo 1 || echo 0)" 'BEGIN {
          split(row, v, " ")
          ratio = self ? "—" : (ours == "" ? "?" : sprintf("%.2fx", ours / v[1]))
          p99 = v[7] == "-" ? "— (a)" : sprintf("%.2f", v[7] / 1000)
          printf "| %s | %s | **%.2f** (%.2f–%.2f) | %.0fk (%.0fk–%.0fk) | %s | %.0f%% | %s |\n",
            case, name, v[1], v[2], v[3], v[4] / 1000, v[5] / 1000, v[6] / 1000, p99, v[10], ratio }'
    done
  done < <(cut -d'|' -f1 "$results" | awk '!seen[$0]++')
  if [[ -s $scaling ]]; then
    echo
    echo "### Scaling: 1 and 2 workers"
    echo
    echo "Load: tools/bench/pipelined_load (one thread, pinned to core ${load_cpu:-none}): 64 requests in flight"
    echo "per connection, sent a window at a time, replies checked with memcmp; its CPU per"
    echo "request is a fraction of the server's, so the server sets the pace. 1 worker: the server"
    echo "pinned to core ${server_cpu:-none}; 2 workers: not pinned, so they share the load generator's core."
    echo "Cores (server): the server's CPU use in cores. Per server core: throughput divided by the"
    echo "cores the server used, against 1 worker's. Possible here: the throughput 2 workers could"
    echo "reach on this machine if each request cost them what it costs 1 worker, given the cores"
    echo "the load generator takes at that rate: 2 / (server + load CPU per request) against 1 worker."
    echo
    echo "| case | server | workers | CPU µs/op: median (min–max) | requests/s: median (min–max) | cores (server) | load CPU µs/op | throughput ÷ 1 worker | per server core ÷ 1 worker | possible here |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    while IFS='|' read -r case server; do
      local one two load1 load2
      one=$(figures "$scaling" "$case|$server|1|" 4)
      two=$(figures "$scaling" "$case|$server|2|" 4)
      # The load tool's CPU per request: its CPU share over the requests per second.
      load1=$(awk -v p="$case|$server|1|" 'index($0, p) == 1' "$scaling" | awk -F'|' '{ print $8 / 100 * 1e6 / $5 }' | stats)
      load2=$(awk -v p="$case|$server|2|" 'index($0, p) == 1' "$scaling" | awk -F'|' '{ print $8 / 100 * 1e6 / $5 }' | stats)
      awk -v case="$case" -v name="$(label "$server")" -v one="$one" -v two="$two" \
        -v l1="${load1%% *}" -v l2="${load2%% *}" '
        function line(w, v, l, ratios) {
          printf "| %s | %s | %d | %.3f (%.3f–%.3f) | %.0fk (%.0fk–%.0fk) | %.2f | %.3f | %s |\n",
            case, name, w, v[1], v[2], v[3], v[4] / 1000, v[5] / 1000, v[6] / 1000, v[10] / 100, l, ratios
        }
        BEGIN {
          split(one, a, " "); split(two, b, " ")
          if (a[1] == "-" || b[1] == "-") exit
          line(1, a, l1, "1.00x | 1.00x | 1.00x")
          per_core = (b[4] / (b[10] / 100)) / (a[4] / (a[10] / 100))
          possible = (2 / (a[1] + l2)) * 1e6 / a[4]
          line(2, b, l2, sprintf("**%.2fx** | %.2fx | %.2fx", b[4] / a[4], per_core, possible))
        }'
    done < <(cut -d'|' -f1,2 "$scaling" | awk '!seen[$0]++')
  fi
  if [[ -s $footprint ]]; then
    echo
    echo "### Footprint: idle connections"
    echo
    echo "Resident memory of the server's processes (VmRSS) before and after the connections open; kernel socket buffers are not in it."
    echo
    echo "| server | idle connections | RSS before | RSS after | bytes per connection | threads |"
    echo "| --- | --- | --- | --- | --- | --- |"
    local kind n rss0 rss1 threads
    while IFS='|' read -r kind n rss0 rss1 threads; do
      echo "| $(label "$kind") | $n | $((rss0 / 1024)) MiB ($rss0 kB) | $((rss1 / 1024)) MiB ($rss1 kB) | **$(((rss1 - rss0) * 1024 / n))** | $threads |"
    done <"$footprint"
  fi
  if ((${#skipped[@]})); then
    echo
    local s
    for s in "${skipped[@]}"; do echo "- Skipped: $s"; done
  fi
}

background_after=$(busy_percent)
if ((smoke)); then
  echo "bench: smoke results ($((SECONDS - started)) s):" >&2
  report >&2
  for s in "${skipped[@]}"; do echo "bench: SKIPPED: $s" >&2; done
  if [[ -s $failures_file ]]; then
    echo "bench: smoke FAILED: $(wc -l <"$failures_file") problem(s):" >&2
    sed 's/^/  /' "$failures_file" >&2
    exit 1
  fi
  echo "bench: smoke passed in $((SECONDS - started)) s" >&2
  exit 0
fi

table=$(report)
echo "$table"
if [[ -s $failures_file ]]; then
  echo "bench: $(wc -l <"$failures_file") problem(s):" >&2
  sed 's/^/  /' "$failures_file" >&2
fi
if ((write_doc)) && [[ -n $repo ]]; then
  doc=$repo/docs/BENCHMARKS.md
  begin="<!-- BEGIN tools/bench/run.sh output -->"
  end="<!-- END tools/bench/run.sh output -->"
  if [[ ! -f $doc ]] || ! grep -qF "$begin" "$doc"; then
    {
      [[ -f $doc ]] && cat "$doc" || echo "# Benchmarks"
      echo
      echo "$begin"
      echo "$end"
    } >"$tmp/doc.new"
    cp "$tmp/doc.new" "$doc"
  fi
  printf '%s\n' "$table" >"$tmp/table"
  awk -v b="$begin" -v e="$end" -v t="$tmp/table" '
    $0 == b { print; while ((getline l < t) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$doc" >"$tmp/doc.new"
  cp "$tmp/doc.new" "$doc"
  echo "bench: wrote the table into docs/BENCHMARKS.md ($((SECONDS - started)) s)" >&2
fi
[[ ! -s $failures_file ]]
