import unittest

from islet_bench import report
from islet_bench.report import Footprint, Row

HTTP = "HTTP hello, wrk -c 50"
PIPELINED = "HTTP hello, wrk -c 50, pipelined x16"
SCALING = "HTTP hello, pipelined_load -c 50, depth 64"


def row(case, server, cpu, rate, p99=None, server_percent=88, load=50, foreign=0, workers=1):
    return Row(case, server, workers, cpu, rate, p99, server_percent, load, foreign)


RESULTS = [
    # Three runs of islet, servers in turn within each run, as the suite records them.
    row(HTTP, "islet_http", 6.20, 141800, 380.0), row(HTTP, "epoll_http", 5.76, 140000, 360.0, 80),
    row(HTTP, "islet_http", 6.18, 110000, 390.0), row(HTTP, "islet_http", 7.92, 142000, 370.0),
    row(PIPELINED, "nginx", 5.65, 176000, None, 99), row(PIPELINED, "islet_http", 0.43, 1529000, None, 66),
]

MACHINE = report.Machine(
    cores=2, cpu="AMD EPYC", mem_total_kb=25165824, kernel="6.18.44", arch="x86_64",
    compiler="gcc (Debian 12.2.0-14+deb12u1) 12.2.0", bazel="4.2.3+ds-9",
    build_mode="bazel build -c opt", wrk="4.1.0-3+b2", nginx="nginx/1.22.1", server_cpu=0, load_cpu=1,
    busy_before=1, busy_after=0, busiest_wait=None, smoke=False, runs=5, duration=10)


