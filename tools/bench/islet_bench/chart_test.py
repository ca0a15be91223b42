import os
import shutil
import tempfile
import unittest
from unittest import mock

from islet_bench import chart, report
from islet_bench.chart import Bar
from islet_bench.report import Row
from islet_bench.stats import Spread

HTTP = "HTTP hello, wrk -c 50"
PIPELINED = "HTTP hello, wrk -c 50, pipelined x16"
ECHO = "Echo 64 B, 50 conns, depth 1"
METRICS = "Metrics sink: HTTP hello, wrk -c 50"


def row(case, server, cpu, workers=1):
    return Row(case, server, workers, cpu, 100000, None, 90, 50, 0)


# Two runs of each server, in turn within each run, as the suite records them.
ROWS = [
    row(HTTP, "islet_http", 6.25), row(HTTP, "islet_uring_http", 6.00), row(HTTP, "epoll_http", 5.75),
    row(HTTP, "uring_http", 5.50), row(HTTP, "nginx", 8.00),
    row(HTTP, "islet_http", 7.75), row(HTTP, "islet_uring_http", 7.25), row(HTTP, "epoll_http", 7.50),
    row(HTTP, "uring_http", 7.00), row(HTTP, "nginx", 8.50),
    row(PIPELINED, "islet_http", 0.43), row(PIPELINED, "islet_uring_http", 0.45), row(PIPELINED, "epoll_http", 0.41),
    row(PIPELINED, "nginx", 5.65),
    row(ECHO, "islet_echo", 5.38), row(ECHO, "islet_uring_echo", 5.17), row(ECHO, "epoll_echo", 5.25),
    row(ECHO, "uring_echo", 5.09),
    row(METRICS, "islet_http", 6.00), row(METRICS, "islet_http_metrics", 6.30),
]


def bars(*specs):
    return [Bar(case, server, Spread(*cpu)) for case, server, *cpu in specs]


class BarsTest(unittest.TestCase):
    def test_one_bar_per_case_and_server_with_the_tables_median_min_and_max(self):
        got = chart.bars_from_rows(ROWS)
        self.assertEqual(got[:5], bars((HTTP, "islet_http", 7.00, 6.25, 7.75),
                                       (HTTP, "islet_uring_http", 6.625, 6.00, 7.25),
                                       (HTTP, "epoll_http", 6.625, 5.75, 7.50),
                                       (HTTP, "uring_http", 6.25, 5.50, 7.00), (HTTP, "nginx", 8.25, 8.00, 8.50)))
        self.assertEqual(len(got), 15)

    def test_read_back_from_the_throughput_table_alone(self):
        machine = report.Machine(
            cores=2, cpu="AMD EPYC", mem_total_kb=25165824, kernel="6.18.44", arch="x86_64", compiler="gcc",
            bazel="4.2.3", build_mode="bazel build -c opt", wrk="4.1.0", nginx="nginx/1.22.1", server_cpu=0,
            load_cpu=1, busy_before=1, busy_after=0, busiest_wait=None, smoke=False, runs=2, duration=10)
        scaling = [row("HTTP hello, pipelined_load -c 50, depth 64", "islet_http", 0.133, workers=w) for w in (1, 2)]
        steps = [row(f"io_uring features: {ECHO}", "uring_echo", 4.0),
                 row(f"io_uring features: {ECHO}", "uring_echo --recv=oneshot", 4.4)]
        doc = report.replace_block("# Benchmarks\n\n### Elsewhere\n\n| a | islet harness (echo) | **1.00** (1.00–1.00) |\n",
                                   report.suite_report("now", "run.sh", machine, ROWS, scaling, [], [], steps))
        # As the table prints them, in its order (the harness first in each case); not
        # the scaling and io_uring feature rows, nor a table outside the block.
        expected = [b._replace(cpu=Spread(*(float("%.2f" % v) for v in b.cpu)))
                    for b in chart.bars_from_rows(ROWS)]
        got = chart.bars_from_doc(doc)
        self.assertEqual(sorted(got), sorted(expected))
        self.assertEqual([b.server for b in got if b.case == HTTP],
                         ["islet_http", "islet_uring_http", "epoll_http", "uring_http", "nginx"])

    def test_the_chart_compares_the_harness_with_its_peers_only(self):
        got = chart.charted(chart.bars_from_rows(ROWS) + bars((HTTP, "uring_http --recv=oneshot", 6, 6, 6)))
        self.assertEqual({b.case for b in got}, {HTTP, PIPELINED, ECHO})
        self.assertNotIn("islet_http_metrics", {b.server for b in got})
        self.assertNotIn("uring_http --recv=oneshot", {b.server for b in got})
        self.assertEqual(len(got), 13)
        self.assertEqual({b.server for b in got} - {b.server for b in chart.bars_from_rows(ROWS)}, set())
        self.assertIn("islet_uring_echo", {b.server for b in got})


