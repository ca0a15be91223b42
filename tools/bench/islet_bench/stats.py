"""The statistics of the benchmark tables: medians with min and max, CPU per operation,
ratios, and numbers printed the way the tables print them."""

from typing import NamedTuple, Optional, Sequence


class Spread(NamedTuple):
    median: float
    low: float
    high: float


def median(values: Sequence[float]) -> Optional[float]:
    """The middle value; the mean of the two middle ones for an even count; None if empty."""
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def lower_median(values: Sequence[float]) -> Optional[float]:
    """The middle value, the lower of the two for an even count (a value that occurred)."""
    v = sorted(values)
    return v[(len(v) - 1) // 2] if v else None


def spread(values: Sequence[Optional[float]]) -> Optional[Spread]:
    """Median, min and max of the values that are there (None: no figure); None if none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(median(present), min(present), max(present))


def per_op_us(ticks: float, hz: int, ops: float) -> float:
    """CPU microseconds per operation from clock ticks."""
    return ticks / hz * 1e6 / ops


def percent(ticks: float, hz: int, seconds: float, cores: int = 1) -> float:
    """CPU ticks over a wall-clock time, in % of `cores` cores."""
    return ticks / hz / seconds / cores * 100


def plain(x: float) -> str:
    """A number as awk prints one: integral values whole, others to 6 significant digits
    (the handshake latency cells)."""
    return str(int(x)) if x == int(x) else "%.6g" % x


def short(x: float) -> str:
    """Two decimals below 100, none from 100 on (the TLS table's cells)."""
    return "%.0f" % x if x >= 100 else "%.2f" % x


def summary(values: Sequence[float]) -> str:
    """The TLS table's "median [min-max]" (a single value alone; "n/a" without any)."""
    present = [v for v in values if v is not None]
    s = spread(present)
    if s is None:
        return "n/a"
    if len(present) == 1:
        return short(s.median)
    return f"{short(s.median)} [{short(s.low)}-{short(s.high)}]"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b <= 0:
        return "n/a"
    return "%.2fx" % (a / b)


def verdict(value: Optional[float], op: str, limit: float) -> str:
    """"met" or "MISSED" against a target (op is "<=" or ">="); "n/a" without a value."""
    if value is None:
        return "n/a"
    return "met" if (value <= limit if op == "<=" else value >= limit) else "MISSED"