class ThroughputTableTest(unittest.TestCase):
    def test_shape_and_cells(self):
        self.assertEqual(report.throughput_table(RESULTS), [
            "| case | server | CPU µs/op: median (min–max) | ops/s: median (min–max) | p99 ms | "
            "server CPU | islet ÷ this (CPU/op) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            "| HTTP hello, wrk -c 50 | islet harness (http_hello) | **6.20** (6.18–7.92) | 142k (110k–142k) "
            "| 0.38 | 88% | — |",
            "| HTTP hello, wrk -c 50 | epoll_http (ceiling) | **5.76** (5.76–5.76) | 140k (140k–140k) "
            "| 0.36 | 80% | 1.08x |",
            # islet first whatever the order of the runs; no p99 under pipelining.
            "| HTTP hello, wrk -c 50, pipelined x16 | islet harness (http_hello) | **0.43** (0.43–0.43) "
            "| 1529k (1529k–1529k) | — (a) | 66% | — |",
            "| HTTP hello, wrk -c 50, pipelined x16 | nginx | **5.65** (5.65–5.65) | 176k (176k–176k) "
            "| — (a) | 99% | 0.08x |",
        ])


    def test_the_io_uring_floor_after_the_epoll_ceiling(self):
        case = "Echo 64 B, 50 conns, depth 1"
        rows = [row(case, "uring_echo", 4.00, 200000, 250.0), row(case, "epoll_echo", 5.00, 190000, 280.0),
                row(case, "islet_echo", 5.50, 185000, 450.0)]
        self.assertEqual([line.split(" | ")[1] for line in report.throughput_table(rows)[2:]],
                         ["islet harness (echo)", "epoll_echo (ceiling)", "uring_echo (io_uring floor)"])
        self.assertTrue(report.throughput_table(rows)[4].endswith("| 1.38x |"))

    def test_the_harness_on_io_uring_beside_the_harness_on_epoll(self):
        rows = [row(HTTP, "nginx", 8.00, 120000, 400.0), row(HTTP, "uring_http", 5.50, 150000, 340.0),
                row(HTTP, "islet_uring_http", 6.30, 140000, 390.0), row(HTTP, "epoll_http", 5.76, 140000, 360.0),
                row(HTTP, "islet_http", 6.00, 142000, 380.0)]
        lines = report.throughput_table(rows)[2:]
        self.assertEqual([line.split(" | ")[1] for line in lines],
                         ["islet harness (http_hello)", "islet harness on io_uring (http_hello)",
                          "epoll_http (ceiling)", "uring_http (io_uring floor)", "nginx"])
        # Its own cell: against the harness on epoll; the peers' ratios stay the epoll
        # harness's (6.00 / 5.76, 6.00 / 5.50, 6.00 / 8.00).
        self.assertTrue(lines[1].endswith("| 0.39 | 88% | io_uring: +5.0% CPU/op |"), lines[1])
        self.assertEqual([line.split(" | ")[-1] for line in lines], ["— |", "io_uring: +5.0% CPU/op |",
                                                                     "1.04x |", "1.09x |", "0.75x |"])
        echo = [row("Echo 64 B, 50 conns, depth 16", s, cpu, 1000000) for s, cpu in
                (("epoll_echo", 0.40), ("islet_uring_echo", 0.42), ("islet_echo", 0.44))]
        self.assertEqual([line.split(" | ")[1] for line in report.throughput_table(echo)[2:]],
                         ["islet harness (echo)", "islet harness on io_uring (echo)", "epoll_echo (ceiling)"])
        self.assertTrue(report.throughput_table(echo)[3].endswith("| io_uring: -4.5% CPU/op |"))
        self.assertEqual(report.SERVER_ORDER[:6], ["islet_http", "islet_uring_http", "islet_http_metrics",
                                                   "islet_echo", "islet_uring_echo", "islet_echo_metrics"])

    def test_io_uring_features_one_off_at_a_time(self):
        case = "io_uring features: Echo 64 B, 50 conns, depth 1"
        rows = [row(case, "uring_echo", 4.00, 200000), row(case, "uring_echo --recv=oneshot", 4.40, 190000),
                row(case, "uring_echo", 4.20, 210000), row(case, "uring_echo --recv=oneshot", 4.60, 180000)]
        self.assertEqual(report.uring_steps_table(rows)[-2:], [
            # Medians of two runs: their means.
            f"| {case} | uring_echo | **4.10** (4.00–4.20) | 205k (200k–210k) | 88% | 1.00x |",
            f"| {case} | uring_echo --recv=oneshot | **4.50** (4.40–4.60) | 185k (180k–190k) | 88% | 1.10x |",
        ])

    def test_metrics_sink_overhead_against_the_harness_without_it(self):
        case = "Metrics sink: HTTP hello, wrk -c 50"
        rows = [row(case, "islet_http_metrics", 6.30, 140000, 380.0), row(case, "islet_http", 6.00, 142000, 370.0)]
        self.assertEqual(report.throughput_table(rows)[2:], [
            "| Metrics sink: HTTP hello, wrk -c 50 | islet harness (http_hello) | **6.00** (6.00–6.00) "
            "| 142k (142k–142k) | 0.37 | 88% | — |",
            "| Metrics sink: HTTP hello, wrk -c 50 | islet harness (http_hello), metrics sink attached "
            "| **6.30** (6.30–6.30) | 140k (140k–140k) | 0.38 | 88% | sink: +5.0% CPU/op |",
        ])


class ScalingTableTest(unittest.TestCase):
    def test_one_against_two_workers(self):
        rows = [
            row(SCALING, "islet_http", 0.133, 7464000, None, 99, 82.85, workers=1),
            row(SCALING, "islet_http", 0.167, 5552000, None, 93, 65, workers=2),
            row(SCALING, "epoll_http", 0.115, 8618000, None, 99, 90, workers=1),  # no 2-worker run
        ]
        lines = report.scaling_table(rows, 0, 1)
        self.assertEqual(lines[0], "### Scaling: 1 and 2 workers")
        self.assertIn("Load: tools/bench/pipelined_load (one thread, pinned to core 1): 64 requests in flight",
                      lines)
        self.assertEqual(lines[-3:], [
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            "| HTTP hello, pipelined_load -c 50, depth 64 | islet harness (http_hello) | 1 | 0.133 (0.133–0.133) "
            "| 7464k (7464k–7464k) | 0.99 | 0.111 | 1.00x | 1.00x | 1.00x |",
            # Load CPU per request: 65% of a core at 5552k/s is 0.117 µs. Per server core:
            # (5552k / 0.93) / (7464k / 0.99); possible: 2 / (0.133 + 0.117) µs against 7464k/s.
            # epoll_http has no 2-worker run: no rows.
            "| HTTP hello, pipelined_load -c 50, depth 64 | islet harness (http_hello) | 2 | 0.167 (0.167–0.167) "
            "| 5552k (5552k–5552k) | 0.93 | 0.117 | **0.74x** | 0.79x | 1.07x |",
        ])


