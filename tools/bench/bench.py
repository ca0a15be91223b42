#!/usr/bin/python3 -B
"""Islet's benchmarks: runs the cases, prints the tables, writes them into the docs.

tools/bench/run.sh and tools/bench/tls_bench.sh build the binaries and call this program;
it builds nothing. The cases (islet_bench/suite.py and tls.py): HTTP hello and echo
throughput of the harness on its epoll loop and on its io_uring loop (--event_loop)
against minimal epoll and io_uring servers and nginx, idle-connection footprint, 1
against 2 workers, the metrics sink's overhead, and TLS against nginx. Every server runs
on 127.0.0.1 pinned to core 0, the load generator on core 1; every process started here
runs under `timeout` and every server is stopped on exit. A full run takes the median of
--runs runs (TLS: of 3) with min and max, rewrites the block between the markers of
docs/BENCHMARKS.md (with issue 16's targets for the harness on io_uring), redraws its
chart (docs/benchmarks_cpu.svg, with gnuplot) and appends a section to
docs/BENCHMARKS_TLS.md. --smoke runs each case once, briefly, writes nothing (the chart
goes to a temporary directory), and fails if a server does not start, a load tool reports
an error, a case completes nothing or the chart cannot be drawn
(//tools/bench:bench_smoke_test). Quiet machine: see islet_bench/quiet.py.
"""

import argparse
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time

from islet_bench import chart, host, quiet, report
from islet_bench.context import Context
from islet_bench.proxy import PROXY_HEADER, ProxyCases
from islet_bench.restart import RESTART_HEADER, RestartCase
from islet_bench.suite import Suite
from islet_bench.tls import TlsCases

TCP_PARTS = ("http", "echo", "metrics", "footprint", "scaling", "uring")
SUITE_BINARIES = ("harness", "epoll_echo", "epoll_http", "uring_echo", "uring_http", "echo_load",
                  "pipelined_load", "idle_conns")
TLS_BINARIES = ("harness", "tls_handshake_load", "tls_idle_conns")
PROXY_BINARIES = ("harness", "epoll_echo", "epoll_http", "echo_load")
RESTART_BINARIES = ("harness",)


def parse_options(argv):
    parser = argparse.ArgumentParser(prog="bench.py", allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="each case once for about a second; no medians, writes nothing")
    parser.add_argument("--runs", type=int, default=5, metavar="N", help="runs per figure (5; TLS: 3)")
    parser.add_argument("--duration", type=int, default=10, metavar="SECONDS", help="seconds per run (10)")
    parser.add_argument("--only", default="http,echo,metrics,footprint,scaling,tls,proxy,restart",
                        metavar="LIST",
                        help="the cases to run (http,echo,metrics,footprint,scaling,tls,proxy,restart,uring); "
                             "metrics: the harness with its metrics sink against without; proxy: "
                             "examples/proxy against HAProxy; restart: a takeover under wrk; uring (not by "
                             "default): the io_uring floors with each feature off in turn. Where io_uring "
                             "is refused, the io_uring servers (the floors, the harness with "
                             "--event_loop=io_uring) are skipped and the report says so")
    parser.add_argument("--idle_connections", type=int, default=None, metavar="N",
                        help="connections of the footprint case (10000; smoke: 1000)")
    parser.add_argument("--no_write", "--no-record", dest="write", action="store_false",
                        help="print the tables only")
    parser.add_argument("--quiet_wait", type=int, default=300, metavar="SECONDS",
                        help=f"before each case, wait up to this many seconds for the machine to be "
                             f"quiet (under {quiet.QUIET_PERCENT}%% busy without us); 300, tls_bench.sh: 120, "
                             f"smoke: 0; "
                             f"a run during which the machine was not quiet is done again (twice at most)")
    parser.add_argument("--bin_dir", required=True, metavar="DIR",
                        help="the binaries are DIR/tools/harness/harness and DIR/tools/bench/*")
    parser.add_argument("--build_mode", default="given by --bin_dir (the Bazel test: that build's mode)",
                        metavar="TEXT",
                        help="how the binaries were built, for the report")
    parser.add_argument("--command", default=None, metavar="TEXT",
                        help="the command line the reports name")
    options = parser.parse_args(argv)
    if options.command is None:
        options.command = " ".join(["tools/bench/bench.py"] + argv)
    if options.smoke:
        options.runs, options.duration, options.write, options.quiet_wait = 1, 1, False, 0
    if options.idle_connections is None:
        options.idle_connections = 1000 if options.smoke else 10000
    return options


