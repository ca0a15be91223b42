"""The chart of docs/BENCHMARKS.md: server CPU per operation in each throughput case, one
group of bars per case and one bar per server (the median, min–max as whiskers), drawn
as an SVG by gnuplot (Debian's gnuplot-nox).

bench.py redraws it whenever it rewrites the tables, from the same rows. To redraw it
from the tables already in docs/BENCHMARKS.md, without measuring anything:

    cd tools/bench && /usr/bin/python3 -B -m islet_bench.chart
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence

from islet_bench import report
from islet_bench.stats import Spread, spread

CHART = "benchmarks_cpu.svg"  # beside docs/BENCHMARKS.md, which embeds it
GNUPLOT_TIMEOUT_SECONDS = 60
MISSING_GNUPLOT = ("gnuplot is not installed: it draws the chart "
                   "(apt-get install gnuplot-nox; tools/setup.sh does)")


class Series(NamedTuple):
    """A bar in each case and an entry in the legend: the servers that play one part
    (its HTTP server and its echo server)."""

    title: str
    servers: Sequence[str]
    color: str


SERIES = [
    Series("Islet harness", ("islet_http", "islet_echo"), "#1f6fb4"),
    Series("Islet harness on io_uring", ("islet_uring_http", "islet_uring_echo"), "#7b3294"),
    Series("bare epoll loop", ("epoll_http", "epoll_echo"), "#9a9a9a"),
    Series("bare io_uring loop", ("uring_http", "uring_echo"), "#5aae61"),
    Series("nginx", ("nginx",), "#e08214"),
]


class Bar(NamedTuple):
    case: str
    server: str
    cpu: Spread  # µs per operation: median, min, max


class ChartError(Exception):
    """Why no chart was drawn, in one line."""


def bars_from_rows(rows: Sequence[report.Row]) -> List[Bar]:
    """The throughput rows as the table shows them: one bar per case and server."""
    keys = dict.fromkeys((r.case, r.server) for r in rows)
    return [Bar(case, server, spread([r.cpu_us for r in rows if (r.case, r.server) == (case, server)]))
            for case, server in keys]


_CELL = re.compile(r"^\| ([^|]+) \| ([^|]+) \| \*\*([\d.]+)\*\* \(([\d.]+)–([\d.]+)\) \|")


def bars_from_doc(doc: str) -> List[Bar]:
    """The bars of the throughput table that report.throughput_table wrote into `doc`."""
    servers = {shown: server for server, shown in report.LABELS.items()}
    bars: List[Bar] = []
    inside = False
    for line in doc.splitlines():
        if line.startswith("### ") or line == report.END:
            inside = line.startswith("### Throughput cases")
        match = _CELL.match(line) if inside else None
        if match:
            case, shown, *cpu = match.groups()
            bars.append(Bar(case, servers.get(shown, shown), Spread(*map(float, cpu))))
    return bars


def charted(bars: Sequence[Bar]) -> List[Bar]:
    """The bars the chart compares: the servers of SERIES, in cases with a peer of the
    harness (not the metrics-sink cases, where it is measured against itself)."""
    known = {s for series in SERIES for s in series.servers}
    harness = SERIES[0].servers
    peered = {b.case for b in bars if b.server in known and b.server not in harness}
    return [b for b in bars if b.server in known and b.case in peered]


def _quoted(text: str) -> str:
    """A gnuplot double-quoted string; "\\n" in `text` stays a line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _series_of(server: str) -> Series:
    return next(s for s in SERIES if server in s.servers)


class _Layout(NamedTuple):
    cases: List[str]  # case i is centred on x = i
    series: List[Series]  # those with a bar, in SERIES order
    width: float  # of every bar, in units of x
    x: Dict[Bar, float]  # the centre of each bar


def _layout(bars: Sequence[Bar]) -> _Layout:
    """Each case's bars side by side in series order, centred on the case."""
    cases = list(dict.fromkeys(b.case for b in bars))
    series = [s for s in SERIES if any(_series_of(b.server) is s for b in bars)]
    width = 0.8 / max(len(series), 1)
    x = {}
    for i, case in enumerate(cases):
        in_case = sorted((b for b in bars if b.case == case), key=lambda b: series.index(_series_of(b.server)))
        for k, b in enumerate(in_case):
            x[b] = i + (k - (len(in_case) - 1) / 2) * width
    return _Layout(cases, series, width, x)


def data(bars: Sequence[Bar]) -> str:
    """gnuplot's data for the charted bars: one block per series (in SERIES order, only
    those with a bar), blocks apart by two blank lines; a line per bar: its x, then
    median, min and max as the table prints them."""
    bars = charted(bars)
    layout = _layout(bars)
    blocks = []
    for series in layout.series:
        lines = [f"# {series.title}"]
        lines += ["%.4f %.2f %.2f %.2f" % (layout.x[b], *b.cpu) for b in bars if _series_of(b.server) is series]
        blocks.append("\n".join(lines))
    return "\n\n\n".join(blocks) + "\n"