class FootprintTableTest(unittest.TestCase):
    def test_bytes_per_connection(self):
        lines = report.footprint_table([Footprint("islet_echo", 10000, 6784, 13572, 2),
                                        Footprint("epoll_echo", 1000, 5416, 5400, 1)])
        self.assertEqual(lines[-3:], [
            "| --- | --- | --- | --- | --- | --- |",
            "| islet harness (echo) | 10000 | 6 MiB (6784 kB) | 13 MiB (13572 kB) | **695** | 2 |",
            "| epoll_echo (ceiling) | 1000 | 5 MiB (5416 kB) | 5 MiB (5400 kB) | **-16** | 1 |",
        ])


C200 = "HTTP hello, wrk -c 200"
ECHO1 = "Echo 64 B, 50 conns, depth 1"
ECHO16 = "Echo 64 B, 50 conns, depth 16"

# The harness on io_uring and its peers in every case with a target: two runs each.
URING_RESULTS = [
    row(HTTP, "islet_uring_http", 6.00, 1), row(HTTP, "islet_uring_http", 6.20, 1),
    row(HTTP, "nginx", 8.00, 1), row(HTTP, "nginx", 8.40, 1),
    row(HTTP, "uring_http", 5.50, 1), row(HTTP, "uring_http", 5.70, 1),
    row(C200, "islet_uring_http", 5.90, 1), row(C200, "nginx", 7.70, 1), row(C200, "uring_http", 5.30, 1),
    row(PIPELINED, "islet_uring_http", 0.44, 1), row(PIPELINED, "islet_http", 0.43, 1),
    row(ECHO1, "islet_uring_echo", 4.50, 1), row(ECHO1, "epoll_echo", 5.30, 1),
    row(ECHO16, "islet_uring_echo", 0.40, 1), row(ECHO16, "islet_echo", 0.40, 1),
]
URING_FOOTPRINT = [Footprint("islet_echo", 10000, 6784, 13572, 2), Footprint("islet_uring_echo", 10000, 6800, 14100, 2),
                   Footprint("islet_http", 10000, 6824, 14392, 2), Footprint("islet_uring_http", 10000, 6824, 14000, 2)]


