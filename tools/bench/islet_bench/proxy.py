"""The proxy cases: examples/proxy in the harness against HAProxy (docs/BENCHMARKS_PROXY.md).

Both proxies relay TCP to one upstream, with one thread on the server core:
  ours:    harness --handler=proxy --upstream=127.0.0.1:PORT --num_workers=1
  HAProxy: mode tcp, nbthread 1, one backend server, no splicing (its default).
The upstream and the load tool share the load core; only the proxy's CPU is counted.

 (a) keep-alive HTTP: wrk -t1 -c50 through the proxy to epoll_http: requests/s and the
     proxy's CPU per forwarded request.
 (b) bulk: echo_load, one connection, 64 KiB messages, 16 in flight, through the proxy to
     epoll_echo (every byte checked): MiB/s each way and the proxy's CPU per MiB relayed
     each way (a MiB in and the same MiB back).
 (c) connections: wrk -t1 -c50 with "Connection: close" through the proxy to the harness's
     http_hello, which closes after each answer: each request is a new client connection
     and a new outbound connect. Connections/s and the proxy's CPU per connection.
Runs alternate between the two proxies, so drift hits both alike.
"""

import os
from typing import Dict, List, Optional, Tuple

from islet_bench import loads, ports, quiet
from islet_bench.case import AlternatingCase
from islet_bench.stats import median, ratio, summary
from islet_bench.servers import Server, read_lines
from islet_bench.stats import per_op_us
from islet_bench.window import CpuWindow

KA_CLIENTS = 50
BULK_SIZE = 64 << 10
BULK_DEPTH = 16
FIGURES = ("ka_rate", "ka_cpu", "bulk_mib", "bulk_cpu", "conn_rate", "conn_cpu")

PROXY_HEADER = """# Proxy benchmarks

Written by `tools/bench/proxy_bench.sh` (the cases: `tools/bench/islet_bench/proxy.py`):
examples/proxy in the harness against HAProxy in `mode tcp`, one thread each, on
loopback. Each full run appends a section; the newest is last. Figures are the median
of the runs, with [min-max].
"""


def haproxy_config(directory: str, port: int, upstream: int, nofile: int) -> str:
    return f"""global
    nbthread 1
    maxconn {max(1000, nofile // 2 - 100)}
    pidfile {directory}/haproxy.pid

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend relay
    bind 127.0.0.1:{port}
    default_backend upstream

backend upstream
    server one 127.0.0.1:{upstream}
"""


