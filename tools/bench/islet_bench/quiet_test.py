import unittest

from islet_bench import proc, quiet
from islet_bench.window import CpuWindow

STAT_BEFORE = "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 500 0 250 4000 50 0 0 0 0 0\n"
STAT_AFTER = "cpu  1100 0 550 8300 150 0 25 25 0 0\ncpu0 550 0 275 4150 75 0 10 10 0 0\n"


class ThresholdTest(unittest.TestCase):
    def test_one_threshold(self):
        self.assertEqual(quiet.QUIET_PERCENT, 10)
        self.assertTrue(quiet.is_quiet(9))
        self.assertFalse(quiet.is_quiet(10))
        self.assertFalse(quiet.is_quiet(11.5))

    def test_busy_percent_of_all_cores(self):
        # Busy: user 100 + system 50 + softirq 25 + steal 25 = 200; idle: 300 + iowait 50 = 350.
        before = proc.parse_machine_ticks(STAT_BEFORE)
        after = proc.parse_machine_ticks(STAT_AFTER)
        self.assertEqual(quiet.busy_percent(before, after), 36)  # 200 / 550
        self.assertEqual(quiet.busy_percent(before, before), 0)

    def test_foreign_percent_leaves_out_ours(self):
        # 500 busy ticks in 10 s on 2 cores at 100 Hz, 300 of them ours: 10% of the machine.
        self.assertAlmostEqual(quiet.foreign_percent(500, 300, 100, 10, 2), 10.0)
        self.assertEqual(quiet.foreign_percent(300, 310, 100, 10, 2), 0.0)  # never negative


class FakeMachine:
    """Busy percentages to sample, one after the other; records the pauses."""

    def __init__(self, samples):
        self.samples = list(samples)
        self.sampled = 0
        self.pauses = []
        self.logged = []

    def sample(self):
        self.sampled += 1
        return self.samples.pop(0)

    def waiter(self, max_wait):
        return quiet.QuietWaiter(max_wait, self.sample, self.logged.append, sleep=self.pauses.append)


class QuietWaiterTest(unittest.TestCase):
    def test_no_wait_never_samples(self):
        machine = FakeMachine([50])
        machine.waiter(0).wait()
        self.assertEqual(machine.sampled, 0)

    def test_a_quiet_machine_goes_at_once(self):
        machine = FakeMachine([3])
        waiter = machine.waiter(300)
        waiter.wait()
        self.assertEqual((machine.sampled, machine.pauses), (1, []))
        self.assertFalse(waiter.noisy)

    def test_waits_until_quiet(self):
        machine = FakeMachine([40, 25, 9])
        waiter = machine.waiter(300)
        waiter.wait()
        self.assertEqual(machine.sampled, 3)
        self.assertEqual(machine.pauses, [quiet.PAUSE_SECONDS] * 2)
        self.assertIn("40% busy without us: waiting (up to 300 s)", machine.logged[0])
        self.assertIsNone(waiter.busiest)
        self.assertFalse(waiter.noisy)

    def test_gives_up_after_the_wait_and_remembers_the_busiest(self):
        machine = FakeMachine([50, 60, 70, 40, 20, 20, 20, 20])
        waiter = machine.waiter(12)
        waiter.wait()  # samples at 0, 5, 10 and 15 s: gives up at the fourth
        self.assertEqual(machine.sampled, 4)
        self.assertEqual(waiter.busiest, 40)
        self.assertTrue(waiter.noisy)
        self.assertIn("still 40% busy without us after 15 s: going ahead", machine.logged[-1])
        waiter.wait()
        self.assertEqual(waiter.busiest, 40)  # the busiest of the give-ups: 40 against 20


class UntilQuietTest(unittest.TestCase):
    def runs(self, foreign, repeat=True):
        machine = FakeMachine([0] * 10)
        waiter = machine.waiter(300)
        results = iter(foreign)
        done = []

        def run():
            done.append(next(results))
            return done[-1]

        kept = quiet.until_quiet(run, lambda r: r, waiter, machine.logged.append, repeat)
        return kept, done, waiter, machine

    def test_a_quiet_run_is_kept(self):
        kept, done, waiter, _ = self.runs([4])
        self.assertEqual((kept, done, waiter.noisy), (4, [4], False))

    def test_a_busy_run_is_done_again_after_waiting(self):
        kept, done, _, machine = self.runs([30, 5])
        self.assertEqual((kept, done), (5, [30, 5]))
        self.assertEqual(machine.sampled, 1)

    def test_at_most_twice_again_then_the_last_is_kept(self):
        kept, done, waiter, machine = self.runs([30, 20, 15, 1])
        self.assertEqual((kept, done), (15, [30, 20, 15]))
        self.assertTrue(waiter.noisy)
        self.assertIn("keeping it", machine.logged[-1])

    def test_no_repeats_when_told(self):
        kept, done, _, _ = self.runs([30, 5], repeat=False)
        self.assertEqual((kept, done), (30, [30]))

    def test_a_failed_run_is_not_repeated(self):
        kept, done, _, _ = self.runs([None, 5])
        self.assertEqual((kept, done), (None, [None]))


class FakeProc:
    def __init__(self):
        self.server = iter([100, 300])
        self.machine = iter([(1000, 0), (1500, 0)])

    def cpu_ticks(self, pids):
        return next(self.server)

    def machine_ticks(self):
        return next(self.machine)


class CpuWindowTest(unittest.TestCase):
    def test_server_load_and_foreign_cpu_over_a_run(self):
        clock = iter([0.0, 10.0])
        children = iter([1.0, 2.0])
        with CpuWindow(FakeProc(), [42], 100, 2, clock=lambda: next(clock),
                       children_seconds=lambda: next(children)) as window:
            pass
        self.assertEqual(window.server_ticks, 200)
        self.assertAlmostEqual(window.load_ticks, 100)
        self.assertAlmostEqual(window.seconds, 10)
        self.assertAlmostEqual(window.server_percent(), 20)  # of one core
        self.assertAlmostEqual(window.load_percent(), 10)
        # 500 busy ticks, 300 of them ours, over 10 s on 2 cores: 10% of the machine.
        self.assertAlmostEqual(window.foreign_percent(), 10)


if __name__ == "__main__":
    unittest.main()