class UringTargetsTableTest(unittest.TestCase):
    def test_every_target_met_or_missed(self):
        self.assertEqual(report.uring_targets_table(URING_RESULTS, URING_FOOTPRINT), [
            "### Targets: the harness on io_uring (issue 16)",
            "",
            "The harness with `--event_loop=io_uring` against its peers in the same runs: ratios of the",
            "median CPU per operation above (judged on the ratio shown), and the memory of an idle",
            "connection against the harness's on epoll (Footprint).",
            "",
            "| target | measured | verdict |",
            "| --- | --- | --- |",
            # 6.10 / 8.20 and 6.10 / 5.60: medians of two runs.
            "| HTTP hello, wrk -c 50: at most 0.75x nginx | **0.74x** (6.10 against 8.20 µs/op) | met |",
            "| HTTP hello, wrk -c 50: at most 1.10x uring_http (io_uring floor) | **1.09x** (6.10 against 5.60 µs/op) "
            "| met |",
            "| HTTP hello, wrk -c 200: at most 0.75x nginx | **0.77x** (5.90 against 7.70 µs/op) | MISSED |",
            "| HTTP hello, wrk -c 200: at most 1.10x uring_http (io_uring floor) | **1.11x** (5.90 against "
            "5.30 µs/op) | MISSED |",
            "| HTTP hello, wrk -c 50, pipelined x16: at most 1.00x islet harness (http_hello) | **1.02x** "
            "(0.44 against 0.43 µs/op) | MISSED |",
            "| Echo 64 B, 50 conns, depth 1: at most 0.85x epoll_echo (ceiling) | **0.85x** (4.50 against "
            "5.30 µs/op) | met |",
            "| Echo 64 B, 50 conns, depth 16: at most 1.00x islet harness (echo) | **1.00x** (0.40 against "
            "0.40 µs/op) | met |",
            # (14100 - 6800) kB / 10000 = 747 B against 695 B; (14000 - 6824) kB: 734 B against 774 B.
            "| Idle connection: islet harness on io_uring (echo) at most 512 B more than islet harness (echo) "
            "| **+52 B** (747 against 695 B per connection) | met |",
            "| Idle connection: islet harness on io_uring (http_hello) at most 512 B more than islet harness "
            "(http_hello) | **-40 B** (734 against 774 B per connection) | met |",
        ])

    def test_more_than_512_bytes_more_is_missed(self):
        lines = report.uring_targets_table([], [Footprint("islet_echo", 1000, 6000, 6680, 2),
                                                Footprint("islet_uring_echo", 1000, 6000, 7180, 2)])
        # 1180 kB over 1000 connections: 1208 B, 512 more than 696 B: met; one kB more is not.
        self.assertEqual(lines[-1], "| Idle connection: islet harness on io_uring (echo) at most 512 B more than "
                                    "islet harness (echo) | **+512 B** (1208 against 696 B per connection) | met |")
        lines = report.uring_targets_table([], [Footprint("islet_echo", 1000, 6000, 6680, 2),
                                                Footprint("islet_uring_echo", 1000, 6000, 7181, 2)])
        self.assertTrue(lines[-1].endswith("| **+513 B** (1209 against 696 B per connection) | MISSED |"), lines[-1])

    def test_a_missing_peer_is_no_figure(self):
        lines = report.uring_targets_table([row(HTTP, "islet_uring_http", 6.0, 1)],
                                           [Footprint("islet_uring_echo", 1000, 6000, 7000, 2)])
        self.assertEqual(lines[8:], [
            "| HTTP hello, wrk -c 50: at most 0.75x nginx | n/a | n/a |",
            "| HTTP hello, wrk -c 50: at most 1.10x uring_http (io_uring floor) | n/a | n/a |",
            "| Idle connection: islet harness on io_uring (echo) at most 512 B more than islet harness (echo) "
            "| n/a | n/a |",
        ])

    def test_no_table_without_the_harness_on_io_uring(self):
        self.assertEqual(report.uring_targets_table(RESULTS, [Footprint("islet_echo", 10000, 6784, 13572, 2)]), [])