class ScriptTest(unittest.TestCase):
    def test_data_one_block_per_series_bars_centred_on_their_case(self):
        got = chart.data(bars((HTTP, "nginx", 8.06, 6.88, 8.7), (HTTP, "islet_http", 6.2, 6.18, 7.92),
                              (HTTP, "epoll_http", 5.76, 5.74, 7.51), (ECHO, "islet_echo", 5.38, 5.36, 5.46),
                              (ECHO, "epoll_echo", 5.25, 5.23, 5.32)))
        # Three series, so each bar is 0.8 / 3 wide; echo has two bars, centred on x = 1.
        self.assertEqual(got, "\n".join([
            "# Islet harness",
            "-0.2667 6.20 6.18 7.92",
            "0.8667 5.38 5.36 5.46",
            "",
            "",
            "# bare epoll loop",
            "0.0000 5.76 5.74 7.51",
            "1.1333 5.25 5.23 5.32",
            "",
            "",
            "# nginx",
            "0.2667 8.06 6.88 8.70",
            "",
        ]))

    def test_the_harness_on_io_uring_is_a_series_of_its_own_beside_the_harness(self):
        got = chart.data(bars((ECHO, "epoll_echo", 5.25, 5.23, 5.32), (ECHO, "islet_uring_echo", 5.17, 5.10, 5.30),
                              (ECHO, "islet_echo", 5.38, 5.36, 5.46)))
        # Three bars 0.8 / 3 wide centred on x = 0: the harness, then on io_uring, then epoll.
        self.assertEqual(got.split("\n\n\n"), ["# Islet harness\n-0.2667 5.38 5.36 5.46",
                                                "# Islet harness on io_uring\n0.0000 5.17 5.10 5.30",
                                                "# bare epoll loop\n0.2667 5.25 5.23 5.32\n"])
        colours = [s.color for s in chart.SERIES]
        self.assertEqual(len(set(colours)), len(colours))

    def test_every_case_and_server_in_the_script(self):
        got = chart.script(chart.bars_from_rows(ROWS), "/tmp/out dir/cpu.svg")
        self.assertIn('set output "/tmp/out dir/cpu.svg"', got)
        self.assertIn("set terminal svg", got)
        self.assertIn(chart.data(chart.bars_from_rows(ROWS)), got)
        for tic in ['"HTTP hello\\nwrk -c 50" 0', '"HTTP hello\\nwrk -c 50\\npipelined x16" 1',
                    '"Echo 64 B\\n50 conns\\ndepth 1" 2']:
            self.assertIn(tic, got)
        self.assertNotIn("Metrics sink", got)
        for i, series in enumerate(chart.SERIES):
            self.assertIn(f'$cpu index {i} using 1:2 with boxes lc rgb "{series.color}" title "{series.title}"', got)
        self.assertNotIn(f"$cpu index {len(chart.SERIES)}", got)
        self.assertIn('title "Islet harness on io_uring"', got)

    def test_a_series_without_bars_is_not_in_the_legend(self):
        got = chart.script(bars((ECHO, "islet_echo", 5.38, 5.36, 5.46), (ECHO, "epoll_echo", 5.25, 5.23, 5.32)), "x.svg")
        self.assertIn('title "bare epoll loop"', got)
        self.assertNotIn("nginx", got)
        self.assertNotIn("$cpu index 2", got)

    def test_nothing_to_chart(self):
        with self.assertRaises(chart.ChartError):
            chart.script(bars((METRICS, "islet_http", 6, 6, 6), (METRICS, "islet_http_metrics", 6.3, 6.3, 6.3)),
                         "x.svg")


class DrawTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.svg = os.path.join(self.dir, "cpu.svg")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def fake_gnuplot(self, script: str) -> str:
        path = os.path.join(self.dir, "gnuplot")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + script)
        os.chmod(path, 0o755)
        return path

    @unittest.skipUnless(shutil.which("gnuplot"), "gnuplot is not installed (apt-get install gnuplot-nox)")
    def test_gnuplot_draws_an_svg_with_every_case_and_server(self):
        chart.draw(chart.bars_from_rows(ROWS), self.svg)
        with open(self.svg, encoding="utf-8") as f:
            svg = f.read()
        self.assertTrue(svg.startswith("<?xml"), svg[:100])
        self.assertIn("<svg", svg)
        self.assertTrue(svg.rstrip().endswith("</svg>"))
        for text in ["HTTP hello", "wrk -c 50", "pipelined x16", "Echo 64 B", "depth 1", "lower is better",
                     "µs"] + [s.title for s in chart.SERIES]:
            self.assertIn(text, svg)
        self.assertNotIn("Metrics sink", svg)
        # The figures above the bars: the medians.
        for median in ("7.00", "6.62", "6.25", "8.25", "0.43", "0.45", "5.65", "5.09", "5.17"):
            self.assertIn(f"<text>{median}</text>", svg)
        self.assertEqual(os.listdir(self.dir), ["cpu.svg"])

    def test_a_failing_gnuplot_keeps_the_chart_there_was(self):
        with open(self.svg, "w") as f:
            f.write("the old chart")
        gnuplot = self.fake_gnuplot('cat >/dev/null; echo "line 9: unexpected or unrecognized token" >&2; exit 1\n')
        with self.assertRaisesRegex(chart.ChartError, "gnuplot: exit 1: line 9: unexpected"):
            chart.draw(chart.bars_from_rows(ROWS), self.svg, gnuplot)
        with open(self.svg) as f:
            self.assertEqual(f.read(), "the old chart")
        self.assertEqual(sorted(os.listdir(self.dir)), ["cpu.svg", "gnuplot"])

    def test_a_warning_is_a_failure(self):
        gnuplot = self.fake_gnuplot('cat >/dev/null; touch "$(dirname "$0")/cpu.svg.partial"; '
                                    'echo "warning: Skipping data file with no valid points" >&2\n')
        with self.assertRaisesRegex(chart.ChartError, "no valid points"):
            chart.draw(chart.bars_from_rows(ROWS), self.svg, gnuplot)
        self.assertEqual(os.listdir(self.dir), ["gnuplot"])

    def test_no_gnuplot(self):
        with mock.patch.dict(os.environ, {"PATH": self.dir}):
            with self.assertRaisesRegex(chart.ChartError, "^gnuplot is not installed: .*apt-get install gnuplot-nox"):
                chart.draw(chart.bars_from_rows(ROWS), self.svg)
        with self.assertRaisesRegex(chart.ChartError, "gnuplot: .*No such file"):
            chart.draw(chart.bars_from_rows(ROWS), self.svg, os.path.join(self.dir, "missing"))


if __name__ == "__main__":
    unittest.main()
