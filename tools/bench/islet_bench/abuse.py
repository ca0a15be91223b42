"""The abuse benchmark's pieces that need no server: the flood client's lines, latency
percentiles, and the report (docs/ABUSE.md). The runner is tools/bench/abuse_bench.py."""

from typing import Dict, List, NamedTuple, Optional, Sequence


def parse_flood_line(line: str) -> Optional[Dict[str, str]]:
    """One "flood: WHAT key=value ..." line as {"what": WHAT, key: value}; None otherwise."""
    if not line.startswith("flood: "):
        return None
    words = line[len("flood: "):].split()
    if not words:
        return None
    fields = {"what": words[0]}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq:
            fields[key] = value
    return fields


def flood_lines(text: str, what: str) -> List[Dict[str, str]]:
    """The flood lines of kind `what` in `text`, in order."""
    found = []
    for line in text.splitlines():
        fields = parse_flood_line(line)
        if fields is not None and fields["what"] == what:
            found.append(fields)
    return found


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """The nearest-rank percentile (p in 0..100) of `values`; None if empty."""
    v = sorted(values)
    if not v:
        return None
    rank = max(1, -(-len(v) * p // 100))  # ceil(n * p / 100), at least 1
    return v[int(rank) - 1]


def ms(seconds: Optional[float]) -> str:
    """Seconds as milliseconds for the table: 0.0421 -> "0.042 ms"; None -> "–"."""
    if seconds is None:
        return "–"
    value = seconds * 1000
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 1:
        return f"{value:.1f} ms"
    return f"{value:.3f} ms"


def mib(kb: Optional[int]) -> str:
    return "–" if kb is None else f"{kb / 1024:.0f} MiB"


class Latency(NamedTuple):
    """A good client's requests: how many were asked, answered, and how long they took."""

    asked: int
    answered: int
    seconds: List[float]  # one per answered request

    def p(self, q: float) -> Optional[float]:
        return percentile(self.seconds, q)


def latency_cell(lat: Latency) -> str:
    if lat.answered == 0:
        return f"none of {lat.asked} answered"
    served = "" if lat.answered == lat.asked else f"{lat.answered} of {lat.asked} answered; "
    return f"{served}p50 {ms(lat.p(50))}, p99 {ms(lat.p(99))} ({lat.answered} requests)"


class Figures(NamedTuple):
    """Every figure of the report; None where a case did not run or failed."""

    quiet_keepalive: Optional[Latency]
    quiet_new: Optional[Latency]
    trickle_keepalive: Optional[Latency]
    trickle_new: Optional[Latency]
    trickle_connected: Optional[int]
    capped_new: Optional[Latency]
    capped_held: Optional[int]
    slow_budget_kb: int
    slow_peak_kb: Optional[int]  # growth over the baseline
    slow_default_peak_kb: Optional[int]
    slow_shed: Optional[int]
    messenger_budget_kb: int
    messenger_peak_kb: Optional[int]
    messenger_readers: int
    stop_seconds: Optional[float]  # from SIGTERM to the exit, with --shutdown_timeout=1s
    reset_count: int
    reset_lines: Optional[int]
    reset_seconds: Optional[float]


def report(when: str, command: str, machine: Sequence[str], f: Figures, trickle_n: int,
           cap: int, capped_n: int, slow_n: int) -> str:
    """docs/ABUSE.md."""
    def lat(x: Optional[Latency]) -> str:
        return "not measured" if x is None else latency_cell(x)

    def opt(x, fmt) -> str:
        return "not measured" if x is None else fmt(x)

    rows = [
        ("Good client, keep-alive, no flood", lat(f.quiet_keepalive)),
        ("Good client, new connection per request, no flood", lat(f.quiet_new)),
        (f"Good client, keep-alive, {trickle_n:,} connections trickling 1 byte/s "
         f"({opt(f.trickle_connected, lambda n: f'{n:,}')} connected)", lat(f.trickle_keepalive)),
        (f"Good client, new connection per request, {trickle_n:,} trickling",
         lat(f.trickle_new)),
        (f"Good client, new connection per request, --max_connections={cap:,}, {capped_n:,} "
         f"reconnecting tricklers, 60 s timeouts ({opt(f.capped_held, lambda n: f'{n:,}')} held)",
         lat(f.capped_new)),
        (f"Peak RSS over baseline, {slow_n:,} connections that never read (echo), "
         f"--output_budget={mib(f.slow_budget_kb)}",
         opt(f.slow_peak_kb, lambda kb: f"{mib(kb)} (budget {mib(f.slow_budget_kb)}; "
                                        f"{opt(f.slow_shed, str)} connections shed)")),
        (f"The same, default budget (a quarter of memory)", opt(f.slow_default_peak_kb, mib)),
        (f"Peak RSS over baseline, messenger: one sender floods {f.messenger_readers} members "
         f"that never read, --output_budget={mib(f.messenger_budget_kb)}",
         opt(f.messenger_peak_kb, mib)),
        ("Stop's overshoot: SIGTERM with --shutdown_timeout=1s one second into that messenger "
         "flood, from the signal to the exit, minus 1 s",
         opt(f.stop_seconds, lambda s: f"{ms(max(0.0, s - 1.0))} (exited {ms(s)} after the signal)")),
        (f"Lines the harness logs (--log=info) during {f.reset_count:,} connections reset "
         "(connect, send, RST)",
         opt(f.reset_lines, lambda n: f"{n} lines"
             + ("" if f.reset_seconds is None else f" (storm took {f.reset_seconds:.1f} s)"))),
    ]
    lines = [
        "# Abuse figures",
        "",
        "Islet's harness under hostile clients (issue 12): what a good client sees during",
        "floods, memory under slow readers, Stop under a deep queue, and logging under a reset",
        "storm. Figures, not assertions: the tests in `tools/abuse/` assert the behaviour.",
        f"Written by `{command}` ({when}). Every flood is `//tools/abuse:flood_client` in a",
        "process of its own, on 127.0.0.1; the good client is Python (its own overhead is in",
        "its latencies).",
        "",
        *machine,
        "",
        "| case | figure |",
        "| --- | --- |",
        *[f"| {case} | {figure} |" for case, figure in rows],
        "",
        "Notes:",
        "",
        "- The capped case is what the server's scaled timeouts under pressure",
        "  (`overload_scale_from`, `overload_timeout_floor`) are for: without them the good",
        "  client waits in the listen backlog behind connections held for 60 s, and gets no",
        "  answer within its 30 s (it gives up after two such requests).",
        "- Peak memory is the harness's VmHWM minus its VmRSS before the flood. Past the",
        "  budget a connection stops reading, but what it read last is still answered: up to",
        "  one 64 KiB read per connection more. Messenger lines posted to a member and not yet",
        "  handled wait as tasks on its worker's loop (at most `max_pending_messages` per",
        "  member), outside the output budget.",
        "",
    ]
    return "\n".join(lines)
