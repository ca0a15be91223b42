"""What the benchmarks read from /proc: CPU ticks, memory, threads, descriptors, parents.

Every figure comes from the kernel's own accounting: utime+stime of a process (all of its
threads) from /proc/PID/stat, the machine's busy and idle ticks from /proc/stat. The
parsers take text, so the tests feed them fixtures; `Proc` reads the files, under a root
the tests can point at a directory of their own.
"""

import os
from typing import Iterable, List, NamedTuple, Optional, Tuple


class Stat(NamedTuple):
    """The fields of /proc/PID/stat the benchmarks use (ticks are clock ticks)."""

    state: str
    ppid: int
    utime: int
    stime: int
    start_time: int


def parse_stat(text: str) -> Stat:
    # The command name is in parentheses and may itself hold spaces and parentheses:
    # the fields start after the last ")". There, the state is field 0, so the parent is
    # 1, utime and stime 11 and 12, and the start time 19 (proc(5) numbers them +3).
    fields = text[text.rindex(")") + 2 :].split()
    return Stat(fields[0], int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19]))


def parse_status_field(text: str, name: str) -> int:
    """A number from /proc/PID/status ("VmRSS" in kB, "Threads"); 0 when absent."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return 0


def parse_machine_ticks(text: str, cpu: str = "cpu") -> Tuple[int, int]:
    """(busy, idle) ticks of one line of /proc/stat: "cpu" is all cores together.

    Busy is user + nice + system + irq + softirq + steal (guest time is inside user and
    nice already); idle is idle + iowait.
    """
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == cpu:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
            return user + nice + system + irq + softirq + steal, idle + iowait
    raise ValueError(f"no {cpu} line in /proc/stat")


def parse_cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "?"


def parse_mem_total_kb(meminfo: str) -> int:
    return parse_status_field(meminfo, "MemTotal")


class Proc:
    """Reads /proc (or a fixture directory laid out like it). A process that has gone
    away counts as nothing: its ticks, memory and descriptors are 0 and it has no
    children."""

    def __init__(self, root: str = "/proc"):
        self.root = root

    def _read(self, *path: str) -> Optional[str]:
        try:
            with open(os.path.join(self.root, *path)) as f:
                return f.read()
        except OSError:
            return None

    def stat(self, pid: int) -> Optional[Stat]:
        text = self._read(str(pid), "stat")
        return parse_stat(text) if text else None

    def alive(self, pid: int) -> bool:
        """Running: there, and not a zombie waiting for its parent."""
        stat = self.stat(pid)
        return stat is not None and stat.state != "Z"

    def start_time(self, pid: int) -> Optional[int]:
        stat = self.stat(pid)
        return stat.start_time if stat else None

    def cpu_ticks(self, pids: Iterable[int]) -> int:
        """utime+stime of the processes (every thread of each), in clock ticks."""
        total = 0
        for pid in pids:
            stat = self.stat(pid)
            if stat:
                total += stat.utime + stat.stime
        return total

    def children(self, pid: int) -> List[int]:
        found = []
        for name in os.listdir(self.root):
            if name.isdigit():
                stat = self.stat(int(name))
                if stat and stat.ppid == pid:
                    found.append(int(name))
        return sorted(found)

    def tree(self, pid: int) -> List[int]:
        """The process and its children (nginx: the master and its workers)."""
        return [pid] + self.children(pid)

    def status_sum(self, name: str, pids: Iterable[int]) -> int:
        total = 0
        for pid in pids:
            text = self._read(str(pid), "status")
            if text:
                total += parse_status_field(text, name)
        return total

    def fd_count(self, pids: Iterable[int]) -> int:
        total = 0
        for pid in pids:
            try:
                total += len(os.listdir(os.path.join(self.root, str(pid), "fd")))
            except OSError:
                pass
        return total

    def machine_ticks(self) -> Tuple[int, int]:
        """(busy, idle) ticks of all cores together since boot."""
        return parse_machine_ticks(self._read("stat") or "")

    def cpu_model(self) -> str:
        return parse_cpu_model(self._read("cpuinfo") or "")

    def mem_total_kb(self) -> int:
        return parse_mem_total_kb(self._read("meminfo") or "")