def script(bars: Sequence[Bar], svg_path: str) -> str:
    """The gnuplot script that draws `bars` into `svg_path`, its data inline; ChartError
    when none is charted."""
    bars = charted(bars)
    if not bars:
        raise ChartError("no throughput case with a peer of the harness to chart")
    layout = _layout(bars)
    top = max(b.cpu.high for b in bars) * 1.12  # room for the figures above the whiskers
    # Each case's name on lines of its own ("HTTP hello", "wrk -c 50", "pipelined x16").
    names = [case.replace(", ", "\n") for case in layout.cases]
    tics = ", ".join(f"{_quoted(name)} {i}" for i, name in enumerate(names))
    plots = []
    for i, series in enumerate(layout.series):
        plots += [
            f"$cpu index {i} using 1:2 with boxes lc rgb \"{series.color}\" title {_quoted(series.title)}",
            # Whiskers as vectors with flat heads: the errorbar styles blank a circle
            # around the median.
            f"$cpu index {i} using 1:3:(0):($4-$3) with vectors heads size screen 0.008,90 fixed "
            "lc rgb \"#333333\" notitle",
            f"$cpu index {i} using 1:4:(sprintf(\"%.2f\", $2)) with labels offset 0,0.7 font \",12\" notitle",
        ]
    # 1200 wide: five bars a case, each figure above its bar clear of its neighbours'.
    return "\n".join([
        f"set terminal svg size 1200,600 noenhanced font \"sans-serif,15\" background rgb \"white\"",
        f"set output {_quoted(svg_path)}",
        "set encoding utf8",
        "$cpu << EOD",
        data(bars).rstrip("\n"),
        "EOD",
        "set title " + _quoted("Server CPU per request (HTTP) or message (echo), 1 worker: lower is better\n"
                               "median of the runs; whiskers: min–max") + " font \",17\"",
        "set ylabel \"server CPU µs per operation\"",
        f"set xrange [-0.6:{len(layout.cases) - 0.4}]",
        f"set yrange [0:{top:.3f}]",
        f"set xtics ({tics}) nomirror scale 0",
        "set ytics nomirror",
        "set grid ytics lc rgb \"#dddddd\"",
        "set border 3",
        f"set boxwidth {layout.width:.4f} absolute",
        "set style fill solid 0.9 border rgb \"#ffffff\"",
        "set key outside bottom center horizontal reverse Left samplen 2 width -3 noautotitle",
        "set bmargin 6",
        "plot " + ", \\\n     ".join(plots),
        "",
    ])


def draw(bars: Sequence[Bar], svg_path: str, gnuplot: Optional[str] = None) -> None:
    """Draws the chart of `bars` into `svg_path` (replaced only when gnuplot succeeds);
    ChartError when there is nothing to chart, gnuplot is missing or it fails."""
    gnuplot = gnuplot or shutil.which("gnuplot")
    if not gnuplot:
        raise ChartError(MISSING_GNUPLOT)
    partial = svg_path + ".partial"
    try:
        done = subprocess.run([gnuplot], input=script(bars, partial), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace",
                              timeout=GNUPLOT_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise ChartError(f"gnuplot took over {GNUPLOT_TIMEOUT_SECONDS} s") from None
    except OSError as e:
        raise ChartError(f"gnuplot: {e}") from None
    if done.returncode != 0 or done.stdout.strip() or not os.path.exists(partial):
        if os.path.exists(partial):
            os.remove(partial)
        raise ChartError(f"gnuplot: exit {done.returncode}: {' '.join(done.stdout.split())[-400:]}")
    os.replace(partial, svg_path)


def main(argv: Sequence[str]) -> int:
    docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs")
    parser = argparse.ArgumentParser(prog="islet_bench.chart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from_doc", default=os.path.join(docs, "BENCHMARKS.md"), metavar="PATH",
                        help="the document whose throughput table to chart (docs/BENCHMARKS.md)")
    parser.add_argument("--out", default=os.path.join(docs, CHART), metavar="PATH",
                        help=f"the SVG to write (docs/{CHART})")
    options = parser.parse_args(argv)
    with open(options.from_doc, encoding="utf-8") as f:
        bars = bars_from_doc(f.read())
    try:
        draw(bars, options.out)
    except ChartError as e:
        print(f"chart: {e}", file=sys.stderr)
        return 1
    print(f"chart: {len(charted(bars))} bars into {os.path.normpath(options.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
