"""The TCP cases: HTTP hello and echo throughput, footprint, scaling (docs/BENCHMARKS.md).

Each server on 127.0.0.1, pinned to the server core; the load generator (one thread) on
the load core. The first figure of every case is the server's CPU time per operation:
utime+stime of its processes over the measured run, divided by the operations the load
tool completed. Within each run the servers of a case are measured in turn, so drift on
the machine hits them alike.
"""

import os
import time
from typing import List, NamedTuple, Optional

from islet_bench import loads, quiet
from islet_bench.report import (ECHO_DEPTH1, ECHO_DEPTH16, HTTP_C50, HTTP_C200, HTTP_CHURN, HTTP_PIPELINED,
                                Footprint, Row)
from islet_bench.servers import Server, end, read_text, uring_unavailable, wait_until
from islet_bench.stats import per_op_us
from islet_bench.window import CpuWindow

WARMUP_SECONDS = 2

# The io_uring floors' features, each turned off alone (uring_base.h), then all at once:
# what each one buys is its row against "all on" (--only=uring).
URING_STEPS = [
    [],
    ["--accept=oneshot"],
    ["--accept=poll"],
    ["--peer_address=getpeername"],
    ["--recv=oneshot"],
    ["--send=syscall"],
    ["--submit=split"],
    ["--fixed_files=off"],
    ["--register_ring=off"],
    ["--setup=coop"],
    ["--setup=none"],
    ["--accept=oneshot", "--recv=oneshot", "--send=syscall", "--submit=split", "--register_ring=off",
     "--setup=none"],
]


class Sample(NamedTuple):
    """One load run against one server, rounded as the rows keep it."""

    cpu_us: float
    rate: float
    p99_us: Optional[float]
    server_percent: float
    load_percent: float
    foreign_percent: float

    def text(self) -> str:
        p99 = "-" if self.p99_us is None else "%.1f" % self.p99_us
        return "%.3f %.0f %s %.0f %.0f %.0f" % (self.cpu_us, self.rate, p99, self.server_percent,
                                                 self.load_percent, self.foreign_percent)


def _rounded(digits: int, x: float) -> float:
    return float("%.*f" % (digits, x))


def harness_command(harness: str, kind: str, workers: int) -> List[str]:
    """The harness as server KIND: islet_http or islet_echo (the handler), on its epoll
    loop; islet_uring_http and islet_uring_echo on its io_uring loop; a _metrics suffix
    attaches the metrics sink. The loop is always named, so that ISLET_EVENT_LOOP in the
    environment cannot swap one for the other; ValueError for another kind."""
    rest = kind[len("islet_"):] if kind.startswith("islet_") else ""
    loop = "epoll"
    if rest.startswith("uring_"):
        loop, rest = "io_uring", rest[len("uring_"):]
    metrics = rest.endswith("_metrics")
    if metrics:
        rest = rest[:-len("_metrics")]
    handlers = {"http": "http_hello", "echo": "echo"}
    if rest not in handlers:
        raise ValueError(f"not a kind of the harness: {kind}")
    return [harness, f"--handler={handlers[rest]}", "--port=0", f"--num_workers={workers}",
            f"--event_loop={loop}", "--log=off", "--shutdown_timeout=1s"] + (
                ["--metrics_port=0"] if metrics else [])