class SuiteReportTest(unittest.TestCase):
    def test_machine_lines(self):
        foreign = [row(HTTP, "islet_http", 1, 1, foreign=f) for f in (0, 11, 3, 1)]
        self.assertEqual(report.machine_lines(MACHINE._replace(busiest_wait=23), foreign), [
            "- Machine: 2 cores (AMD EPYC), 24 GiB RAM; Linux 6.18.44 (x86_64)",
            "- Compiler: gcc (Debian 12.2.0-14+deb12u1) 12.2.0; Bazel 4.2.3+ds-9; binaries: bazel build -c opt",
            "- Load tools: wrk 4.1.0-3+b2, echo_load and idle_conns (tools/bench); peer: nginx/1.22.1",
            "- Pinning: server on core 0, load generator (one thread) on core 1; 2-worker runs: server not pinned",
            "- Background load (all cores busy with nothing of ours running, 2 s samples): 1% before, 0% after; "
            "a case started at 23% busy after --quiet_wait ran out",
            "- Foreign CPU during the measured runs (processes other than the server and the load tool, "
            "% of all cores): median 1%, max 11%",
            "- Runs: 5 per figure (median, min–max), 10 s each, after a 2 s warm-up; within each run the "
            "servers are measured in turn",
        ])

    def test_smoke_and_no_pinning(self):
        lines = report.machine_lines(MACHINE._replace(smoke=True, duration=1, server_cpu=None,
                                                      load_cpu=None, busy_after=None), [])
        self.assertIn("- Pinning: server on core none, load generator (one thread) on core none; "
                      "2-worker runs: server not pinned", lines)
        self.assertIn("1% before, ?% after", lines[4])
        self.assertEqual(lines[-1], "- Smoke: one run of 1 s per figure, no warm-up")
        self.assertFalse(any(l.startswith("- Foreign CPU") for l in lines))

    def test_the_block(self):
        text = report.suite_report("2026-11-25 23:52 UTC", "tools/bench/run.sh", MACHINE, RESULTS, [],
                                   [Footprint("islet_echo", 10000, 6784, 13572, 2)],
                                   ["wrk: not installed"])
        lines = text.split("\n")
        self.assertEqual(lines[:6], ["Measured 2026-11-25 23:52 UTC with:", "", "```sh", "tools/bench/run.sh",
                                     "```", ""])
        self.assertIn("### Throughput cases (1 worker)", lines)
        self.assertNotIn("### Scaling: 1 and 2 workers", lines)  # no scaling rows
        self.assertIn("### Footprint: idle connections", lines)
        self.assertNotIn("### Targets: the harness on io_uring (issue 16)", lines)  # not measured
        self.assertEqual(lines[-2:], ["", "- Skipped: wrk: not installed"])
        self.assertFalse(text.endswith("\n"))

    def test_the_io_uring_targets_after_the_footprint(self):
        lines = report.suite_report("now", "run.sh", MACHINE, URING_RESULTS, [], URING_FOOTPRINT, []).split("\n")
        targets = lines.index("### Targets: the harness on io_uring (issue 16)")
        self.assertGreater(targets, lines.index("### Footprint: idle connections"))
        self.assertEqual(lines[targets:], report.uring_targets_table(URING_RESULTS, URING_FOOTPRINT))


DOC = """# Benchmarks

Intro.

<!-- BEGIN tools/bench/run.sh output -->
old line 1
old line 2
<!-- END tools/bench/run.sh output -->

## Targets (by hand)
"""


class ReplaceBlockTest(unittest.TestCase):
    def test_rewrites_between_the_markers_only(self):
        self.assertEqual(report.replace_block(DOC, "new 1\nnew 2\nnew 3"), DOC.replace(
            "old line 1\nold line 2\n", "new 1\nnew 2\nnew 3\n"))

    def test_markers_are_added_to_a_document_without_them(self):
        self.assertEqual(report.replace_block("# Benchmarks\n\nText.\n", "new"),
                         "# Benchmarks\n\nText.\n\n" + report.BEGIN + "\nnew\n" + report.END + "\n")

    def test_a_missing_document(self):
        self.assertEqual(report.replace_block(None, "new"),
                         "# Benchmarks\n\n" + report.BEGIN + "\nnew\n" + report.END + "\n")

    def test_the_markers_of_the_real_document(self):
        self.assertEqual(report.BEGIN, "<!-- BEGIN tools/bench/run.sh output -->")
        self.assertEqual(report.END, "<!-- END tools/bench/run.sh output -->")


def figures(hs_rate, hs_cpu, hs_p50, hs_p99, ka_rate, ka_cpu, idle):
    return dict(hs_rate=hs_rate, hs_cpu=hs_cpu, hs_p50=hs_p50, hs_p99=hs_p99, ka_rate=ka_rate,
                ka_cpu=ka_cpu, idle=idle)


