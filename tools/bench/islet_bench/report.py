"""The reports: the tables of docs/BENCHMARKS.md (the block between its markers, rewritten
by every full run) and docs/BENCHMARKS_TLS.md (a section appended by every full run).

Everything here is text in, text out: the tests check the tables' shape cell by cell.
"""

from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

from islet_bench.stats import Spread, lower_median, median, plain, ratio, spread, summary, verdict

BEGIN = "<!-- BEGIN tools/bench/run.sh output -->"
END = "<!-- END tools/bench/run.sh output -->"

# The throughput cases (suite.py runs them; the targets below name them).
HTTP_C50 = "HTTP hello, wrk -c 50"
HTTP_C200 = "HTTP hello, wrk -c 200"
HTTP_PIPELINED = "HTTP hello, wrk -c 50, pipelined x16"
# A new connection per request: accepting, the handshakes and the close dominate.
HTTP_CHURN = "HTTP hello, wrk -c 50, Connection: close"
ECHO_DEPTH1 = "Echo 64 B, 50 conns, depth 1"
ECHO_DEPTH16 = "Echo 64 B, 50 conns, depth 16"

LABELS = {
    "islet_http": "islet harness (http_hello)",
    "islet_uring_http": "islet harness on io_uring (http_hello)",
    "islet_http_metrics": "islet harness (http_hello), metrics sink attached",
    "islet_echo": "islet harness (echo)",
    "islet_uring_echo": "islet harness on io_uring (echo)",
    "islet_echo_metrics": "islet harness (echo), metrics sink attached",
    "epoll_http": "epoll_http (ceiling)",
    "epoll_echo": "epoll_echo (ceiling)",
    "uring_http": "uring_http (io_uring floor)",
    "uring_echo": "uring_echo (io_uring floor)",
    "nginx": "nginx",
}
SERVER_ORDER = ["islet_http", "islet_uring_http", "islet_http_metrics", "islet_echo", "islet_uring_echo",
                "islet_echo_metrics", "epoll_http", "epoll_echo", "uring_http", "uring_echo", "nginx"]
# A server that is the islet harness with the metrics sink attached: its ratio cell is its
# CPU per operation over the harness's without it (the sink's overhead).
METRICS_SUFFIX = "_metrics"
# The harness on its io_uring loop (--event_loop=io_uring), and the same harness on epoll:
# its ratio cell is its CPU per operation over that one's (what the io_uring loop costs).
URING_HARNESS = {"islet_uring_http": "islet_http", "islet_uring_echo": "islet_echo"}


class Row(NamedTuple):
    """One measured run of a throughput or scaling case (scaling: workers 1 or 2)."""

    case: str
    server: str
    workers: int
    cpu_us: float  # server CPU per operation, µs
    rate: float  # operations per second
    p99_us: Optional[float]  # None: no figure (wrk under pipelining, pipelined_load)
    server_percent: float  # of one core
    load_percent: float  # of one core
    foreign_percent: float  # of all cores


class Footprint(NamedTuple):
    server: str
    connections: int
    rss_before_kb: int
    rss_after_kb: int
    threads: int


class Machine(NamedTuple):
    """What the report says about where and how it was measured."""

    cores: int
    cpu: str
    mem_total_kb: int
    kernel: str
    arch: str
    compiler: str
    bazel: str
    build_mode: str
    wrk: str
    nginx: str
    server_cpu: Optional[int]
    load_cpu: Optional[int]
    busy_before: int
    busy_after: Optional[int]
    busiest_wait: Optional[int]
    smoke: bool
    runs: int
    duration: int


def label(server: str) -> str:
    return LABELS.get(server, server)


def _core(cpu: Optional[int]) -> str:
    return "none" if cpu is None else str(cpu)


