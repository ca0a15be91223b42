"""The processes of a benchmark: servers and load tools, every one bounded in time.

A server runs under `timeout -k 5 LIFETIME`, pinned with `taskset` when given a core; it
counts as started once it listens (its "listening on 127.0.0.1:PORT" line, or a given
port that accepts connections) and its process is there. The `timeout` wrappers are our
children; the servers themselves (and nginx's workers) are remembered as pid and start
time, so that a pid the system has handed to another process since is never signalled.
A load tool runs under `timeout -k 5 SECONDS`, pinned to the load core.
"""

import grp
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

from islet_bench import ports

START_SECONDS = 15  # a server that does not listen within this is a failure
URING_UNAVAILABLE_EXIT = 77  # a uring_* server's exit when io_uring is refused (uring_base.h)
STOP_SECONDS = 10  # TERM, then KILL whatever is left after this
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class Server(NamedTuple):
    name: str
    pid: int  # the server process (nginx: its master)
    port: int
    out: str  # its stdout and stderr files
    err: str
    error_log: Optional[str] = None  # nginx's


def listening_port(text: str) -> Optional[int]:
    m = _LISTENING.search(text)
    return int(m.group(1)) if m else None


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def read_lines(*paths: str) -> List[str]:
    """The lines of log files (missing ones have none)."""
    lines: List[str] = []
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                lines += f.read().splitlines()
        except OSError:
            pass
    return lines


def read_text(*paths: str) -> str:
    """Log files on one line, for a failure message."""
    return " ".join(read_lines(*paths))


def tail(path: str) -> str:
    """The last lines of a log file on one line, for a failure message."""
    return " ".join(read_lines(path)[-3:])[-400:]