def copy_binaries(bin_dir: str, names, tmp: str):
    """Copies the binaries out, so that a concurrent build cannot swap one mid-run."""
    os.makedirs(os.path.join(tmp, "bin"), exist_ok=True)
    bins = {}
    for name in names:
        source = os.path.join(bin_dir, "tools", "harness" if name == "harness" else "bench", name)
        if not os.access(source, os.X_OK):
            raise SystemExit(f"bench: missing binary {source}")
        bins[name] = shutil.copy(source, os.path.join(tmp, "bin", name))
    return bins


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def suite_machine(ctx, options, busy_before, busy_after) -> report.Machine:
    uname = os.uname()
    return report.Machine(
        cores=ctx.cores, cpu=ctx.proc.cpu_model(), mem_total_kb=ctx.proc.mem_total_kb(),
        kernel=uname.release, arch=uname.machine, compiler=host.first_line(["gcc", "--version"], ""),
        bazel=host.package_version("bazel-bootstrap"), build_mode=options.build_mode,
        wrk=host.package_version("wrk"), nginx=host.nginx_version(ctx.tools["nginx"]),
        server_cpu=ctx.server_cpu, load_cpu=ctx.load_cpu, busy_before=busy_before,
        busy_after=busy_after, busiest_wait=ctx.waiter.busiest, smoke=options.smoke,
        runs=options.runs, duration=options.duration)


def tls_machine(ctx) -> str:
    openssl = " ".join(host.first_line(["openssl", "version"]).split()[:2])
    return (f"{ctx.cores} cores ({ctx.proc.cpu_model()}), kernel {os.uname().release}, "
            f"{host.first_line(['gcc', '--version'], '')}, "
            f"BoringSSL {host.boringssl_version(ctx.repo)} (built from source, with assembly), "
            f"{host.nginx_version(ctx.tools['nginx'])} with {openssl}, "
            f"{host.first_line([ctx.tools['h2load'], '--version'])}")


def run_tls(ctx, options, alone: bool) -> None:
    """The TLS cases: the table on stdout when they run alone (tls_bench.sh), else on
    stderr; a section appended to docs/BENCHMARKS_TLS.md after a full run without failures."""
    if not ctx.tools["nginx"] or not ctx.tools["h2load"]:
        ctx.skipped.append("TLS cases: they need nginx and h2load (apt-get install nginx-light nghttp2-client)")
        return
    started = time.monotonic()
    ctx.waiter.noisy = False
    cases = TlsCases(ctx)
    table = cases.run()
    if table is None:
        return
    elapsed = round(time.monotonic() - started)
    out = sys.stdout if alone else sys.stderr
    print(f"\n{table}\n\n({cases.runs} run(s) per figure: median [min-max]; {elapsed}s)", file=out)
    if ctx.waiter.noisy:
        print("note: other work was running on the machine during some runs", file=out)
    out.flush()
    if options.write and not cases.failed:
        path = os.path.join(ctx.repo, "docs", "BENCHMARKS_TLS.md")
        doc = open(path).read() if os.path.exists(path) else None
        section = report.run_section(now_utc(), options.command, host.git_commit(ctx.repo), tls_machine(ctx),
                                     table, ctx.waiter.noisy)
        with open(path, "w") as f:
            f.write(report.append_section(report.TLS_HEADER, doc, section))
        ctx.log("appended to docs/BENCHMARKS_TLS.md")
    ctx.log(f"TLS: {'FAILED (see above)' if cases.failed else 'ok'} ({elapsed}s)")


def run_appending(ctx, options, alone: bool, what: str, cases, doc: str, header: str,
                  machine: str) -> None:
    """Runs cases whose table is appended to docs/DOC as a section (the proxy and restart
    cases): the table on stdout when they run alone, else on stderr; the section only
    after a full run without failures."""
    started = time.monotonic()
    ctx.waiter.noisy = False
    table = cases.run()
    if table is None:
        return
    elapsed = round(time.monotonic() - started)
    out = sys.stdout if alone else sys.stderr
    print(f"\n{table}\n\n({cases.runs} run(s) per figure: median [min-max]; {elapsed}s)", file=out)
    out.flush()
    if options.write and not cases.failed:
        path = os.path.join(ctx.repo, "docs", doc)
        text = open(path).read() if os.path.exists(path) else None
        with open(path, "w") as f:
            f.write(report.append_section(header, text, report.run_section(
                now_utc(), options.command, host.git_commit(ctx.repo), machine, table, ctx.waiter.noisy)))
        ctx.log(f"appended to docs/{doc}")
    ctx.log(f"{what}: {'FAILED (see above)' if cases.failed else 'ok'} ({elapsed}s)")


def base_machine(ctx) -> str:
    return (f"{ctx.cores} cores ({ctx.proc.cpu_model()}), kernel {os.uname().release}, "
            f"{host.first_line(['gcc', '--version'], '')}")


def run_proxy(ctx, options, alone: bool) -> None:
    """examples/proxy against HAProxy (docs/BENCHMARKS_PROXY.md)."""
    if not ctx.tools["haproxy"] or not ctx.tools["wrk"]:
        ctx.skipped.append("proxy cases: they need haproxy and wrk (apt-get install haproxy wrk)")
        return
    machine = f"{base_machine(ctx)}, {host.first_line([ctx.tools['haproxy'], '-v'])}"
    run_appending(ctx, options, alone, "proxy", ProxyCases(ctx), "BENCHMARKS_PROXY.md", PROXY_HEADER,
                  machine)