def _trunc_div(a: int, b: int) -> int:
    """Integer division toward zero (as the shell's)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def machine_lines(m: Machine, rows: Sequence[Row]) -> List[str]:
    lines = [
        f"- Machine: {m.cores} cores ({m.cpu}), {m.mem_total_kb / 1048576:.0f} GiB RAM; "
        f"Linux {m.kernel} ({m.arch})",
        f"- Compiler: {m.compiler}; Bazel {m.bazel}; binaries: {m.build_mode}",
        f"- Load tools: wrk {m.wrk}, echo_load and idle_conns (tools/bench); peer: {m.nginx}",
        f"- Pinning: server on core {_core(m.server_cpu)}, load generator (one thread) on core "
        f"{_core(m.load_cpu)}; 2-worker runs: server not pinned",
        "- Background load (all cores busy with nothing of ours running, 2 s samples): "
        f"{m.busy_before}% before, {'?' if m.busy_after is None else m.busy_after}% after"
        + ("" if m.busiest_wait is None
           else f"; a case started at {m.busiest_wait}% busy after --quiet_wait ran out"),
    ]
    foreign = [r.foreign_percent for r in rows]
    if foreign:
        lines.append("- Foreign CPU during the measured runs (processes other than the server and "
                     f"the load tool, % of all cores): median {lower_median(foreign):.0f}%, "
                     f"max {max(foreign):.0f}%")
    if m.smoke:
        lines.append(f"- Smoke: one run of {m.duration} s per figure, no warm-up")
    else:
        lines.append(f"- Runs: {m.runs} per figure (median, min–max), {m.duration} s each, after a "
                     "2 s warm-up; within each run the servers are measured in turn")
    return lines


def _unique(items: Iterable) -> List:
    return list(dict.fromkeys(items))


def _figures(rows: Sequence[Row]) -> Dict[str, Optional[Spread]]:
    return {
        "cpu": spread([r.cpu_us for r in rows]),
        "rate": spread([r.rate for r in rows]),
        "p99": spread([r.p99_us for r in rows]),
        "server": spread([r.server_percent for r in rows]),
    }


def throughput_table(results: Sequence[Row]) -> List[str]:
    lines = [
        "| case | server | CPU µs/op: median (min–max) | ops/s: median (min–max) | p99 ms | "
        "server CPU | islet ÷ this (CPU/op) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in _unique(r.case for r in results):
        ours = None
        for server in SERVER_ORDER:
            rows = [r for r in results if r.case == case and r.server == server]
            if not rows:
                continue
            f = _figures(rows)
            cpu, rate = f["cpu"], f["rate"]
            islet = server.startswith("islet_")
            if server.endswith(METRICS_SUFFIX):
                shown_ratio = "?" if ours is None else "sink: %+.1f%% CPU/op" % (
                    (cpu.median / ours - 1) * 100)
            elif server in URING_HARNESS:
                shown_ratio = "?" if ours is None else "io_uring: %+.1f%% CPU/op" % (
                    (cpu.median / ours - 1) * 100)
            else:
                if islet:
                    ours = cpu.median
                shown_ratio = "—" if islet else ("?" if ours is None else "%.2fx" % (ours / cpu.median))
            p99 = "— (a)" if f["p99"] is None else "%.2f" % (f["p99"].median / 1000)
            lines.append(
                f"| {case} | {label(server)} | **{cpu.median:.2f}** ({cpu.low:.2f}–{cpu.high:.2f}) | "
                f"{rate.median / 1000:.0f}k ({rate.low / 1000:.0f}k–{rate.high / 1000:.0f}k) | "
                f"{p99} | {f['server'].median:.0f}% | {shown_ratio} |")
    return lines


def _scaling_line(case: str, server: str, workers: int, f: Dict[str, Spread],
                  load_us: Optional[float], ratios: str) -> str:
    cpu, rate = f["cpu"], f["rate"]
    return (f"| {case} | {label(server)} | {workers} | {cpu.median:.3f} ({cpu.low:.3f}–{cpu.high:.3f}) | "
            f"{rate.median / 1000:.0f}k ({rate.low / 1000:.0f}k–{rate.high / 1000:.0f}k) | "
            f"{f['server'].median / 100:.2f} | {load_us or 0:.3f} | {ratios} |")


def scaling_table(scaling: Sequence[Row], server_cpu: Optional[int], load_cpu: Optional[int]) -> List[str]:
    lines = [
        "### Scaling: 1 and 2 workers",
        "",
        f"Load: tools/bench/pipelined_load (one thread, pinned to core {_core(load_cpu)}): 64 requests in flight",
        "per connection, sent a window at a time, replies checked with memcmp; its CPU per",
        "request is a fraction of the server's, so the server sets the pace. 1 worker: the server",
        f"pinned to core {_core(server_cpu)}; 2 workers: not pinned, so they share the load generator's core.",
        "Cores (server): the server's CPU use in cores. Per server core: throughput divided by the",
        "cores the server used, against 1 worker's. Possible here: the throughput 2 workers could",
        "reach on this machine if each request cost them what it costs 1 worker, given the cores",
        "the load generator takes at that rate: 2 / (server + load CPU per request) against 1 worker.",
        "",
        "| case | server | workers | CPU µs/op: median (min–max) | requests/s: median (min–max) | "
        "cores (server) | load CPU µs/op | throughput ÷ 1 worker | per server core ÷ 1 worker | possible here |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case, server in _unique((r.case, r.server) for r in scaling):
        one = [r for r in scaling if (r.case, r.server, r.workers) == (case, server, 1)]
        two = [r for r in scaling if (r.case, r.server, r.workers) == (case, server, 2)]
        if not one or not two:
            continue
        a, b = _figures(one), _figures(two)
        # The load tool's CPU per request: its CPU share over the requests per second.
        load1 = median([r.load_percent / 100 * 1e6 / r.rate for r in one])
        load2 = median([r.load_percent / 100 * 1e6 / r.rate for r in two])
        try:
            per_core = (b["rate"].median / (b["server"].median / 100)) / (
                a["rate"].median / (a["server"].median / 100))
            possible = (2 / (a["cpu"].median + load2)) * 1e6 / a["rate"].median
            throughput = b["rate"].median / a["rate"].median
        except ZeroDivisionError:
            continue
        lines.append(_scaling_line(case, server, 1, a, load1, "1.00x | 1.00x | 1.00x"))
        lines.append(_scaling_line(case, server, 2, b, load2,
                                   f"**{throughput:.2f}x** | {per_core:.2f}x | {possible:.2f}x"))
    return lines


def footprint_table(footprint: Sequence[Footprint]) -> List[str]:
    lines = [
        "### Footprint: idle connections",
        "",
        "Resident memory of the server's processes (VmRSS) before and after the connections open; "
        "kernel socket buffers are not in it.",
        "",
        "| server | idle connections | RSS before | RSS after | bytes per connection | threads |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in footprint:
        per = _bytes_per_connection(f)
        lines.append(
            f"| {label(f.server)} | {f.connections} | {f.rss_before_kb // 1024} MiB ({f.rss_before_kb} kB) | "
            f"{f.rss_after_kb // 1024} MiB ({f.rss_after_kb} kB) | **{per}** | {f.threads} |")
    return lines


def _ratio_value(shown: str) -> Optional[float]:
    """The number of a shown ratio ("0.87x": 0.87): the verdict judges what the table shows."""
    return float(shown[:-1]) if shown.endswith("x") else None


class CpuTarget(NamedTuple):
    """In `case`, `server`'s CPU per operation at most `limit` times `peer`'s."""

    case: str
    server: str
    peer: str
    limit: float


# Issue 16's targets for the harness on its io_uring loop, against nginx, the io_uring
# floor, the epoll floor and the same harness on epoll.
URING_CPU_TARGETS = [
    CpuTarget(HTTP_C50, "islet_uring_http", "nginx", 0.75),
    CpuTarget(HTTP_C50, "islet_uring_http", "uring_http", 1.10),
    CpuTarget(HTTP_C200, "islet_uring_http", "nginx", 0.75),
    CpuTarget(HTTP_C200, "islet_uring_http", "uring_http", 1.10),
    CpuTarget(HTTP_PIPELINED, "islet_uring_http", "islet_http", 1.00),
    CpuTarget(ECHO_DEPTH1, "islet_uring_echo", "epoll_echo", 0.85),
    CpuTarget(ECHO_DEPTH16, "islet_uring_echo", "islet_echo", 1.00),
]
# An idle connection of the harness on io_uring: at most this many bytes more than on epoll.
URING_IDLE_EXTRA_BYTES = 512


def _bytes_per_connection(f: Footprint) -> int:
    return _trunc_div((f.rss_after_kb - f.rss_before_kb) * 1024, f.connections)


def uring_targets_table(results: Sequence[Row], footprint: Sequence[Footprint]) -> List[str]:
    """Issue 16's targets for the harness on io_uring, judged on the figures of this run:
    a row for each target whose io_uring server was measured (n/a when its peer was not);
    no table when it was measured nowhere."""
    rows: List[str] = []
    for t in URING_CPU_TARGETS:
        ours = spread([r.cpu_us for r in results if (r.case, r.server) == (t.case, t.server)])
        if ours is None:
            continue
        peer = spread([r.cpu_us for r in results if (r.case, r.server) == (t.case, t.peer)])
        shown = ratio(ours.median, peer.median if peer else None)
        measured = "n/a" if peer is None else (
            f"**{shown}** ({ours.median:.2f} against {peer.median:.2f} µs/op)")
        rows.append(f"| {t.case}: at most {t.limit:.2f}x {label(t.peer)} | {measured} | "
                    f"{verdict(_ratio_value(shown), '<=', t.limit)} |")
    per_connection = {f.server: _bytes_per_connection(f) for f in footprint}
    for server in _unique(f.server for f in footprint if f.server in URING_HARNESS):
        epoll = URING_HARNESS[server]
        ours_b, epoll_b = per_connection[server], per_connection.get(epoll)
        extra = None if epoll_b is None else ours_b - epoll_b
        measured = "n/a" if extra is None else f"**{extra:+d} B** ({ours_b} against {epoll_b} B per connection)"
        rows.append(f"| Idle connection: {label(server)} at most {URING_IDLE_EXTRA_BYTES} B more than "
                    f"{label(epoll)} | {measured} | {verdict(extra, '<=', URING_IDLE_EXTRA_BYTES)} |")
    if not rows:
        return []
    return [
        "### Targets: the harness on io_uring (issue 16)",
        "",
        "The harness with `--event_loop=io_uring` against its peers in the same runs: ratios of the",
        "median CPU per operation above (judged on the ratio shown), and the memory of an idle",
        "connection against the harness's on epoll (Footprint).",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
    ] + rows


def uring_steps_table(rows: Sequence[Row]) -> List[str]:
    """The io_uring floors with one feature off at a time (server: "uring_echo --flag"),
    against all features on (the bare binary name)."""
    lines = [
        "### io_uring features, one off at a time",
        "",
        "The io_uring floors with the features of tools/bench/uring_base.h turned off one at a",
        "time (the flags), then all of those at once. ÷ all on: this row's CPU/op over the",
        "row without flags (above 1: the feature turned off saves CPU when on).",
        "",
        "| case | server, features off | CPU µs/op: median (min–max) | ops/s: median (min–max) | "
        "server CPU | ÷ all on |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in _unique(r.case for r in rows):
        base = None
        for server in _unique(r.server for r in rows if r.case == case):
            f = _figures([r for r in rows if r.case == case and r.server == server])
            cpu, rate = f["cpu"], f["rate"]
            if " " not in server:
                base = cpu.median
            shown = "?" if base is None else "%.2fx" % (cpu.median / base)
            lines.append(
                f"| {case} | {server} | **{cpu.median:.2f}** ({cpu.low:.2f}–{cpu.high:.2f}) | "
                f"{rate.median / 1000:.0f}k ({rate.low / 1000:.0f}k–{rate.high / 1000:.0f}k) | "
                f"{f['server'].median:.0f}% | {shown} |")
    return lines


def suite_report(when: str, command: str, machine: Machine, results: Sequence[Row],
                 scaling: Sequence[Row], footprint: Sequence[Footprint],
                 skipped: Sequence[str], uring_steps: Sequence[Row] = ()) -> str:
    """The block between the markers of docs/BENCHMARKS.md (no final newline)."""
    lines = [f"Measured {when} with:", "", "```sh", command, "```", ""]
    lines += machine_lines(machine, list(results) + list(scaling) + list(uring_steps))
    lines += [
        "",
        "### Throughput cases (1 worker)",
        "",
        "CPU µs/op: server utime+stime per request (HTTP) or message (echo), lower is better.",
        "Ratio: islet's CPU/op divided by this server's (below 1: islet is cheaper). The harness",
        "on io_uring (`--event_loop=io_uring`): its CPU/op against the harness's on epoll.",
        "",
        "p99: wrk's 99th percentile (with its coordinated-omission correction) or echo_load's,",
        "per request or message. (a) wrk's histogram is meaningless under pipelining: none given.",
        "Server CPU: the server's CPU use during the run, in % of one core; well under 100%",
        "means the load generator, not the server, set the pace.",
        "",
    ]
    lines += throughput_table(results)
    if scaling:
        lines += [""] + scaling_table(scaling, machine.server_cpu, machine.load_cpu)
    if footprint:
        lines += [""] + footprint_table(footprint)
    targets = uring_targets_table(results, footprint)
    if targets:
        lines += [""] + targets
    if uring_steps:
        lines += [""] + uring_steps_table(uring_steps)
    if skipped:
        lines.append("")
        lines += [f"- Skipped: {s}" for s in skipped]
    return "\n".join(lines)


def replace_block(doc: Optional[str], block: str) -> str:
    """docs/BENCHMARKS.md with `block` between its markers; a document without them gets
    them appended (no document: a "# Benchmarks" one). The rest is kept as it is."""
    if doc is None:
        doc = "# Benchmarks\n"
    if BEGIN not in doc:
        doc = doc + ("" if doc.endswith("\n") else "\n") + "\n" + BEGIN + "\n" + END + "\n"
    out: List[str] = []
    inside = False
    for line in doc.splitlines():
        if line == BEGIN:
            out.append(line)
            out += block.splitlines()
            inside = True
        elif line == END:
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    return "\n".join(out) + "\n"


# ---- docs/BENCHMARKS_TLS.md ------------------------------------------------------------

TLS_HEADER = """# TLS benchmarks

