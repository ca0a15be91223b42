import unittest

from islet_bench import abuse


class FloodLineTest(unittest.TestCase):
    def test_parses_fields(self):
        fields = abuse.parse_flood_line("flood: summary mode=trickle eof=3 open=10 elapsed_ms=5")
        self.assertEqual(fields["what"], "summary")
        self.assertEqual(fields["eof"], "3")
        self.assertEqual(fields["open"], "10")

    def test_other_lines_are_none(self):
        self.assertIsNone(abuse.parse_flood_line("harness: listening"))
        self.assertIsNone(abuse.parse_flood_line("flood: "))

    def test_finds_lines_of_a_kind(self):
        text = "x\nflood: ready connected=5 of=5\nflood: status open=5\nflood: summary open=4\n"
        self.assertEqual(abuse.flood_lines(text, "ready")[0]["connected"], "5")
        self.assertEqual(len(abuse.flood_lines(text, "status")), 1)
        self.assertEqual(abuse.flood_lines(text, "not_ready"), [])


class PercentileTest(unittest.TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual(abuse.percentile(values, 50), 50)
        self.assertEqual(abuse.percentile(values, 99), 99)
        self.assertEqual(abuse.percentile(values, 100), 100)
        self.assertEqual(abuse.percentile([7], 99), 7)
        self.assertIsNone(abuse.percentile([], 50))

    def test_unsorted(self):
        self.assertEqual(abuse.percentile([3, 1, 2], 50), 2)


class FormatTest(unittest.TestCase):
    def test_ms(self):
        self.assertEqual(abuse.ms(0.0000421), "0.042 ms")
        self.assertEqual(abuse.ms(0.0042), "4.2 ms")
        self.assertEqual(abuse.ms(1.5), "1500 ms")
        self.assertEqual(abuse.ms(None), "–")

    def test_latency_cell(self):
        self.assertEqual(abuse.latency_cell(abuse.Latency(5, 0, [])), "none of 5 answered")
        cell = abuse.latency_cell(abuse.Latency(4, 2, [0.001, 0.002]))
        self.assertTrue(cell.startswith("2 of 4 answered; p50 1.0 ms, p99 2.0 ms"), cell)


class ReportTest(unittest.TestCase):
    def test_every_case_is_a_row(self):
        lat = abuse.Latency(10, 10, [0.001] * 10)
        figures = abuse.Figures(lat, lat, lat, lat, 10000, abuse.Latency(5, 0, []), 4000,
                                65536, 90000, 1100000, 500, 65536, 70000, 200, 1.012, 20000,
                                26, 2.0)
        text = abuse.report("2026-12-04", "tools/bench/abuse.sh", ["- Machine: test"], figures,
                            10000, 4000, 10000, 1000)
        self.assertIn("| Good client, keep-alive, no flood | p50 1.0 ms", text)
        self.assertIn("none of 5 answered", text)
        self.assertIn("88 MiB (budget 64 MiB; 500 connections shed)", text)
        self.assertIn("12.0 ms (exited 1012 ms after the signal)", text)
        self.assertIn("26 lines (storm took 2.0 s)", text)
        self.assertIn("- Machine: test", text)

    def test_missing_figures_say_so(self):
        figures = abuse.Figures(None, None, None, None, None, None, None, 65536, None, None,
                                None, 65536, None, 200, None, 20000, None, None)
        text = abuse.report("d", "c", [], figures, 10000, 4000, 10000, 1000)
        self.assertIn("not measured", text)


if __name__ == "__main__":
    unittest.main()
