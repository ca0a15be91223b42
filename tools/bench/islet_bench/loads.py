"""What the load tools print, parsed: wrk, h2load and the key=value lines of the tools in
tools/bench (echo_load, pipelined_load, tls_handshake_load, idle_conns, tls_idle_conns)."""

import re
from typing import NamedTuple, Optional


def number(text: str, key: str) -> Optional[float]:
    """The number after the first "KEY=" in a key=value line ("rate=2513/s": 2513)."""
    m = re.search(r"\b%s=([0-9.]+)" % re.escape(key), text)
    return float(m.group(1)) if m else None


def word(text: str, key: str) -> Optional[str]:
    """The word after the first "KEY=" ("p99=1.5ms": "1.5ms")."""
    m = re.search(r"\b%s=(\S+)" % re.escape(key), text)
    return m.group(1) if m else None


_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def to_us(duration: Optional[str]) -> Optional[float]:
    """"16.32ms", "214.00us", "1.2s", "850ns" (wrk's and absl's forms) in microseconds,
    to 0.1 µs; None for None, "-" or text that is no duration."""
    if duration is None or duration == "-":
        return None
    m = re.match(r"([0-9.]+)(.*)$", duration)
    if not m:
        return None
    return round(float(m.group(1)) * _TO_US.get(m.group(2), 1.0), 1)


class Wrk(NamedTuple):
    requests: Optional[int]
    rate: Optional[float]
    p99: Optional[str]  # as wrk prints it ("380.00us")
    errors: int  # socket errors and non-2xx/3xx responses


def parse_wrk(text: str) -> Wrk:
    requests = re.search(r"^\s*(\d+) requests in", text, re.M)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p99 = re.search(r"^ +99%\s+(\S+)", text, re.M)
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return Wrk(int(requests.group(1)) if requests else None,
               float(rate.group(1)) if rate else None,
               p99.group(1) if p99 else None, errors)


class H2load(NamedTuple):
    succeeded: Optional[int]
    rate: Optional[float]
    all_2xx: bool  # every one of `expected` requests answered with a 2xx


def parse_h2load(text: str, expected: int) -> H2load:
    succeeded = re.search(r"(\d+) succeeded", text)
    rate = re.search(r"finished in [^,]*, ([0-9.]+) req/s", text)
    return H2load(int(succeeded.group(1)) if succeeded else None,
                  float(rate.group(1)) if rate else None,
                  re.search(r"status codes: %d 2xx" % expected, text) is not None)


class Count(NamedTuple):
    """What a throughput load completed (None: not in its output)."""

    ops: Optional[float]
    rate: Optional[float]  # per second
    p99: Optional[str]  # as the tool prints it; None where there is no figure
    errors: int


def count(tool: str, text: str, depth: int) -> Count:
    """The figures of a throughput load's output. `tool`: wrk (or wrk_close: wrk sending
    Connection: close), echo (echo_load), or pipelined_http / pipelined_echo
    (pipelined_load, which gives no latency)."""
    if tool in ("wrk", "wrk_close"):
        wrk = parse_wrk(text)
        # wrk corrects its histogram for coordinated omission assuming one request per
        # round trip: under pipelining that correction makes its percentiles meaningless.
        return Count(wrk.requests, wrk.rate, wrk.p99 if depth == 1 else None, wrk.errors)
    if tool.startswith("pipelined_"):
        return Count(number(text, "requests"), number(text, "rate"), None, int(number(text, "errors") or 0))
    return Count(number(text, "messages"), number(text, "rate"), word(text, "p99"),
                 int(number(text, "errors") or 0))