Written by `tools/bench/tls_bench.sh` (each run appends a section). The Islet harness
(`--transport=tls --handler=http_hello --num_workers=1 --alpn=http/1.1`, BoringSSL)
against nginx (`worker_processes 1`, `access_log off`, `return 200 "Hello world!"`,
`ssl_session_tickets off`, `ssl_session_cache off`, OpenSSL), both on 127.0.0.1 with the
same self-signed ECDSA P-256 certificate. Server pinned to core 0, load to core 1.

- (a) `tls_handshake_load`: BoringSSL client threads, each looping TCP connect, full
  TLS 1.3 handshake (X25519, no session ever offered: never resumed, checked), one
  `GET /`, close_notify, close. Server CPU = utime+stime of the server processes over
  the counted window / handshakes in it. Both servers send 2 NewSessionTickets per
  connection (OpenSSL sends stateful ones even with tickets and cache off), which the
  client reads and drops. The handshakes/s figure is bounded by the load's single core
  (the client's own ECDHE and ECDSA verification cost more than the server's side), so
  neither server is saturated there: compare the CPU per handshake.
- (b) `h2load --h1 -t 1 -c 50 -n N`: keep-alive HTTP/1.1 over TLS 1.3
  (TLS_AES_128_GCM_SHA256 with both servers). Server CPU over the whole h2load run / N.
