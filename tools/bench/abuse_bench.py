#!/usr/bin/python3 -B
"""Islet's abuse benchmark (issue 12): figures for hostile clients, written to docs/ABUSE.md.

tools/bench/abuse.sh builds the binaries (-c opt) and calls this program; it builds
nothing. The cases, each against the harness on 127.0.0.1 with its flood from
//tools/abuse:flood_client in another process:
- a good client's request latency (p50, p99), keep-alive and one connection per request,
  without a flood and during 10,000 connections trickling a byte a second;
- the same, one connection per request, with --max_connections=4000 and 10,000
  tricklers that reconnect, 60 s timeouts: served at all, and how fast;
- the harness's peak memory (VmHWM over its resident size before the flood) under 1,000
  connections that never read, with --output_budget=64MiB and with the default budget;
  and under a messenger flood (one sender, a room of members who never read);
- Stop's overshoot: SIGTERM with --shutdown_timeout=1s during that messenger flood, the
  time from the signal to the exit minus 1 s;
- the lines the harness logs (--log=info) during a storm of 20,000 resets.
Every process runs for a bounded time and is killed on exit. Figures, not assertions:
a case that fails to start says so in its cell.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Sequence, Tuple

from islet_bench import abuse, host
from islet_bench.proc import Proc, parse_status_field

GET = b"GET / HTTP/1.1\r\nHost: good\r\n\r\n"
MIB = 1 << 20
STOP_SECONDS = 20


def parse_options(argv):
    parser = argparse.ArgumentParser(prog="abuse_bench.py", allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin_dir", required=True, metavar="DIR",
                        help="the binaries are DIR/tools/harness/harness and DIR/tools/abuse/flood_client")
    parser.add_argument("--build_mode", default="given by --bin_dir", metavar="TEXT")
    parser.add_argument("--tricklers", type=int, default=10000, metavar="N")
    parser.add_argument("--cap", type=int, default=4000, metavar="N", help="--max_connections of the capped case")
    parser.add_argument("--slow_readers", type=int, default=1000, metavar="N")
    parser.add_argument("--room", type=int, default=200, metavar="N", help="messenger members who never read")
    parser.add_argument("--resets", type=int, default=20000, metavar="N")
    parser.add_argument("--no_write", dest="write", action="store_false", help="print the report only")
    parser.add_argument("--smoke", action="store_true",
                        help="every case, small and short; writes nothing; fails if a case cannot run "
                             "(//tools/bench:abuse_bench_smoke_test)")
    parser.add_argument("--command", default=None, metavar="TEXT", help="the command line the report names")
    options = parser.parse_args(argv)
    if options.command is None:
        options.command = " ".join(["tools/bench/abuse_bench.py"] + argv)
    options.seconds = 3.0  # of each latency and memory measurement
    options.capped_wait = 30.0  # the good client's patience for each capped request
    if options.smoke:
        options.tricklers, options.cap, options.slow_readers = 200, 50, 50
        options.room, options.resets, options.write = 20, 500, False
        options.seconds, options.capped_wait = 0.5, 3.0
    return options


class Child:
    """A process whose stdout is read by a thread: the first lines are kept (a listening
    line, the flood's lines), the rest discarded (the messenger prints every chat line)."""

    KEEP = 1 << 20

    def __init__(self, cmd: Sequence[str], stderr_path: str):
        self._stderr = open(stderr_path, "wb")
        self.popen = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=self._stderr)
        self._lock = threading.Lock()
        self._text = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            chunk = self.popen.stdout.read1(1 << 16)
            if not chunk:
                return
            with self._lock:
                if len(self._text) < self.KEEP:
                    self._text += chunk

    def text(self) -> str:
        with self._lock:
            return self._text.decode(errors="replace")

    def wait_for(self, condition, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition(self.text()):
                return True
            if self.popen.poll() is not None:
                time.sleep(0.1)  # the reader's last chunk
                return condition(self.text())
            time.sleep(0.02)
        return False

    def stop(self, sig=signal.SIGTERM, seconds: float = STOP_SECONDS) -> Optional[float]:
        """Signals and waits; the seconds it took to exit, or None if it had to be killed."""
        start = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=seconds)
            elapsed = time.monotonic() - start
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            elapsed = None
        self._reader.join(timeout=5)
        self._stderr.close()
        return elapsed