def uring_unavailable(binary: str) -> Optional[str]:
    """None if io_uring works here (`binary --probe` sets a ring up as the io_uring floor
    servers do); else why not: the server's words when the kernel or its policy refuses
    io_uring (ENOSYS, EPERM), or how the probe failed."""
    try:
        probe = subprocess.run(bounded(20, [binary, "--probe"]), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{os.path.basename(binary)} --probe: {e}"
    if probe.returncode == 0:
        return None
    words = " ".join(probe.stderr.split())[-300:]
    if probe.returncode == URING_UNAVAILABLE_EXIT:
        return words
    return f"{os.path.basename(binary)} --probe: exit {probe.returncode}: {words}"


def pinned(cpu: Optional[int], cmd: Sequence[str]) -> List[str]:
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + list(cmd)


def bounded(seconds: float, cmd: Sequence[str]) -> List[str]:
    return ["timeout", "-k", "5", "%d" % seconds] + list(cmd)


def nginx_config(directory: str, port: int, nofile: int, user: Optional[str] = None,
                 tls: Optional[Tuple[str, str]] = None) -> str:
    """nginx as the peer: one worker, no access log, "Hello world!" for every request,
    keep-alive unlimited (nginx's default of 1000 requests would add reconnects to its
    figures). `user`: "USER GROUP" when we are root; `tls`: (certificate, key), then TLS
    1.2 and 1.3 without session tickets or session cache (every handshake is full)."""
    ssl = ""
    if tls:
        ssl = (f"    ssl_certificate {tls[0]};\n"
               f"    ssl_certificate_key {tls[1]};\n"
               "    ssl_protocols TLSv1.2 TLSv1.3;\n"
               "    ssl_session_tickets off;\n"
               "    ssl_session_cache off;\n")
    return f"""# Written by tools/bench/bench.py: the nginx peer of the benchmarks.
worker_processes 1;
daemon off;
master_process on;
{f"user {user};" if user else ""}
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
worker_rlimit_nofile {nofile};
events {{
  worker_connections {nofile - 100};
}}
http {{
  access_log off;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port}{" ssl" if tls else ""};
{ssl}    location / {{
      default_type text/plain;
      return 200 "Hello world!";
    }}
  }}
}}
"""


class Processes:
    """Starts servers and loads, and stops every server it started (stop_all)."""

    def __init__(self, proc, tmp: str, load_cpu: Optional[int], fail: Callable[[str], None]):
        self.proc = proc
        self.tmp = tmp
        self.load_cpu = load_cpu
        self.fail = fail
        # The `timeout` wrappers, each with its server's (pid, start time) once known.
        self.wrappers: List[Tuple[subprocess.Popen, Optional[Tuple[int, int]]]] = []
        self.remembered: List[Tuple[int, int]] = []  # (pid, start time) of every server process
        self.loads: List[subprocess.Popen] = []  # background loads
        self.started = 0

    def start(self, name: str, cpu: Optional[int], lifetime: float, cmd: Sequence[str],
              port: Optional[int] = None, wait_for_child: bool = False) -> Optional[Server]:
        """Starts a server; None (and a failure) if it does not come up. Without `port`,
        the server picks one and prints it. `wait_for_child`: up only once the server has
        a child process too (nginx's worker)."""
        self.started += 1
        base = re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)  # a name may carry flags
        out = os.path.join(self.tmp, f"{base}.{self.started}.out")
        err = os.path.join(self.tmp, f"{base}.{self.started}.err")
        with open(out, "w") as o, open(err, "w") as e:
            wrapper = subprocess.Popen(bounded(lifetime, pinned(cpu, cmd)), stdin=subprocess.DEVNULL,
                                       stdout=o, stderr=e)
        self.wrappers.append((wrapper, None))
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if wrapper.poll() is not None:
                self.fail(f"{name} did not start: {tail(err)}")
                return None
            if port is None:
                with open(out, errors="replace") as f:
                    found = listening_port(f.read())
            else:
                found = port if accepts_connections(port) else None
            children = self.proc.children(wrapper.pid) if found else []
            if children and (not wait_for_child or self.proc.children(children[0])):
                pid = children[0]
                processes = [(p, self.proc.start_time(p)) for p in self.proc.tree(pid)]
                self.remembered += [p for p in processes if p[1] is not None]
                self.wrappers[-1] = (wrapper, processes[0])
                return Server(name, pid, found, out, err)
            time.sleep(0.1)
        self.fail(f"{name} did not listen within {START_SECONDS} s: {tail(err)}")
        return None

    def start_nginx(self, name: str, cpu: Optional[int], lifetime: float, nginx: str, nofile: int,
                    tls: Optional[Tuple[str, str]] = None) -> Optional[Server]:
        """nginx on a free port, with its config and files in a directory of its own;
        Server.pid is its master, which has its worker as child."""
        directory = os.path.join(self.tmp, f"{name}.{self.started + 1}")
        os.makedirs(directory, exist_ok=True)
        port = ports.free_port()
        if port is None:
            self.fail(f"{name}: no free port")
            return None
        user = None
        if os.getuid() == 0:
            user = f"{pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}"
        config = os.path.join(directory, "nginx.conf")
        error_log = os.path.join(directory, "error.log")
        with open(config, "w") as f:
            f.write(nginx_config(directory, port, nofile, user, tls))
        server = self.start(name, cpu, lifetime, [nginx, "-p", directory, "-c", config, "-e", error_log],
                            port=port, wait_for_child=True)
        return server._replace(error_log=error_log) if server else None

    def _same(self, process: Tuple[int, int]) -> bool:
        return self.proc.alive(process[0]) and self.proc.start_time(process[0]) == process[1]

    def stop_all(self) -> None:
        """One TERM to each server (the top process: nginx's master takes its workers
        along; a wrapper whose server never came up passes it on); KILL to whatever is
        left after STOP_SECONDS. One signal only: a second one stops the harness at once.
        Background loads still running are ended first."""
        for load in self.loads:
            end(load)
        self.loads = []
        for wrapper, top in self.wrappers:
            if wrapper.poll() is None:
                if top and self._same(top):
                    os.kill(top[0], signal.SIGTERM)
                else:
                    wrapper.terminate()
        wait_until(lambda: all(w.poll() is not None for w, _ in self.wrappers)
                   and not any(self._same(p) for p in self.remembered), STOP_SECONDS)
        for process in self.remembered:
            if self._same(process):
                os.kill(process[0], signal.SIGKILL)
        for wrapper, _ in self.wrappers:
            if wrapper.poll() is None:
                wrapper.kill()
            wrapper.wait()
        self.wrappers = []
        self.remembered = []

    def load_command(self, seconds: float, cmd: Sequence[str]) -> List[str]:
        return pinned(self.load_cpu, bounded(seconds, cmd))

    def run_load(self, seconds: float, cmd: Sequence[str],
                 stderr_apart: bool = False) -> subprocess.CompletedProcess:
        """Runs a load tool to its end: its output text (stderr merged into stdout unless
        `stderr_apart`) and exit status."""
        return subprocess.run(self.load_command(seconds, cmd), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE if stderr_apart else subprocess.STDOUT,
                              text=True, errors="replace")

    def start_load(self, seconds: float, cmd: Sequence[str], out: str, err: str) -> subprocess.Popen:
        """Starts a load tool in the background (the caller waits for it, or ends it)."""
        with open(out, "w") as o, open(err, "w") as e:
            load = subprocess.Popen(self.load_command(seconds, cmd), stdin=subprocess.DEVNULL,
                                    stdout=o, stderr=e)
        self.loads.append(load)
        return load


def end(load: subprocess.Popen) -> None:
    """Ends a background load (TERM; `timeout` passes it on) and waits for it."""
    if load.poll() is None:
        load.terminate()
    try:
        load.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        load.kill()
        load.wait()


def wait_until(condition: Callable[[], bool], seconds: float,
               still: Callable[[], bool] = lambda: True) -> bool:
    """Polls `condition` every 0.1 s for up to `seconds`, while `still` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        if not still():
            return False
        time.sleep(0.1)
    return False

