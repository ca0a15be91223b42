"""A quiet machine: one threshold, one definition.

Other processes (a build, another benchmark) steal CPU from the figures. "Foreign CPU" is
the CPU the whole machine spent on anything but the server under test and the load tool,
in % of all cores: before a case, with nothing of ours running, it is simply how busy the
machine is (2 s samples of /proc/stat); during a run it is the machine's busy ticks minus
the server's and the load tool's (see window.py). The machine is quiet while foreign CPU
is under QUIET_PERCENT. Before each case the benchmarks wait (up to --quiet_wait seconds)
for a quiet machine, and a run during which the machine was not quiet is done again,
twice at most.
"""

import time
from typing import Callable, Optional, Tuple, TypeVar

QUIET_PERCENT = 10
SAMPLE_SECONDS = 2  # one sample of how busy the machine is
PAUSE_SECONDS = 3  # between samples while waiting
TRIES = 3  # a run and at most two repeats


def is_quiet(foreign_percent: float) -> bool:
    return foreign_percent < QUIET_PERCENT


def busy_percent(before: Tuple[int, int], after: Tuple[int, int]) -> int:
    """% of all cores busy between two (busy, idle) readings of /proc/stat."""
    busy = after[0] - before[0]
    idle = after[1] - before[1]
    return round(100 * busy / (busy + idle)) if busy + idle > 0 else 0


def foreign_percent(machine_busy: float, ours: float, hz: int, seconds: float, cores: int) -> float:
    """The machine's busy ticks not spent by us, in % of all cores (never below 0)."""
    return max(0.0, (machine_busy - ours) / hz / seconds / cores * 100)


def sample_busy_percent(proc, sleep: Callable[[float], None] = time.sleep) -> int:
    """How busy the machine is over SAMPLE_SECONDS (nothing of ours should be running)."""
    before = proc.machine_ticks()
    sleep(SAMPLE_SECONDS)
    return busy_percent(before, proc.machine_ticks())


class QuietWaiter:
    """Waits for a quiet machine, up to `max_wait` seconds (0: never waits).

    `busiest` is the busiest sample it went ahead with after waiting in vain, `noisy`
    whether any figure was taken on a machine that was not quiet (a wait in vain, or a run
    kept after its repeats).
    """

    def __init__(self, max_wait: int, sample: Callable[[], int], log: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep):
        self.max_wait = max_wait
        self.sample = sample
        self.log = log
        self.sleep = sleep
        self.busiest: Optional[int] = None
        self.noisy = False

    def wait(self) -> None:
        if self.max_wait <= 0:
            return
        waited = 0
        while True:
            busy = self.sample()
            if is_quiet(busy):
                return
            if waited >= self.max_wait:
                self.log(f"WARNING: still {busy}% busy without us after {waited} s: going ahead")
                self.busiest = busy if self.busiest is None else max(self.busiest, busy)
                self.noisy = True
                return
            if waited == 0:
                self.log(f"the machine is {busy}% busy without us: waiting (up to {self.max_wait} s)")
            self.sleep(PAUSE_SECONDS)
            waited += SAMPLE_SECONDS + PAUSE_SECONDS


Result = TypeVar("Result")


def until_quiet(run: Callable[[], Optional[Result]], foreign: Callable[[Result], float],
                waiter: QuietWaiter, log: Callable[[str], None], repeat: bool = True
                ) -> Optional[Result]:
    """Runs `run` (None: it failed) and, when `repeat`, again after waiting for quiet
    while the machine was not quiet during it, TRIES times in all; keeps the last."""
    for attempt in range(1, TRIES + 1):
        result = run()
        if result is None or not repeat or is_quiet(foreign(result)):
            return result
        if attempt < TRIES:
            log(f"other processes took {foreign(result):.0f}% of the machine during that run: again")
            waiter.wait()
        else:
            log(f"note: other processes took {foreign(result):.0f}% of the machine during that run; keeping it")
            waiter.noisy = True
    return result
