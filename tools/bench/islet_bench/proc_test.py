import os
import shutil
import subprocess
import tempfile
import unittest

from islet_bench import proc


def stat_line(pid, comm, state, ppid, utime, stime, start):
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    return (f"{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 1200 0 0 0 {utime} {stime} "
            f"50 60 20 0 1 0 {start} 10000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0\n")


STATUS = "Name:\tharness\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t   20000 kB\nVmRSS:\t    6784 kB\nThreads:\t2\n"
MACHINE = ("cpu  1000 10 500 8000 100 5 6 7 0 0\n"
           "cpu0 600 5 300 3000 50 2 3 4 0 0\n"
           "cpu1 400 5 200 5000 50 3 3 3 0 0\n"
           "intr 12345\nctxt 999\n")
CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
MEMINFO = "MemTotal:       25165824 kB\nMemFree:        1000000 kB\n"


class ParseTest(unittest.TestCase):
    def test_stat_fields(self):
        s = proc.parse_stat(stat_line(100, "bash", "S", 1, 25, 12, 5000))
        self.assertEqual(s, proc.Stat("S", 1, 25, 12, 5000))

    def test_a_command_name_with_spaces_and_parentheses(self):
        s = proc.parse_stat(stat_line(200, "my (odd) name) S 9", "R", 100, 7, 3, 6000))
        self.assertEqual(s, proc.Stat("R", 100, 7, 3, 6000))

    def test_status_fields(self):
        self.assertEqual(proc.parse_status_field(STATUS, "VmRSS"), 6784)
        self.assertEqual(proc.parse_status_field(STATUS, "Threads"), 2)
        self.assertEqual(proc.parse_status_field(STATUS, "VmSwap"), 0)

    def test_machine_ticks(self):
        # busy: user + nice + system + irq + softirq + steal; idle: idle + iowait.
        self.assertEqual(proc.parse_machine_ticks(MACHINE), (1000 + 10 + 500 + 5 + 6 + 7, 8100))
        self.assertEqual(proc.parse_machine_ticks(MACHINE, "cpu1"), (400 + 5 + 200 + 3 + 3 + 3, 5050))
        with self.assertRaises(ValueError):
            proc.parse_machine_ticks("intr 1\n")

    def test_cpu_model_and_memory(self):
        self.assertEqual(proc.parse_cpu_model(CPUINFO), "AMD EPYC")
        self.assertEqual(proc.parse_cpu_model(""), "?")
        self.assertEqual(proc.parse_mem_total_kb(MEMINFO), 25165824)


class FixtureProcTest(unittest.TestCase):
    """Proc over a directory laid out like /proc."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.process(100, stat_line(100, "nginx", "S", 1, 25, 12, 5000), STATUS, fds=5)
        self.process(200, stat_line(200, "nginx: worker (1)", "S", 100, 7, 3, 5001),
                     STATUS.replace("6784", "1000").replace("Threads:\t2", "Threads:\t1"), fds=3)
        self.process(300, stat_line(300, "gone", "Z", 100, 1, 1, 5002), "", fds=0)
        self.process(400, stat_line(400, "other", "S", 1, 90, 90, 4000), STATUS, fds=1)
        for name, text in (("stat", MACHINE), ("cpuinfo", CPUINFO), ("meminfo", MEMINFO)):
            with open(os.path.join(self.root, name), "w") as f:
                f.write(text)
        self.proc = proc.Proc(self.root)

    def process(self, pid, stat, status, fds):
        d = os.path.join(self.root, str(pid))
        os.makedirs(os.path.join(d, "fd"))
        with open(os.path.join(d, "stat"), "w") as f:
            f.write(stat)
        with open(os.path.join(d, "status"), "w") as f:
            f.write(status)
        for fd in range(fds):
            open(os.path.join(d, "fd", str(fd)), "w").close()

    def test_cpu_ticks_of_processes(self):
        self.assertEqual(self.proc.cpu_ticks([100]), 37)
        self.assertEqual(self.proc.cpu_ticks([100, 200]), 47)
        self.assertEqual(self.proc.cpu_ticks([100, 999]), 37)  # 999 has gone: nothing

    def test_children_and_tree(self):
        self.assertEqual(self.proc.children(100), [200, 300])
        self.assertEqual(self.proc.tree(100), [100, 200, 300])
        self.assertEqual(self.proc.children(200), [])

    def test_alive_and_start_time(self):
        self.assertTrue(self.proc.alive(100))
        self.assertFalse(self.proc.alive(300))  # a zombie
        self.assertFalse(self.proc.alive(999))
        self.assertEqual(self.proc.start_time(200), 5001)
        self.assertIsNone(self.proc.start_time(999))

    def test_memory_threads_and_descriptors(self):
        self.assertEqual(self.proc.status_sum("VmRSS", [100, 200]), 7784)
        self.assertEqual(self.proc.status_sum("Threads", [100, 200, 300, 999]), 3)
        self.assertEqual(self.proc.fd_count([100, 200, 999]), 8)

    def test_machine(self):
        self.assertEqual(self.proc.machine_ticks(), (1528, 8100))
        self.assertEqual(self.proc.cpu_model(), "AMD EPYC")
        self.assertEqual(self.proc.mem_total_kb(), 25165824)


class RealProcTest(unittest.TestCase):
    def test_finds_a_child_of_ours_and_its_ticks(self):
        child = subprocess.Popen(["sleep", "5"])
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        real = proc.Proc()
        self.assertIn(child.pid, real.children(os.getpid()))
        self.assertTrue(real.alive(child.pid))
        self.assertGreaterEqual(real.cpu_ticks([os.getpid()]), 0)
        self.assertGreater(real.status_sum("VmRSS", [os.getpid()]), 0)
        busy, idle = real.machine_ticks()
        self.assertGreater(busy + idle, 0)


if __name__ == "__main__":
    unittest.main()
