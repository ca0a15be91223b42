"""The TLS cases: the harness over TLS against nginx (docs/BENCHMARKS_TLS.md).

 (a) full handshakes: tls_handshake_load, TLS 1.3, ECDSA P-256 certificate, X25519, no
     resumption, one GET per connection, then close_notify and close: handshakes/s and
     the server's CPU per handshake (over the load tool's counted window).
 (b) keep-alive requests: h2load --h1 -c 50 -n N: requests/s and the server's CPU per
     request (over the whole h2load run, divided by N).
 (c) memory per idle TLS connection: tls_idle_conns opens N connections, handshake done,
     then idle: (VmRSS with them - VmRSS before) / N.
Ours: harness --transport=tls --handler=http_hello --num_workers=1 --alpn=http/1.1.
nginx: servers.nginx_config with TLS. Servers on the server core, loads on the load core;
(a) and (b) run both servers side by side and alternate between them, (c) starts a fresh
server per run.
"""

import os
import subprocess
import time
from typing import Dict, List, Optional, Tuple

from islet_bench import host, loads, quiet
from islet_bench.case import AlternatingCase
from islet_bench.report import TLS_FIGURES, tls_table
from islet_bench.servers import Server, end, read_lines, read_text, wait_until
from islet_bench.stats import per_op_us
from islet_bench.window import CpuWindow

HS_THREADS = 4
KA_CLIENTS = 50
IDLE_LIFETIME = 60 + 300 + 60  # the warm-up's bound, the idle run's, and slack


