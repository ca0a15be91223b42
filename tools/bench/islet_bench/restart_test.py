import unittest

from islet_bench import restart


class WrkMaxTest(unittest.TestCase):
    def test_the_largest_latency_of_the_thread_stats(self):
        text = ("  Thread Stats   Avg      Stdev     Max   +/- Stdev\n"
                "    Latency     1.09ms    1.84ms  12.97ms   85.54%\n"
                "  Latency Distribution\n     99%    8.25ms\n")
        self.assertEqual(restart.wrk_max_us(text), 12970.0)
        self.assertIsNone(restart.wrk_max_us("nothing here"))


class RestartTableTest(unittest.TestCase):
    def test_one_column_per_kind(self):
        figures = {kind: {name: [] for name in restart.FIGURES} for kind in restart.KINDS}
        figures["takeover"]["errors"] = [47.0]
        figures["graceful"]["errors"] = [0.0]
        lines = restart.restart_table(figures, 10).splitlines()
        self.assertEqual(len(lines), 2 + len(restart.FIGURES))
        self.assertIn("--shutdown_grace=1s", lines[0])
        self.assertEqual(lines[1].count("---"), len(restart.KINDS) + 1)
        errors = next(l for l in lines if "errors" in l)
        self.assertIn("47", errors)


if __name__ == "__main__":
    unittest.main()