class Bench:
    def __init__(self, options, bins, tmp: str):
        self.o = options
        self.bins = bins
        self.tmp = tmp
        self.proc = Proc()
        self.children: List[Child] = []
        self.serial = 0

    def _child(self, cmd, name) -> Child:
        self.serial += 1
        child = Child(cmd, os.path.join(self.tmp, f"{self.serial}-{name}.err"))
        self.children.append(child)
        return child

    def stop_all(self):
        for child in self.children:
            child.stop(signal.SIGKILL, 5)

    def harness(self, flags: Sequence[str]) -> Tuple[Child, int]:
        child = self._child([self.bins["harness"], "--ip=127.0.0.1", "--port=0", *flags], "harness")
        if not child.wait_for(lambda t: "\n" in t, 30):
            raise RuntimeError(f"the harness did not start: {child.text()!r}")
        line = child.text().splitlines()[0]
        return child, int(line.rsplit(":", 1)[1].split()[0])

    def flood(self, port: int, flags: Sequence[str]) -> Child:
        return self._child([self.bins["flood_client"], f"--target=127.0.0.1:{port}", *flags], "flood")

    @staticmethod
    def flood_line(child: Child, what: str, seconds: float) -> Optional[dict]:
        """The flood's first whole line of kind `what` within `seconds`, or None."""
        def whole(text: str) -> str:
            return text[:text.rfind("\n") + 1]
        found = child.wait_for(lambda t: bool(abuse.flood_lines(whole(t), what)), seconds)
        return abuse.flood_lines(whole(child.text()), what)[0] if found else None

    def kb(self, pid: int, field: str) -> int:
        text = self.proc._read(str(pid), "status")
        return parse_status_field(text or "", field)

    # ---- the good client ----

    @staticmethod
    def _response(sock: socket.socket, buffer: bytes) -> bytes:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        return rest[length:]

    def keepalive(self, port: int, seconds: float) -> abuse.Latency:
        times, asked = [], 0
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                buffer = b""
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    asked += 1
                    start = time.perf_counter()
                    sock.sendall(GET)
                    buffer = self._response(sock, buffer)
                    times.append(time.perf_counter() - start)
        except OSError:
            pass
        return abuse.Latency(max(asked, 1), len(times), times)

    def new_connections(self, port: int, count: int, timeout: float, give_up_after: int) -> abuse.Latency:
        times, asked, failures = [], 0, 0
        for _ in range(count):
            asked += 1
            start = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                    sock.settimeout(max(0.1, timeout - (time.perf_counter() - start)))
                    sock.sendall(GET)
                    self._response(sock, b"")
                times.append(time.perf_counter() - start)
            except OSError:
                failures += 1
                if failures >= give_up_after:
                    break
        return abuse.Latency(asked, len(times), times)

    # ---- the cases ----

    def trickle(self):
        server, port = self.harness(["--handler=http_hello", "--head_timeout=60s", "--read_timeout=60s",
                                     "--shutdown_timeout=1s", "--log=warning"])
        quiet_ka = self.keepalive(port, self.o.seconds)
        quiet_new = self.new_connections(port, 500, 10, 3)
        flood = self.flood(port, ["--mode=trickle", f"--connections={self.o.tricklers}", "--interval=1s",
                                  "--duration=120s", "--ready_timeout=30s"])
        ready = self.flood_line(flood, "ready", 40)
        connected = int(ready["connected"]) if ready else None
        trickle_ka = self.keepalive(port, self.o.seconds) if ready else None
        trickle_new = self.new_connections(port, 500, 10, 3) if ready else None
        flood.stop()
        server.stop()
        return quiet_ka, quiet_new, trickle_ka, trickle_new, connected

    def capped(self):
        server, port = self.harness(["--handler=http_hello", f"--max_connections={self.o.cap}",
                                     "--read_timeout=60s", "--head_timeout=60s", "--shutdown_timeout=1s",
                                     "--log=warning"])
        flood = self.flood(port, ["--mode=trickle", "--reconnect", f"--connections={self.o.tricklers}",
                                  "--interval=1s", "--duration=240s", "--ready_timeout=10s"])
        pid = server.popen.pid
        deadline = time.monotonic() + 30
        while self.proc.fd_count([pid]) < self.o.cap and time.monotonic() < deadline:
            time.sleep(0.05)
        held = self.proc.fd_count([pid])
        latency = self.new_connections(port, 10, self.o.capped_wait, 2)
        flood.stop()
        server.stop()
        return latency, held

    def slow_readers(self, budget: Optional[int]):
        flags = ["--handler=echo", "--shutdown_timeout=1s", "--log=warning"]
        if budget:
            flags.append(f"--output_budget={budget}")
        server, port = self.harness(flags)
        pid = server.popen.pid
        baseline = self.kb(pid, "VmRSS")
        flood = self.flood(port, ["--mode=noread", "--payload=bytes", f"--connections={self.o.slow_readers}",
                                  "--rcvbuf=4096", "--sndbuf=65536", "--mss=536",
                                  f"--duration={self.o.seconds * 2}s"])
        summary = self.flood_line(flood, "summary", 30)
        peak = self.kb(pid, "VmHWM") - baseline
        flood.stop()
        server.stop()
        shed = int(summary["eof"]) + int(summary["reset"]) if summary else None
        return peak, shed

    def messenger(self, budget: int, seconds: float, stop: bool):
        """One sender floods a room of members who never read, for `seconds`: the peak
        memory over the baseline, and with `stop` the seconds from SIGTERM to the exit."""
        server, port = self.harness(["--handler=messenger", f"--output_budget={budget}",
                                     "--shutdown_timeout=1s", "--log=warning"])
        pid = server.popen.pid
        baseline = self.kb(pid, "VmRSS")
        room = self.flood(port, ["--mode=silent", f"--connections={self.o.room}", "--duration=60s"])
        if not self.flood_line(room, "ready", 30):
            server.stop()
            return None, None
        sender = self.flood(port, ["--mode=noread", "--payload=lines", "--connections=1", "--duration=60s"])
        time.sleep(seconds)
        peak = self.kb(pid, "VmHWM") - baseline
        took = server.stop(signal.SIGTERM, 30) if stop else None
        sender.stop()
        room.stop()
        server.stop()
        return peak, took

    def reset_storm(self):
        server, port = self.harness(["--handler=http_hello", "--log=info"])
        time.sleep(0.5)
        err_path = server._stderr.name
        with open(err_path, "rb") as f:
            before = f.read().count(b"\n")
        flood = self.flood(port, ["--mode=reset", f"--connections={self.o.resets}", "--concurrency=256",
                                  "--duration=120s"])
        summary = self.flood_line(flood, "summary", 130)
        time.sleep(1.5)  # a rate-limited logger's closing count line comes within a second
        with open(err_path, "rb") as f:
            after = f.read().count(b"\n")
        flood.stop()
        server.stop()
        seconds = int(summary["elapsed_ms"]) / 1000 if summary else None
        return after - before, seconds


