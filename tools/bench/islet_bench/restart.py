"""The restart case: what a takeover costs clients under load (docs/BENCHMARKS_RESTART.md).

The harness (http_hello, one worker, on the server core) serves wrk -t1 -c50 (keep-alive,
on the load core) for the run's duration. In a takeover run, a new harness takes the
listening socket over half-way through (--takeover, the deploy's one command) and the
old one drains and exits; a baseline run has no restart; a graceful takeover run gives
the old harness --shutdown_grace=1s, so that a request already on its way to it is
answered (with Connection: close) rather than met by the drain's close. Each run
reports requests/s, wrk's errors (a request whose connection closed under it counts as
a read error: wrk does not retry), the p99 and the largest latency. Runs alternate
between the kinds. Not asserted
anywhere: the tests assert that nothing is lost (harness_restart_test,
harness_proxy_protocol_test); this shows what the restart costs in latency.
"""

import os
import re
import time
from typing import Dict, List, Optional, Tuple

from islet_bench import loads
from islet_bench.case import AlternatingCase
from islet_bench.servers import Server, read_lines, read_text, wait_until
from islet_bench.stats import summary

CLIENTS = 50
FIGURES = ("rate", "errors", "p99_us", "max_us")
# Each kind: (column title, a takeover half-way, the old harness's --shutdown_grace).
KINDS = {
    "baseline": ("no restart", False, "0s"),
    "takeover": ("a takeover half-way", True, "0s"),
    "graceful": ("a takeover, --shutdown_grace=1s", True, "1s"),
}

RESTART_HEADER = """# Restart benchmark

Written by `tools/bench/restart_bench.sh` (the case: `tools/bench/islet_bench/restart.py`):
the harness under wrk, with and without a takeover half-way through the run. Each full
run appends a section; the newest is last. Figures are the median of the runs, with
[min-max].
"""


def wrk_max_us(text: str) -> Optional[float]:
    """The largest latency wrk reports (its "Latency avg stdev max" line), in µs."""
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    return loads.to_us(m.group(1)) if m else None


class RestartCase(AlternatingCase):
    def __init__(self, ctx):
        super().__init__(ctx, "restart", 1 if ctx.smoke else 3)
        self.duration = 2 if ctx.smoke else 10
        self.figures: Dict[str, Dict[str, List[float]]] = {
            kind: {name: [] for name in FIGURES} for kind in KINDS}
        self.generation = 0

    def harness(self, handoff: str, port: int, takeover: bool, grace: str = "0s") -> Optional[Server]:
        ctx = self.ctx
        self.generation += 1
        cmd = [ctx.bins["harness"], "--handler=http_hello", "--num_workers=1", "--ip=127.0.0.1",
               f"--port={port}", "--log=error", "--shutdown_timeout=5s", f"--shutdown_grace={grace}",
               f"--handoff_socket={handoff}"]
        if takeover:
            cmd.append(f"--takeover={handoff}")
        return ctx.processes.start(f"harness{self.generation}", ctx.server_cpu, self.duration + 60, cmd)

    def run_one(self, label: str, restart: bool, grace: str) -> Optional[Tuple[float, ...]]:
        ctx = self.ctx
        handoff = os.path.join("/tmp", f"islet-bench-restart-{os.getpid()}.sock")
        old = self.harness(handoff, 0, takeover=False, grace=grace)
        if old is None:
            return None
        out, err = os.path.join(ctx.tmp, f"{label}.wrk"), os.path.join(ctx.tmp, f"{label}.wrk.err")
        load = ctx.processes.start_load(self.duration + 30, [
            ctx.tools["wrk"], "-t1", f"-c{CLIENTS}", f"-d{self.duration}s", "--timeout", "5s", "--latency",
            f"http://127.0.0.1:{old.port}/"], out, err)
        if restart:
            time.sleep(self.duration / 2)
            new = self.harness(handoff, old.port, takeover=True)
            if new is None:
                load.wait()
                ctx.processes.stop_all()
                return None
            if not wait_until(lambda: not ctx.proc.alive(old.pid), 15):
                self.fail(f"{label}: the old harness did not exit after the takeover: "
                          f"{read_text(old.err)[-300:]}")
        load.wait()
        ctx.processes.stop_all()
        text = "\n".join(read_lines(out))
        wrk = loads.parse_wrk(text)
        max_us = wrk_max_us(text)
        p99 = loads.to_us(wrk.p99)
        if load.returncode != 0 or wrk.rate is None or p99 is None or max_us is None:
            self.fail(f"{label}: wrk: exit {load.returncode}: {' '.join(text.splitlines())[-400:]} "
                      f"{read_text(err)[-200:]}")
            return None
        ctx.log(f"restart {label}: {wrk.rate:.0f} req/s, {wrk.errors} errors, p99 {p99} us, "
                f"max {max_us} us")
        return float("%.0f" % wrk.rate), float(wrk.errors), p99, max_us

    def run(self) -> Optional[str]:
        ctx = self.ctx
        if ctx.server_cpu is None:
            self.fail("needs at least 2 cores (servers on core 0, load on core 1)")
            return None
        for n in range(1, self.runs + 1):
            for kind, (_, restart, grace) in KINDS.items():
                ctx.waiter.wait()
                self.take(self.figures[kind], FIGURES, self.run_one(f"{kind}#{n}", restart, grace))
        return restart_table(self.figures, self.duration)


def restart_table(figures: Dict[str, Dict[str, List[float]]], duration: int) -> str:
    def row(text: str, name: str) -> str:
        return "| " + " | ".join([text] + [summary(figures[kind][name]) for kind in KINDS]) + " |"

    return "\n".join([
        "| " + " | ".join([f"wrk -t1 -c{CLIENTS} -d{duration}s, keep-alive"] +
                          [title for title, _, _ in KINDS.values()]) + " |",
        "| --- " * (len(KINDS) + 1) + "|",
        row("requests/s", "rate"),
        row("wrk errors (socket errors and non-2xx)", "errors"),
        row("latency p99 (us)", "p99_us"),
        row("largest latency (us)", "max_us"),
    ])