class ProxyCases(AlternatingCase):
    def __init__(self, ctx):
        super().__init__(ctx, "proxy", 1 if ctx.smoke else 3)
        self.duration = 1 if ctx.smoke else 10
        self.ours: Dict[str, List[float]] = {name: [] for name in FIGURES}
        self.haproxy: Dict[str, List[float]] = {name: [] for name in FIGURES}

    # ---- Servers -----------------------------------------------------------------------

    def lifetime(self) -> int:
        budget = self.duration + 45 + self.ctx.options.quiet_wait
        return (self.runs + 1) * 2 * quiet.TRIES * budget + 60

    def start_upstream(self, kind: str) -> Optional[Server]:
        """On the load core: epoll_http, epoll_echo, or the harness's http_hello."""
        ctx = self.ctx
        if kind == "http_hello":
            cmd = [ctx.bins["harness"], "--handler=http_hello", "--port=0", "--num_workers=1",
                   "--log=off", "--shutdown_timeout=1s"]
        else:
            cmd = [ctx.bins[kind], "--port=0", "--threads=1"]
        return ctx.processes.start(f"upstream-{kind}", ctx.load_cpu, self.lifetime(), cmd)

    def start_ours(self, upstream: Server) -> Optional[Server]:
        ctx = self.ctx
        return ctx.processes.start("ours", ctx.server_cpu, self.lifetime(), [
            ctx.bins["harness"], "--handler=proxy", f"--upstream=127.0.0.1:{upstream.port}",
            "--num_workers=1", "--ip=127.0.0.1", "--port=0", "--log=error", "--shutdown_timeout=1s"])

    def start_haproxy(self, upstream: Server) -> Optional[Server]:
        ctx = self.ctx
        directory = os.path.join(ctx.tmp, f"haproxy.{upstream.port}")
        os.makedirs(directory, exist_ok=True)
        port = ports.free_port()
        if port is None:
            self.fail("no free port for HAProxy")
            return None
        config = os.path.join(directory, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(haproxy_config(directory, port, upstream.port, ctx.nofile))
        return ctx.processes.start("haproxy", ctx.server_cpu, self.lifetime(),
                                   [ctx.tools["haproxy"], "-f", config, "-db"], port=port)

    # ---- Runs --------------------------------------------------------------------------

    def run_wrk(self, label: str, server: Server, close: bool) -> Optional[Tuple[float, ...]]:
        """(a) or (c): (requests/s, proxy CPU µs per request, foreign %)."""
        ctx = self.ctx
        header = ["-H", "Connection: close"] if close else []
        with CpuWindow(ctx.proc, ctx.proc.tree(server.pid), ctx.hz, ctx.cores) as window:
            done = ctx.processes.run_load(self.duration + 30, [
                ctx.tools["wrk"], "-t1", f"-c{KA_CLIENTS}", f"-d{self.duration}s", "--timeout", "5s"]
                + header + [f"http://127.0.0.1:{server.port}/"])
        count = loads.count("wrk", done.stdout, 1)
        if done.returncode != 0 or not count.ops or count.rate is None or count.errors > 0:
            self.fail(f"{label}: wrk: exit {done.returncode}, errors {count.errors}: "
                      f"{' '.join(done.stdout.splitlines())[-400:]}")
            return None
        cpu = float("%.2f" % per_op_us(window.server_ticks, ctx.hz, count.ops))
        foreign = round(window.foreign_percent())
        ctx.log(f"proxy {label}: {count.rate:.0f}/s, {cpu} us/op (foreign CPU {foreign}%)")
        return float("%.0f" % count.rate), cpu, foreign

    def run_bulk(self, label: str, server: Server) -> Optional[Tuple[float, ...]]:
        """(b): (MiB/s each way, proxy CPU µs per MiB each way, foreign %)."""
        ctx = self.ctx
        with CpuWindow(ctx.proc, ctx.proc.tree(server.pid), ctx.hz, ctx.cores) as window:
            done = ctx.processes.run_load(self.duration + 30, [
                ctx.bins["echo_load"], f"--target=127.0.0.1:{server.port}", "--connections=1",
                f"--size={BULK_SIZE}", f"--depth={BULK_DEPTH}", f"--duration={self.duration}s",
                "--warmup=0s"])
        count = loads.count("echo", done.stdout, BULK_DEPTH)
        if done.returncode != 0 or not count.ops or count.rate is None or count.errors > 0:
            self.fail(f"{label}: echo_load: exit {done.returncode}, errors {count.errors}: "
                      f"{' '.join(done.stdout.splitlines())[-400:]}")
            return None
        mib = count.ops * BULK_SIZE / (1 << 20)
        rate = float("%.0f" % (count.rate * BULK_SIZE / (1 << 20)))
        cpu = float("%.1f" % (window.server_ticks / ctx.hz * 1e6 / mib))
        foreign = round(window.foreign_percent())
        ctx.log(f"proxy {label}: {rate} MiB/s each way, {cpu} us/MiB (foreign CPU {foreign}%)")
        return rate, cpu, foreign

    def check_ours_log(self, server: Server) -> None:
        lines = [l for l in read_lines(server.out, server.err)
                 if l.strip() and not l.startswith(("islet harness:", "harness: draining:", "harness: drained in "))
                 and "draining (up to" not in l]
        if lines:
            self.fail(f"ours logged errors: {' | '.join(lines[:5])}")

    # ---- The cases ---------------------------------------------------------------------

    def case(self, upstream_kind: str, names: Tuple[str, ...], run) -> None:
        """Starts the upstream and both proxies, then alternates the runs between them."""
        ctx = self.ctx
        ctx.waiter.wait()
        upstream = self.start_upstream(upstream_kind)
        if upstream is None:
            self.failed = True
            return
        ours, haproxy = self.start_ours(upstream), self.start_haproxy(upstream)
        if not ctx.smoke:
            for server in (ours, haproxy):
                if server:
                    run("warm-up", server)
        for n in range(1, self.runs + 1):
            self.take(self.ours, names, self.attempt(run, f"ours#{n}", ours))
            self.take(self.haproxy, names, self.attempt(run, f"haproxy#{n}", haproxy))
        ctx.processes.stop_all()
        if ours:
            self.check_ours_log(ours)

    def run(self) -> Optional[str]:
        ctx = self.ctx
        if ctx.server_cpu is None:
            self.fail("needs at least 2 cores (proxy on core 0, load and upstream on core 1)")
            return None
        ctx.log(f"proxy: proxies on core {ctx.server_cpu}, upstream and load on core {ctx.load_cpu}; "
                f"{self.runs} run(s) per case")
        self.case("epoll_http", ("ka_rate", "ka_cpu"), lambda l, s: self.run_wrk(l, s, close=False))
        self.case("epoll_echo", ("bulk_mib", "bulk_cpu"), self.run_bulk)
        self.case("http_hello", ("conn_rate", "conn_cpu"), lambda l, s: self.run_wrk(l, s, close=True))
        return proxy_table(self.ours, self.haproxy)


def proxy_table(ours: Dict[str, List[float]], haproxy: Dict[str, List[float]]) -> str:
    o, h = ours, haproxy

    def row(text: str, name: str) -> str:
        return (f"| {text} | {summary(o[name])} | {summary(h[name])} | "
                f"{ratio(median(o[name]), median(h[name]))} |")

    return "\n".join([
        "| case | ours (examples/proxy) | HAProxy 2.6 (mode tcp) | ours / HAProxy |",
        "| --- | --- | --- | --- |",
        row(f"(a) keep-alive HTTP through the proxy, requests/s (wrk -c {KA_CLIENTS})", "ka_rate"),
        row("(a) proxy CPU per forwarded request (us)", "ka_cpu"),
        row(f"(b) bulk, one connection, MiB/s each way ({BULK_SIZE >> 10} KiB x {BULK_DEPTH} in flight)",
            "bulk_mib"),
        row("(b) proxy CPU per MiB relayed each way (us)", "bulk_cpu"),
        row(f"(c) new connections/s, one request each (wrk -c {KA_CLIENTS}, Connection: close)",
            "conn_rate"),
        row("(c) proxy CPU per connection, client side and upstream connect (us)", "conn_cpu"),
    ])