def machine_lines(options, proc: Proc, load_before: str, load_after: str) -> List[str]:
    compiler = host.first_line(["gcc", "--version"])
    return [
        f"- Machine: {host.cores()} cores ({proc.cpu_model()}), {proc.mem_total_kb() / 1048576:.0f} GiB RAM; "
        f"Linux {platform.release()} ({platform.machine()})",
        f"- Compiler: {compiler}; binaries: {options.build_mode}; commit "
        f"{host.git_commit(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))}",
        "- Nothing pinned: the harness (2 workers, one per core), the flood and the good client "
        "share both cores",
        f"- Load average (1, 5, 15 min) before: {load_before}; after: {load_after}",
    ]


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main(argv):
    options = parse_options(argv)
    tmp = tempfile.mkdtemp(prefix="islet-abuse.")
    bins = {}
    for name, sub in (("harness", "harness"), ("flood_client", "abuse")):
        source = os.path.join(options.bin_dir, "tools", sub, name)
        if not os.access(source, os.X_OK):
            raise SystemExit(f"abuse_bench: missing binary {source}")
        bins[name] = shutil.copy(source, os.path.join(tmp, name))
    bench = Bench(options, bins, tmp)
    load_before = loadavg()
    budget = 64 * MIB
    try:
        print("abuse_bench: trickle", file=sys.stderr)
        quiet_ka, quiet_new, trickle_ka, trickle_new, connected = bench.trickle()
        print("abuse_bench: capped", file=sys.stderr)
        capped, held = bench.capped()
        print("abuse_bench: slow readers", file=sys.stderr)
        slow_peak, slow_shed = bench.slow_readers(budget)
        slow_default_peak, _ = bench.slow_readers(None)
        print("abuse_bench: messenger", file=sys.stderr)
        messenger_peak, _ = bench.messenger(budget, options.seconds, stop=False)
        # The signal comes while the members' queues are still filling (before the room
        # drops them for not keeping up), so the workers have a deep backlog.
        _, stop_took = bench.messenger(budget, 1, stop=True)
        print("abuse_bench: reset storm", file=sys.stderr)
        reset_lines, reset_seconds = bench.reset_storm()
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    figures = abuse.Figures(quiet_ka, quiet_new, trickle_ka, trickle_new, connected, capped, held,
                            budget >> 10, slow_peak, slow_default_peak, slow_shed, budget >> 10,
                            messenger_peak, options.room, stop_took, options.resets, reset_lines,
                            reset_seconds)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = abuse.report(when, options.command, machine_lines(options, bench.proc, load_before, loadavg()),
                        figures, options.tricklers, options.cap, options.tricklers, options.slow_readers)
    print(text)
    if options.smoke:
        missing = [name for name, value in figures._asdict().items() if value is None]
        if missing:
            print(f"abuse_bench: smoke: no figure for {', '.join(missing)}", file=sys.stderr)
            return 1
    if options.write:
        doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "ABUSE.md")
        with open(doc, "w") as f:
            f.write(text)
        print(f"abuse_bench: wrote {os.path.normpath(doc)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
