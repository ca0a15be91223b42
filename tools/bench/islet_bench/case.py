"""What the cases measured in alternating runs share (TLS, proxy, restart): failing the
case, a run repeated while the machine was not quiet, and collecting a run's figures."""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from islet_bench import quiet


class AlternatingCase:
    """`name` prefixes the case's failures and log lines ("TLS", "proxy", ...)."""

    def __init__(self, ctx, name: str, runs: int):
        self.ctx = ctx
        self.name = name
        self.runs = runs
        self.failed = False

    def fail(self, message: str) -> None:
        self.failed = True
        self.ctx.fail(f"{self.name}: {message}")

    def attempt(self, run: Callable, label: str, server) -> Optional[Tuple[float, ...]]:
        """run(label, server), repeated while the machine was not quiet (quiet.until_quiet);
        a run's last figure is the foreign CPU it saw. None when there is no server."""
        if server is None:
            self.failed = True
            return None
        ctx = self.ctx
        return quiet.until_quiet(lambda: run(label, server), lambda r: r[-1], ctx.waiter,
                                 lambda m: ctx.log(f"{self.name} {label}: {m}"), repeat=not ctx.smoke)

    def take(self, figures: Dict[str, List[float]], names: Sequence[str], result) -> None:
        """Adds a run's figures under `names` (in order), or marks the case failed."""
        if result is None:
            self.failed = True
            return
        for name, value in zip(names, result):
            figures[name].append(value)