class TlsCases(AlternatingCase):
    def __init__(self, ctx):
        super().__init__(ctx, "TLS", 1 if ctx.smoke else 3)
        smoke = ctx.smoke
        self.hs_duration, self.hs_warmup = ("2s", "0.5s") if smoke else ("5s", "1s")
        self.ka_requests = 20000 if smoke else 300000
        self.idle_connections = 1000 if smoke else 10000
        self.idle_hold = "1s" if smoke else "2s"
        self.ours: Dict[str, List[float]] = {name: [] for name in TLS_FIGURES}
        self.nginx: Dict[str, List[float]] = {name: [] for name in TLS_FIGURES}
        self.cert: Optional[Tuple[str, str]] = None

    # ---- Set-up ------------------------------------------------------------------------

    def ready(self) -> bool:
        """Checks what the cases need and makes the certificate."""
        ctx = self.ctx
        for tool in ("openssl", "taskset"):
            if not host.find_tool(tool):
                self.fail(f"{tool} is missing")
                return False
        if ctx.server_cpu is None:
            self.fail("needs at least 2 cores (server on core 0, load on core 1)")
            return False
        if ctx.nofile < self.idle_connections + 200:
            self.fail(f"the descriptor limit ({ctx.nofile}) is too low for {self.idle_connections} connections")
            return False
        return self.make_certificate()

    def make_certificate(self) -> bool:
        """Self-signed ECDSA P-256 for localhost / 127.0.0.1."""
        directory = os.path.join(self.ctx.tmp, "cert")
        script = os.path.join(self.ctx.repo, "tools", "make_test_cert.sh")
        if os.access(script, os.X_OK):
            cmd = [script, directory]
        else:
            os.makedirs(directory, exist_ok=True)
            cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-days", "2", "-subj", "/CN=localhost",
                   "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                   "-keyout", f"{directory}/key.pem", "-out", f"{directory}/cert.pem"]
        made = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, errors="replace", timeout=60)
        cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
        text = host.output(["openssl", "x509", "-in", cert, "-noout", "-text"]) or ""
        if made.returncode != 0 or "prime256v1" not in text:
            self.fail(f"no P-256 certificate: {made.stderr.strip()[-300:]}")
            return False
        self.cert = (cert, key)
        return True

    # ---- Servers -----------------------------------------------------------------------

    def start_ours(self, lifetime: float) -> Optional[Server]:
        ctx = self.ctx
        return ctx.processes.start("ours", ctx.server_cpu, lifetime, [
            ctx.bins["harness"], "--transport=tls", f"--certfile={self.cert[0]}",
            f"--keyfile={self.cert[1]}", "--alpn=http/1.1", "--handler=http_hello", "--num_workers=1",
            "--ip=127.0.0.1", "--port=0", "--log=error"])

    def start_nginx(self, lifetime: float) -> Optional[Server]:
        ctx = self.ctx
        return ctx.processes.start_nginx("nginx", ctx.server_cpu, lifetime, ctx.tools["nginx"], ctx.nofile,
                                         tls=self.cert)

    def check_ours_log(self, server: Server) -> None:
        """The harness logs at error level: any line but its banner and its stop notice
        and drain lines ("harness: draining: ...", "harness: drained in ...") is an error."""
        self._check_log(server, [server.out, server.err],
                        lambda l: not l.startswith(("islet harness:", "harness: draining:", "harness: drained in "))
                        and "draining (up to" not in l)

    def check_nginx_log(self, server: Server) -> None:
        self._check_log(server, [server.error_log],
                        lambda l: any(f"[{level}]" in l for level in ("error", "crit", "alert", "emerg")))

    def _check_log(self, server: Server, paths: List[str], bad) -> None:
        lines = [l for l in read_lines(*paths) if l.strip() and bad(l)]
        if lines:
            self.fail(f"{server.name} logged errors: {' | '.join(lines[:5])}")

    # ---- Runs --------------------------------------------------------------------------

    def run_handshakes(self, label: str, server: Server) -> Optional[Tuple[float, ...]]:
        """(a): (rate, CPU µs per handshake, p50 µs, p99 µs, foreign %)."""
        ctx = self.ctx
        pids = ctx.proc.tree(server.pid)
        with CpuWindow(ctx.proc, pids, ctx.hz, ctx.cores) as window:
            done = ctx.processes.run_load(120, [
                ctx.bins["tls_handshake_load"], f"--target=127.0.0.1:{server.port}",
                f"--threads={HS_THREADS}", f"--duration={self.hs_duration}", f"--warmup={self.hs_warmup}",
                "--request=http", "--cpu_pids=" + ",".join(str(p) for p in pids)], stderr_apart=True)
        out = done.stdout.strip()
        figures = [loads.number(out, key) for key in ("rate", "cpu_per_handshake", "p50", "p99")]
        if done.returncode != 0 or None in figures:
            self.fail(f"{label} handshakes failed: {out} {done.stderr.strip()[-400:]}")
            return None
        foreign = round(window.foreign_percent())
        params = (done.stderr.strip().splitlines() or [""])[-1].replace("tls_handshake_load: ", "")
        ctx.log(f"TLS {label} handshakes: {out} ({params}; foreign CPU {foreign}%)")
        return (*figures, foreign)

    def run_keepalive(self, label: str, server: Server) -> Optional[Tuple[float, ...]]:
        """(b): (requests/s, server CPU µs per request, foreign %)."""
        ctx = self.ctx
        with CpuWindow(ctx.proc, ctx.proc.tree(server.pid), ctx.hz, ctx.cores) as window:
            done = ctx.processes.run_load(120, [
                ctx.tools["h2load"], "--h1", "-t", "1", "-c", str(KA_CLIENTS), "-n", str(self.ka_requests),
                f"https://127.0.0.1:{server.port}/"])
        h2 = loads.parse_h2load(done.stdout, self.ka_requests)
        if done.returncode != 0:
            self.fail(f"{label} keep-alive: h2load failed: {' '.join(done.stdout.splitlines()[-5:])}")
            return None
        if h2.succeeded != self.ka_requests or not h2.all_2xx or h2.rate is None:
            summary = [l for l in done.stdout.splitlines() if l.startswith(("requests:", "status codes:"))]
            self.fail(f"{label} keep-alive: not every request succeeded with a 2xx: {' '.join(summary)}")
            return None
        cpu_us = float("%.2f" % per_op_us(window.server_ticks, ctx.hz, self.ka_requests))
        foreign = round(window.foreign_percent())
        ctx.log(f"TLS {label} keep-alive: {h2.rate} req/s, server CPU {window.server_ticks / ctx.hz:.2f}s "
                f"= {cpu_us} us/request (foreign CPU {foreign}%)")
        return h2.rate, cpu_us, foreign

    def run_idle(self, label: str, server: Server, mem_pid: int, count: int) -> Optional[float]:
        """(c): KiB per idle connection. The server is warmed up first (a few connections,
        closed), so one-time allocations fall in the baseline."""
        ctx = self.ctx
        tool = ctx.bins["tls_idle_conns"]
        target = f"--target=127.0.0.1:{server.port}"
        warm = ctx.processes.run_load(60, [tool, target, "--connections=64", "--hold=0s", "--check_http"],
                                      stderr_apart=True)
        if warm.returncode != 0:
            self.fail(f"{label} idle warm-up failed: {warm.stderr.strip()[-400:]}")
            return None
        time.sleep(0.5)
        base = ctx.proc.status_sum("VmRSS", [mem_pid])
        ready = os.path.join(ctx.tmp, f"ready.{label}")
        out, err = os.path.join(ctx.tmp, "idle.out"), os.path.join(ctx.tmp, "idle.err")
        client = ctx.processes.start_load(300, [tool, target, f"--connections={count}",
                                                f"--hold={self.idle_hold}", "--check_http",
                                                f"--ready_file={ready}"], out, err)
        if not wait_until(lambda: os.path.exists(ready), 60, lambda: client.poll() is None):
            end(client)
            self.fail(f"{label} idle: the connections did not open: {read_text(err)[-400:]}")
            return None
        time.sleep(0.5)  # the server takes each client Finished after the client has sent it
        with_them = ctx.proc.status_sum("VmRSS", [mem_pid])
        if client.wait() != 0:
            self.fail(f"{label} idle: {read_text(out)} {read_text(err)[-400:]}")
            return None
        per = float("%.2f" % ((with_them - base) / count))
        ctx.log(f"TLS {label} idle: {(read_lines(out) or [''])[0]}, RSS {base} -> {with_them} KiB "
                f"= {per} KiB/connection")
        return per

    # ---- The cases ---------------------------------------------------------------------

    def run(self) -> Optional[str]:
        """Runs (a), (b), (c); the table, or None if the cases could not run at all."""
        ctx = self.ctx
        if not self.ready():
            return None
        ctx.log(f"TLS: servers on core {ctx.server_cpu}, load on core {ctx.load_cpu}; {self.runs} run(s) per case")
        budget = 120 + ctx.options.quiet_wait + 15  # one load run, waiting for quiet included
        lifetime = (self.runs + 1) * 4 * quiet.TRIES * budget + 60
        # (a) and (b): both servers up, runs interleaved so drift hits both alike.
        ctx.waiter.wait()
        ours, nginx = self.start_ours(lifetime), self.start_nginx(lifetime)
        hs = ("hs_rate", "hs_cpu", "hs_p50", "hs_p99")
        for run in range(1, self.runs + 1):
            self.take(self.ours, hs, self.attempt(self.run_handshakes, f"ours#{run}", ours))
            self.take(self.nginx, hs, self.attempt(self.run_handshakes, f"nginx#{run}", nginx))
        ctx.waiter.wait()
        ka = ("ka_rate", "ka_cpu")
        for run in range(1, self.runs + 1):
            self.take(self.ours, ka, self.attempt(self.run_keepalive, f"ours#{run}", ours))
            self.take(self.nginx, ka, self.attempt(self.run_keepalive, f"nginx#{run}", nginx))
        ctx.processes.stop_all()
        if ours:
            self.check_ours_log(ours)
        if nginx:
            self.check_nginx_log(nginx)
        # (c): a fresh server per run.
        sides = (("ours", self.start_ours, self.check_ours_log, self.ours),
                 ("nginx", self.start_nginx, self.check_nginx_log, self.nginx))
        for run in range(1, self.runs + 1):
            for name, start, check_log, figures in sides:
                ctx.waiter.wait()
                server = start(IDLE_LIFETIME)
                if server is None:
                    self.failed = True
                    continue
                # nginx: its worker's memory.
                mem_pid = server.pid if name == "ours" else (ctx.proc.children(server.pid) or [server.pid])[0]
                self.take(figures, ("idle",), _single(self.run_idle(f"{name}#{run}", server, mem_pid,
                                                                    self.idle_connections)))
                ctx.processes.stop_all()
                check_log(server)
        return tls_table(self.ours, self.nginx, KA_CLIENTS, self.ka_requests, self.idle_connections,
                         self.idle_connections)


def _single(value: Optional[float]) -> Optional[Tuple[float]]:
    return None if value is None else (value,)

