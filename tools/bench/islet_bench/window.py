"""One measured run: the CPU the server, the load tool and everything else spent in it.

The server's CPU is utime+stime of its processes (/proc/PID/stat). The load tool's is that
of this program's children reaped during the window (getrusage(RUSAGE_CHILDREN)): the
load runs as a child and is waited for inside the window, while the servers, also our
children, are reaped only when stopped. Whatever else the machine was busy with is
foreign CPU (quiet.py).
"""

import resource
import time
from typing import Callable, Sequence

from islet_bench import quiet


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """`with CpuWindow(proc, server_pids, hz, cores) as w: run the load`; then w's fields."""

    def __init__(self, proc, server_pids: Sequence[int], hz: int, cores: int,
                 clock: Callable[[], float] = time.monotonic,
                 children_seconds: Callable[[], float] = children_cpu_seconds):
        self.proc = proc
        self.pids = list(server_pids)
        self.hz = hz
        self.cores = cores
        self.clock = clock
        self.children_seconds = children_seconds
        self.server_ticks = 0
        self.load_ticks = 0.0
        self.machine_busy_ticks = 0
        self.seconds = 0.0

    def __enter__(self) -> "CpuWindow":
        self._server = self.proc.cpu_ticks(self.pids)
        self._machine = self.proc.machine_ticks()[0]
        self._load = self.children_seconds()
        self._start = self.clock()
        return self

    def __exit__(self, *exc) -> None:
        self.server_ticks = self.proc.cpu_ticks(self.pids) - self._server
        self.seconds = max(self.clock() - self._start, 1e-9)
        self.load_ticks = (self.children_seconds() - self._load) * self.hz
        self.machine_busy_ticks = self.proc.machine_ticks()[0] - self._machine

    def server_percent(self) -> float:
        """The server's CPU use, in % of one core."""
        return self.server_ticks / self.hz / self.seconds * 100

    def load_percent(self) -> float:
        """The load tool's CPU use, in % of one core."""
        return self.load_ticks / self.hz / self.seconds * 100

    def foreign_percent(self) -> float:
        """CPU of everything but the server and the load tool, in % of all cores."""
        return quiet.foreign_percent(self.machine_busy_ticks, self.server_ticks + self.load_ticks,
                                     self.hz, self.seconds, self.cores)