- (c) `tls_idle_conns`: N connections, handshake done, then idle; (server VmRSS with
  them - VmRSS before) / N, after a warm-up of 64 connections. Kernel socket memory is
  not in RSS and not counted. nginx: its worker's RSS.

Each figure is the median of 3 runs, with [min-max].
"""

# The targets (issue 14): server CPU per full handshake and per keep-alive request as a
# fraction of nginx's, and the memory an idle TLS connection may cost us.
TLS_HS_CPU_TARGET = 0.55
TLS_KA_CPU_TARGET = 0.75
TLS_IDLE_KIB_TARGET = 6

TLS_FIGURES = ("hs_rate", "hs_cpu", "hs_p50", "hs_p99", "ka_rate", "ka_cpu", "idle")


def _plain_median(values: Sequence[float]) -> str:
    m = median(values)
    return "" if m is None else plain(m)


def tls_table(ours: Dict[str, List[float]], nginx: Dict[str, List[float]], ka_clients: int,
              ka_requests: int, ours_idle_connections: int, nginx_idle_connections: int) -> str:
    """The TLS table; `ours` and `nginx` hold one list of run figures per TLS_FIGURES name."""
    o, n = ours, nginx
    hs_cpu_ratio = ratio(median(o["hs_cpu"]), median(n["hs_cpu"]))
    ka_cpu_ratio = ratio(median(o["ka_cpu"]), median(n["ka_cpu"]))
    o_idle = median(o["idle"])
    return "\n".join([
        "| case | ours (Islet harness) | nginx | ours / nginx | target | |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| (a) full handshakes/s (TLS 1.3, P-256, X25519, +1 GET) | {summary(o['hs_rate'])} | "
        f"{summary(n['hs_rate'])} | {ratio(median(o['hs_rate']), median(n['hs_rate']))} | | |",
        f"| (a) handshake latency p50 / p99 (us) | {_plain_median(o['hs_p50'])} / {_plain_median(o['hs_p99'])} | "
        f"{_plain_median(n['hs_p50'])} / {_plain_median(n['hs_p99'])} | | | |",
        f"| (a) server CPU per handshake (us) | {summary(o['hs_cpu'])} | {summary(n['hs_cpu'])} | "
        f"{hs_cpu_ratio} | <= {TLS_HS_CPU_TARGET:.2f}x | "
        f"{verdict(_ratio_value(hs_cpu_ratio), '<=', TLS_HS_CPU_TARGET)} |",
        f"| (b) keep-alive requests/s (h2load --h1 -c {ka_clients} -n {ka_requests}) | "
        f"{summary(o['ka_rate'])} | {summary(n['ka_rate'])} | "
        f"{ratio(median(o['ka_rate']), median(n['ka_rate']))} | | |",
        f"| (b) server CPU per request (us) | {summary(o['ka_cpu'])} | {summary(n['ka_cpu'])} | "
        f"{ka_cpu_ratio} | <= {TLS_KA_CPU_TARGET:.2f}x | "
        f"{verdict(_ratio_value(ka_cpu_ratio), '<=', TLS_KA_CPU_TARGET)} |",
        f"| (c) memory per idle TLS connection (KiB; ours at {ours_idle_connections}, nginx at "
        f"{nginx_idle_connections}) | {summary(o['idle'])} | {summary(n['idle'])} | "
        f"{ratio(o_idle, median(n['idle']))} | <= {TLS_IDLE_KIB_TARGET} KiB | "
        f"{verdict(o_idle, '<=', TLS_IDLE_KIB_TARGET)} |",
    ])


def run_section(when: str, command: str, commit: str, machine: str, table: str, noisy: bool) -> str:
    """The section a full run appends to its document (docs/BENCHMARKS_TLS.md and the
    like): when, the command, the commit, the machine, the table."""
    text = f"\n## {when}\n\nCommand: `{command}` (commit {commit})\n\nMachine: {machine}\n\n{table}\n"
    if noisy:
        text += "\nNote: other work was running on the machine during some runs.\n"
    return text


def append_section(header: str, doc: Optional[str], section: str) -> str:
    """The document with `section` appended; a new one starts with `header`."""
    return (header if doc is None else doc) + section