class Suite:
    def __init__(self, ctx):
        self.ctx = ctx
        self.results: List[Row] = []
        self.scaling: List[Row] = []
        self.footprint: List[Footprint] = []
        self.uring_steps: List[Row] = []  # server: "uring_echo --flag ..."

    # ---- Servers -----------------------------------------------------------------------

    def start_peer(self, kind: str, lifetime: float, workers: int = 1,
                   pinned: bool = True) -> Optional[Server]:
        """Kinds: the harness (islet_http, islet_echo; on its io_uring loop islet_uring_http,
        islet_uring_echo; with its metrics sink attached islet_http_metrics,
        islet_echo_metrics: harness_command), epoll_http, epoll_echo, uring_http,
        uring_echo, nginx; a uring_* kind may carry feature flags after a space
        ("uring_echo --recv=oneshot")."""
        ctx = self.ctx
        cpu = ctx.server_cpu if pinned else None
        start = ctx.processes.start
        if kind.startswith("islet_"):
            return start(kind, cpu, lifetime, harness_command(ctx.bins["harness"], kind, workers))
        binary, *flags = kind.split()
        if binary in ("epoll_http", "epoll_echo", "uring_http", "uring_echo"):
            return start(kind, cpu, lifetime, [ctx.bins[binary], "--port=0", f"--threads={workers}"] + flags)
        return ctx.processes.start_nginx("nginx", cpu, lifetime, ctx.tools["nginx"], ctx.nofile)

    # ---- Loads -------------------------------------------------------------------------

    def measure(self, name: str, server: Server, tool: str, conns: int, depth: int,
                duration: int) -> Optional[Sample]:
        """One run of a load against a server. `tool`: wrk, wrk_close (wrk sending
        "Connection: close": a connection per request), echo, pipelined_http or
        pipelined_echo."""
        ctx = self.ctx
        if not ctx.proc.alive(server.pid):
            ctx.fail(f"{name}: the server is gone")
            return None
        target = f"127.0.0.1:{server.port}"
        if tool in ("wrk", "wrk_close"):
            script = ["-s", os.path.join(ctx.here, "pipeline.lua")] if depth > 1 else []
            header = ["-H", "Connection: close"] if tool == "wrk_close" else []
            cmd = [ctx.tools["wrk"], "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
                   "--latency"] + header + script + [f"http://{target}/"] + (["--", str(depth)] if script else [])
        elif tool.startswith("pipelined_"):
            cmd = [ctx.bins["pipelined_load"], f"--target={target}",
                   f"--request={tool[len('pipelined_'):]}", f"--connections={conns}", f"--depth={depth}",
                   f"--duration={duration}s", "--warmup=0s"]
        else:
            cmd = [ctx.bins["echo_load"], f"--target={target}", f"--connections={conns}", "--size=64",
                   f"--depth={depth}", f"--duration={duration}s", "--warmup=0s"]
        with CpuWindow(ctx.proc, ctx.proc.tree(server.pid), ctx.hz, ctx.cores) as window:
            done = ctx.processes.run_load(duration + 30, cmd)
        count = loads.count(tool, done.stdout, depth)
        if done.returncode != 0 or count.ops is None or count.rate is None or count.errors > 0:
            what = f"{os.path.basename(cmd[0])} -c{conns} depth {depth}"
            ctx.fail(f"{name}: {what}: exit {done.returncode}, errors {count.errors}: "
                     f"{' '.join(done.stdout.splitlines())[-400:]}")
            return None
        if count.ops == 0:
            ctx.fail(f"{name}: zero throughput ({tool} -c{conns} depth {depth})")
            return None
        # The server's and the load tool's CPU use over the load's whole run (connection
        # set-up included), in % of one core; foreign CPU in % of the machine.
        return Sample(_rounded(3, per_op_us(window.server_ticks, ctx.hz, count.ops)), _rounded(0, count.rate),
                      loads.to_us(count.p99), _rounded(0, window.server_percent()),
                      _rounded(0, window.load_percent()), _rounded(0, window.foreign_percent()))

    def measure_clean(self, name: str, server: Server, tool: str, conns: int, depth: int) -> Optional[Sample]:
        """measure, again (twice at most, after waiting for quiet) when the machine was not
        quiet during the run."""
        ctx = self.ctx
        return quiet.until_quiet(
            lambda: self.measure(name, server, tool, conns, depth, ctx.options.duration),
            lambda s: s.foreign_percent, ctx.waiter, lambda m: ctx.log(f"  {name}: {m}"),
            repeat=not ctx.smoke)

    def warm_up(self, servers: List[Server], tool: str, conns: int, depth: int) -> None:
        if not self.ctx.smoke:
            for server in servers:
                self.measure(server.name, server, tool, conns, depth, WARMUP_SECONDS)

    def lifetime(self, servers: int) -> int:
        """Bounded, but long enough for every run, repeat and wait for quiet."""
        o = self.ctx.options
        return (o.runs + 1) * servers * quiet.TRIES * (o.duration + 15 + o.quiet_wait) + 60

    # ---- Cases -------------------------------------------------------------------------

    def run_case(self, case: str, tool: str, conns: int, depth: int, kinds: List[str],
                 into: Optional[List[Row]] = None) -> None:
        """Starts each server, then for each run measures every server in turn; the rows go
        to `into` (self.results)."""
        into = self.results if into is None else into
        ctx = self.ctx
        ctx.waiter.wait()
        ctx.log(case)
        servers = [s for s in (self.start_peer(k, self.lifetime(len(kinds))) for k in kinds) if s]
        self.warm_up(servers, tool, conns, depth)
        for run in range(1, ctx.options.runs + 1):
            for server in servers:
                sample = self.measure_clean(server.name, server, tool, conns, depth)
                if sample:
                    ctx.log(f"  {server.name} run {run}: {sample.text()} "
                            "(cpu_us/op ops/s p99_us server_cpu% load_cpu% foreign_cpu%)")
                    into.append(Row(case, server.name, 1, *sample))
        ctx.processes.stop_all()

    def run_scaling(self, case: str, tool: str, conns: int, depth: int, kind: str) -> None:
        """The KIND server with 1 worker pinned to the server core and with 2 not pinned,
        measured in turn within each run; the load generator stays on its core. `tool` is
        one of pipelined_load's loads: cheap enough per request that the server, not the
        client, sets the pace."""
        ctx = self.ctx
        ctx.waiter.wait()
        ctx.log(f"scaling: {case}, {kind} with 1 and 2 workers")
        one = self.start_peer(kind, self.lifetime(2), 1)
        if not one:
            return
        two = self.start_peer(kind, self.lifetime(2), 2, pinned=False)
        if not two:
            ctx.processes.stop_all()
            return
        self.warm_up([one, two], tool, conns, depth)
        for run in range(1, ctx.options.runs + 1):
            for workers, server in ((1, one), (2, two)):
                sample = self.measure_clean(f"{kind} x{workers}", server, tool, conns, depth)
                if sample:
                    ctx.log(f"  {kind} x{workers} run {run}: {sample.text()}")
                    self.scaling.append(Row(case, kind, workers, *sample))
        ctx.processes.stop_all()

    def run_footprint(self, kind: str) -> None:
        """RSS of the server before and after N idle connections, and its threads."""
        ctx = self.ctx
        n = ctx.options.idle_connections
        hold = 20 if ctx.smoke else 60
        ready = os.path.join(ctx.tmp, "idle.ready")
        ctx.waiter.wait()
        ctx.log(f"footprint: {kind}, {n} idle connections")
        server = self.start_peer(kind, hold + 90)
        if not server:
            return
        time.sleep(0.5)
        pids = ctx.proc.tree(server.pid)
        rss0 = ctx.proc.status_sum("VmRSS", pids)
        fds0 = ctx.proc.fd_count(pids)
        if os.path.exists(ready):
            os.remove(ready)
        out = os.path.join(ctx.tmp, "idle.out")
        load = ctx.processes.start_load(hold + 30, [
            ctx.bins["idle_conns"], f"--target=127.0.0.1:{server.port}", f"--connections={n}",
            f"--hold={hold}s", f"--ready_file={ready}"], out, out + ".err")
        ok = wait_until(lambda: os.path.exists(ready), 60, lambda: load.poll() is None)
        # Every connection is open; wait until the server has taken them all.
        ok = ok and wait_until(lambda: ctx.proc.fd_count(pids) >= fds0 + n, 20)
        if ok:
            time.sleep(1)
            rss1 = ctx.proc.status_sum("VmRSS", pids)
            threads = ctx.proc.status_sum("Threads", pids)
            ctx.log(f"  {kind}: RSS {rss0} kB -> {rss1} kB, {int((rss1 - rss0) * 1024 / n)} B/connection, "
                    f"{threads} threads")
            self.footprint.append(Footprint(kind, n, rss0, rss1, threads))
        else:
            ctx.fail(f"{kind}: footprint: {n} idle connections did not open: "
                     f"{read_text(out, out + '.err')[-300:]}")
        end(load)
        ctx.processes.stop_all()

    def run(self) -> None:
        """Every TCP case that --only selects (TLS is tls.py's)."""
        ctx = self.ctx
        # The io_uring servers (the floors, and the harness on its io_uring loop) where
        # the kernel takes io_uring.
        uring_off = uring_unavailable(ctx.bins["uring_echo"])
        if uring_off:
            ctx.skipped.append("io_uring servers (the harness with --event_loop=io_uring: islet_uring_http, "
                               "islet_uring_echo; the floors: uring_http, uring_echo): io_uring is "
                               f"unavailable: {uring_off}")
        uring = (lambda kind: []) if uring_off else (lambda kind: [kind])
        http_peers = ["islet_http"] + uring("islet_uring_http") + ["epoll_http"] + uring("uring_http")
        if ctx.tools["nginx"]:
            http_peers.append("nginx")
        else:
            ctx.skipped.append("nginx: not installed (apt-get install nginx-light): the nginx columns are skipped")
        if ctx.wants("http"):
            if not ctx.tools["wrk"]:
                ctx.skipped.append("HTTP cases: wrk is not installed (apt-get install wrk)")
            else:
                self.run_case(HTTP_C50, "wrk", 50, 1, http_peers)
                self.run_case(HTTP_C200, "wrk", 200, 1, http_peers)
                self.run_case(HTTP_PIPELINED, "wrk", 50, 16, http_peers)
                self.run_case(HTTP_CHURN, "wrk_close", 50, 1, http_peers)
        if ctx.wants("echo"):
            echo_peers = ["islet_echo"] + uring("islet_uring_echo") + ["epoll_echo"] + uring("uring_echo")
            self.run_case(ECHO_DEPTH1, "echo", 50, 1, echo_peers)
            self.run_case(ECHO_DEPTH16, "echo", 50, 16, echo_peers)
        if ctx.wants("uring") and not uring_off:
            # What each io_uring feature buys: the floors with one feature off at a time.
            # (Not the harness on io_uring: it has none of these features to turn off; the
            # HTTP and echo cases measure it.)
            for case, tool, conns, depth, binary in (
                    (HTTP_C50, "wrk", 50, 1, "uring_http"),
                    (HTTP_CHURN, "wrk_close", 50, 1, "uring_http"),
                    (ECHO_DEPTH1, "echo", 50, 1, "uring_echo"),
                    (ECHO_DEPTH16, "echo", 50, 16, "uring_echo")):
                if tool.startswith("wrk") and not ctx.tools["wrk"]:
                    continue
                self.run_case(f"io_uring features: {case}", tool, conns, depth,
                              [" ".join([binary] + flags) for flags in URING_STEPS], into=self.uring_steps)
        if ctx.wants("metrics"):
            # The metrics sink's cost: the harness with and without it, in turn in each run.
            if ctx.tools["wrk"]:
                self.run_case(f"Metrics sink: {HTTP_C50}", "wrk", 50, 1, ["islet_http", "islet_http_metrics"])
            self.run_case("Metrics sink: echo 64 B, 50 conns, depth 1", "echo", 50, 1,
                          ["islet_echo", "islet_echo_metrics"])
        if ctx.wants("footprint"):
            # Not the io_uring floors: their connections are registered files, not
            # descriptors, so the wait for the server to hold N descriptors cannot see them.
            # The harness on io_uring keeps descriptors (docs/IO_URING.md).
            kinds = (["islet_echo"] + uring("islet_uring_echo") + ["islet_http"] + uring("islet_uring_http")
                     + ["epoll_echo"] + (["nginx"] if ctx.tools["nginx"] else []))
            for kind in kinds:
                self.run_footprint(kind)
        if ctx.wants("scaling"):
            http = "HTTP hello, pipelined_load -c 50, depth 64"
            echo = "Echo 64 B, pipelined_load -c 50, depth 64"
            self.run_scaling(http, "pipelined_http", 50, 64, "islet_http")
            if not ctx.smoke:
                self.run_scaling(http, "pipelined_http", 50, 64, "epoll_http")
            self.run_scaling(echo, "pipelined_echo", 50, 64, "islet_echo")
            if not ctx.smoke:
                self.run_scaling(echo, "pipelined_echo", 50, 64, "epoll_echo")