def run_restart(ctx, options, alone: bool) -> None:
    """A takeover under wrk against no restart (docs/BENCHMARKS_RESTART.md)."""
    if not ctx.tools["wrk"]:
        ctx.skipped.append("restart case: it needs wrk (apt-get install wrk)")
        return
    run_appending(ctx, options, alone, "restart", RestartCase(ctx), "BENCHMARKS_RESTART.md",
                  RESTART_HEADER, f"{base_machine(ctx)}, wrk {host.package_version('wrk')}")


def draw_chart(ctx, rows, path: str) -> bool:
    """The chart of the throughput rows (islet_bench/chart.py) into `path`; False, with
    the reason among the failures, when gnuplot fails. Nothing to chart: nothing done."""
    bars = chart.bars_from_rows(rows)
    if not chart.charted(bars):
        return True
    try:
        chart.draw(bars, path)
    except chart.ChartError as e:
        ctx.fail(f"chart: {e}")
        return False
    ctx.log(f"drew the chart into {path}")
    return True


def run(options, tmp: str, here: str, repo: str) -> int:
    started = time.monotonic()
    only = options.only.split(",")
    if options.write and ("http" in only or "echo" in only) and not shutil.which("gnuplot"):
        # Said now, not after the 25 minutes of measuring that the chart would end.
        raise SystemExit(f"bench: {chart.MISSING_GNUPLOT}")
    tcp = [p for p in TCP_PARTS if p in only]
    names = ((SUITE_BINARIES if tcp else ()) + (TLS_BINARIES if "tls" in only else ())
             + (PROXY_BINARIES if "proxy" in only else ()) + (RESTART_BINARIES if "restart" in only else ()))
    bins = copy_binaries(options.bin_dir, sorted(set(names)), tmp)
    ctx = Context(options, tmp, bins, repo, here)
    try:
        if ctx.server_cpu is None:
            ctx.log("fewer than 2 usable cores: nothing pinned")
        suite = Suite(ctx)
        busy_before = busy_after = None
        if tcp:
            busy_before = quiet.sample_busy_percent(ctx.proc)
            if not quiet.is_quiet(busy_before):
                ctx.log(f"WARNING: the machine is {busy_before}% busy without us: figures will be noisy")
            suite.run()
        if "tls" in only:
            run_tls(ctx, options, alone=not tcp)
        if "proxy" in only:
            run_proxy(ctx, options, alone=only == ["proxy"])
        if "restart" in only:
            run_restart(ctx, options, alone=only == ["restart"])
        table = None
        if tcp:
            busy_after = quiet.sample_busy_percent(ctx.proc)
            table = report.suite_report(now_utc(), options.command,
                                        suite_machine(ctx, options, busy_before, busy_after),
                                        suite.results, suite.scaling, suite.footprint, ctx.skipped,
                                        suite.uring_steps)
    finally:
        ctx.processes.stop_all()
    elapsed = round(time.monotonic() - started)
    if options.smoke:
        if table is not None:
            ctx.log(f"smoke results ({elapsed} s):")
            print(table, file=sys.stderr)
            # The chart too, into the temporary directory: a broken chart fails the smoke.
            if shutil.which("gnuplot"):
                draw_chart(ctx, suite.results, os.path.join(tmp, chart.CHART))
            else:
                ctx.skipped.append(f"the chart: {chart.MISSING_GNUPLOT}")
        problems = len(ctx.failures)
        for s in ctx.skipped:
            ctx.log(f"SKIPPED: {s}")
        if problems:
            ctx.log(f"smoke FAILED: {problems} problem(s):")
            print("\n".join(f"  {f}" for f in ctx.failures), file=sys.stderr)
            return 1
        ctx.log(f"smoke passed in {elapsed} s")
        return 0
    problems = len(ctx.failures)
    if table is not None:
        print(table, flush=True)
    if problems:
        ctx.log(f"{problems} problem(s):")
        print("\n".join(f"  {f}" for f in ctx.failures), file=sys.stderr)
    if table is not None and options.write:
        path = os.path.join(repo, "docs", "BENCHMARKS.md")
        doc = open(path).read() if os.path.exists(path) else None
        with open(path, "w") as f:
            f.write(report.replace_block(doc, table))
        ctx.log(f"wrote the table into docs/BENCHMARKS.md ({elapsed} s)")
        if not draw_chart(ctx, suite.results, os.path.join(repo, "docs", chart.CHART)):
            return 1
    return 1 if problems else 0


def main(argv) -> int:
    options = parse_options(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    tmp = tempfile.mkdtemp(prefix="islet-bench.", dir=os.environ.get("TEST_TMPDIR") or "/tmp")

    def stop(signum, frame):
        raise SystemExit(130)

    signal.signal(signal.SIGTERM, stop)
    try:
        return run(options, tmp, here, repo)
    except KeyboardInterrupt:
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
