import unittest

from islet_bench import stats


class MedianTest(unittest.TestCase):
    def test_odd_count_is_the_middle_value(self):
        self.assertEqual(stats.median([7.92, 6.18, 6.20]), 6.20)

    def test_even_count_is_the_mean_of_the_middle_two(self):
        self.assertEqual(stats.median([4, 1, 3, 2]), 2.5)

    def test_no_values(self):
        self.assertIsNone(stats.median([]))

    def test_lower_median_is_a_value_that_occurred(self):
        self.assertEqual(stats.lower_median([11, 0, 3, 1]), 1)
        self.assertEqual(stats.lower_median([5, 1, 3]), 3)
        self.assertIsNone(stats.lower_median([]))


class SpreadTest(unittest.TestCase):
    def test_median_min_and_max(self):
        self.assertEqual(stats.spread([6.20, 7.92, 6.18, 6.21, 6.19]), stats.Spread(6.20, 6.18, 7.92))

    def test_missing_figures_are_left_out(self):
        self.assertEqual(stats.spread([None, 380.0, None, 360.0]), stats.Spread(370.0, 360.0, 380.0))

    def test_no_figure_at_all(self):
        self.assertIsNone(stats.spread([None, None]))
        self.assertIsNone(stats.spread([]))


class CpuPerOperationTest(unittest.TestCase):
    def test_ticks_to_microseconds_per_operation(self):
        # 6.2 s of CPU (620 ticks at 100 Hz) for a million requests: 6.2 µs each.
        self.assertAlmostEqual(stats.per_op_us(620, 100, 1_000_000), 6.2)

    def test_percent_of_one_core_and_of_all(self):
        self.assertAlmostEqual(stats.percent(880, 100, 10), 88.0)
        self.assertAlmostEqual(stats.percent(880, 100, 10, cores=2), 44.0)


class FormatTest(unittest.TestCase):
    def test_plain_numbers_print_as_awk_prints_them(self):
        self.assertEqual(stats.plain(805.0), "805")
        self.assertEqual(stats.plain(805.5), "805.5")
        self.assertEqual(stats.plain(1 / 3), "0.333333")

    def test_summary_is_median_with_min_and_max(self):
        self.assertEqual(stats.summary([2513, 2450, 2543]), "2513 [2450-2543]")
        self.assertEqual(stats.summary([9.13, 9.5, 9.13]), "9.13 [9.13-9.50]")

    def test_summary_of_one_value_and_of_none(self):
        self.assertEqual(stats.summary([274.1]), "274")
        self.assertEqual(stats.summary([5.75]), "5.75")
        self.assertEqual(stats.summary([]), "n/a")

    def test_ratio(self):
        self.assertEqual(stats.ratio(248, 321), "0.77x")
        self.assertEqual(stats.ratio(None, 321), "n/a")
        self.assertEqual(stats.ratio(248, 0), "n/a")

    def test_verdict(self):
        self.assertEqual(stats.verdict(0.77, "<=", 0.80), "met")
        self.assertEqual(stats.verdict(0.87, "<=", 0.80), "MISSED")
        self.assertEqual(stats.verdict(1.9, ">=", 1.8), "met")
        self.assertEqual(stats.verdict(None, "<=", 0.80), "n/a")


if __name__ == "__main__":
    unittest.main()