class TlsTableTest(unittest.TestCase):
    def test_shape_and_cells(self):
        ours = figures([2569, 2542, 2611], [248.4, 253.0, 248.0], [829, 820, 840], [1326, 1300, 1400],
                       [83651, 73103, 84502], [8.40, 8.23, 9.87], [5.08, 5.08, 5.08])
        nginx = figures([2456, 2422, 2467], [321.0, 317.0, 326.0], [862, 850, 870], [1495, 1400, 1500],
                        [87111, 75564, 87134], [10.60, 10.53, 12.13], [14.04, 14.03, 14.04])
        self.assertEqual(report.tls_table(ours, nginx, 50, 300000, 10000, 10000).split("\n"), [
            "| case | ours (Islet harness) | nginx | ours / nginx | target | |",
            "| --- | --- | --- | --- | --- | --- |",
            "| (a) full handshakes/s (TLS 1.3, P-256, X25519, +1 GET) | 2569 [2542-2611] | 2456 [2422-2467] "
            "| 1.05x | | |",
            "| (a) handshake latency p50 / p99 (us) | 829 / 1326 | 862 / 1495 | | | |",
            "| (a) server CPU per handshake (us) | 248 [248-253] | 321 [317-326] | 0.77x | <= 0.55x | MISSED |",
            "| (b) keep-alive requests/s (h2load --h1 -c 50 -n 300000) | 83651 [73103-84502] "
            "| 87111 [75564-87134] | 0.96x | | |",
            "| (b) server CPU per request (us) | 8.40 [8.23-9.87] | 10.60 [10.53-12.13] | 0.79x | <= 0.75x | MISSED |",
            "| (c) memory per idle TLS connection (KiB; ours at 10000, nginx at 10000) | 5.08 [5.08-5.08] "
            "| 14.04 [14.03-14.04] | 0.36x | <= 6 KiB | met |",
        ])

    def test_a_target_is_judged_on_the_ratio_shown(self):
        # 55.4 / 100 shows as 0.55x, which meets "<= 0.55x".
        o = figures([1], [55.4], [1], [1], [1], [9.0], [17.0])
        n = figures([1], [100.0], [1], [1], [1], [10.0], [14.0])
        lines = report.tls_table(o, n, 50, 20000, 1000, 1000).split("\n")
        self.assertTrue(lines[4].endswith("| 55.40 | 100 | 0.55x | <= 0.55x | met |"))
        self.assertTrue(lines[6].endswith("| 0.90x | <= 0.75x | MISSED |"))
        self.assertTrue(lines[7].endswith("| 17.00 | 14.00 | 1.21x | <= 6 KiB | MISSED |"))

    def test_no_figures(self):
        empty = figures([], [], [], [], [], [], [])
        lines = report.tls_table(empty, empty, 50, 20000, 1000, 1000).split("\n")
        self.assertEqual(lines[2], "| (a) full handshakes/s (TLS 1.3, P-256, X25519, +1 GET) | n/a | n/a | n/a | | |")
        self.assertEqual(lines[3], "| (a) handshake latency p50 / p99 (us) |  /  |  /  | | | |")
        self.assertTrue(lines[4].endswith("| n/a | n/a | n/a | <= 0.55x | n/a |"))


class TlsSectionTest(unittest.TestCase):
    def test_appended_section(self):
        section = report.run_section("2026-11-25 23:54 UTC", "tools/bench/tls_bench.sh", "48a14d2",
                                     "2 cores (AMD EPYC)", "| table |", noisy=False)
        self.assertEqual(section, "\n## 2026-11-25 23:54 UTC\n\nCommand: `tools/bench/tls_bench.sh` "
                                  "(commit 48a14d2)\n\nMachine: 2 cores (AMD EPYC)\n\n| table |\n")
        self.assertEqual(report.append_section(report.TLS_HEADER, "# TLS benchmarks\n\nOld.\n", section),
                         "# TLS benchmarks\n\nOld.\n" + section)

    def test_a_noisy_run_carries_a_note(self):
        section = report.run_section("d", "c", "x", "m", "| t |", noisy=True)
        self.assertTrue(section.endswith("| t |\n\nNote: other work was running on the machine during some runs.\n"))

    def test_a_new_document_gets_the_header(self):
        doc = report.append_section(report.TLS_HEADER, None, "\n## d\n")
        self.assertTrue(doc.startswith("# TLS benchmarks\n\nWritten by `tools/bench/tls_bench.sh`"))
        self.assertTrue(doc.endswith("Each figure is the median of 3 runs, with [min-max].\n\n## d\n"))


if __name__ == "__main__":
    unittest.main()
