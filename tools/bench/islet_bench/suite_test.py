import unittest
from types import SimpleNamespace
from typing import List, Tuple
from unittest import mock

from islet_bench import report, suite
from islet_bench.context import Context

HARNESS_CASES = [report.HTTP_C50, report.HTTP_C200, report.HTTP_PIPELINED, report.HTTP_CHURN,
                 report.ECHO_DEPTH1, report.ECHO_DEPTH16]


class HarnessCommandTest(unittest.TestCase):
    def test_the_io_uring_kinds_name_the_io_uring_loop(self):
        self.assertEqual(suite.harness_command("bin/harness", "islet_uring_http", 1),
                         ["bin/harness", "--handler=http_hello", "--port=0", "--num_workers=1",
                          "--event_loop=io_uring", "--log=off", "--shutdown_timeout=1s"])
        self.assertEqual(suite.harness_command("bin/harness", "islet_uring_echo", 2),
                         ["bin/harness", "--handler=echo", "--port=0", "--num_workers=2",
                          "--event_loop=io_uring", "--log=off", "--shutdown_timeout=1s"])

    def test_the_epoll_kinds_name_the_epoll_loop(self):
        # Named, so that ISLET_EVENT_LOOP=io_uring in the environment cannot turn the
        # epoll rows into io_uring ones.
        self.assertEqual(suite.harness_command("h", "islet_http", 1),
                         ["h", "--handler=http_hello", "--port=0", "--num_workers=1", "--event_loop=epoll",
                          "--log=off", "--shutdown_timeout=1s"])
        self.assertEqual(suite.harness_command("h", "islet_echo_metrics", 1)[1:],
                         ["--handler=echo", "--port=0", "--num_workers=1", "--event_loop=epoll", "--log=off",
                          "--shutdown_timeout=1s", "--metrics_port=0"])

    def test_not_a_kind_of_the_harness(self):
        for kind in ("islet_uring_tls", "uring_echo", "islet_", "nginx"):
            with self.assertRaises(ValueError, msg=kind):
                suite.harness_command("h", kind, 1)


class FakeContext:
    """What Suite.run and Suite.start_peer read of the context; wants is Context's own."""

    wants = Context.wants

    def __init__(self, only: str, wrk: bool = True, nginx: bool = True):
        self.options = SimpleNamespace(only=only)
        self.smoke = False
        self.skipped: List[str] = []
        self.tools = {"wrk": "/usr/bin/wrk" if wrk else None, "nginx": "/usr/sbin/nginx" if nginx else None}
        self.bins = {"harness": "bin/harness", "uring_echo": "bin/uring_echo"}
        self.server_cpu = 0
        self.started: List[Tuple[str, List[str]]] = []
        self.processes = SimpleNamespace(start=self.start)

    def start(self, name, cpu, lifetime, cmd, port=None, wait_for_child=False):
        self.started.append((name, list(cmd)))
        return None


class RecordingSuite(suite.Suite):
    """The suite's choice of cases and servers, without running any."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.cases: List[Tuple[str, Tuple[str, ...], bool]] = []  # (case, kinds, into uring_steps)
        self.footprints: List[str] = []
        self.scalings: List[Tuple[str, str]] = []

    def run_case(self, case, tool, conns, depth, kinds, into=None):
        self.cases.append((case, tuple(kinds), into is self.uring_steps))

    def run_footprint(self, kind):
        self.footprints.append(kind)

    def run_scaling(self, case, tool, conns, depth, kind):
        self.scalings.append((case, kind))


def run(only: str, uring_off=None, **tools) -> RecordingSuite:
    s = RecordingSuite(FakeContext(only, **tools))
    with mock.patch.object(suite, "uring_unavailable", return_value=uring_off) as probe:
        s.run()
    probe.assert_called_once_with("bin/uring_echo")
    return s


class SuiteCasesTest(unittest.TestCase):
    def test_the_harness_on_io_uring_beside_the_harness_on_epoll_in_every_throughput_case(self):
        s = run("http,echo")
        self.assertEqual([c for c, _, _ in s.cases], HARNESS_CASES)
        for case, kinds, _ in s.cases:
            http = case.startswith("HTTP")
            # In the same alternated runs: one run_case with every server of the case.
            self.assertEqual(kinds, ("islet_http", "islet_uring_http", "epoll_http", "uring_http", "nginx") if http
                             else ("islet_echo", "islet_uring_echo", "epoll_echo", "uring_echo"), case)
        self.assertEqual(s.ctx.skipped, [])

    def test_the_idle_connection_footprint_on_both_loops(self):
        s = run("footprint")
        self.assertEqual(s.footprints, ["islet_echo", "islet_uring_echo", "islet_http", "islet_uring_http",
                                        "epoll_echo", "nginx"])
        self.assertEqual(s.cases, [])

    def test_without_io_uring_no_io_uring_server_and_a_message_saying_why(self):
        s = run("http,echo,footprint,uring", uring_off="io_uring_setup: Operation not permitted")
        kinds = {k for _, ks, _ in s.cases for k in ks} | set(s.footprints)
        self.assertEqual({k for k in kinds if "uring" in k}, set())
        self.assertEqual([c for c, _, _ in s.cases], HARNESS_CASES)  # no io_uring features case
        self.assertEqual(s.ctx.skipped, [
            "io_uring servers (the harness with --event_loop=io_uring: islet_uring_http, islet_uring_echo; "
            "the floors: uring_http, uring_echo): io_uring is unavailable: io_uring_setup: Operation not permitted"])

    def test_only_uring_measures_the_floors_features_alone(self):
        s = run("uring")
        self.assertEqual([(c, into) for c, _, into in s.cases],
                         [(f"io_uring features: {c}", True)
                          for c in (report.HTTP_C50, report.HTTP_CHURN, report.ECHO_DEPTH1,
                                    report.ECHO_DEPTH16)])
        for case, kinds, _ in s.cases:
            binary = "uring_http" if "HTTP" in case else "uring_echo"
            self.assertEqual(kinds, tuple(" ".join([binary] + flags) for flags in suite.URING_STEPS))
        self.assertEqual((s.footprints, s.scalings), ([], []))

    def test_without_wrk_or_nginx(self):
        s = run("http,echo", wrk=False, nginx=False)
        self.assertEqual([c for c, _, _ in s.cases], [report.ECHO_DEPTH1, report.ECHO_DEPTH16])
        self.assertEqual(s.cases[0][1], ("islet_echo", "islet_uring_echo", "epoll_echo", "uring_echo"))
        self.assertEqual(len(s.ctx.skipped), 2)

    def test_the_metrics_and_scaling_cases_keep_to_the_epoll_harness(self):
        s = run("metrics,scaling")
        self.assertEqual([k for _, k, _ in s.cases], [("islet_http", "islet_http_metrics"),
                                                      ("islet_echo", "islet_echo_metrics")])
        self.assertEqual([k for _, k in s.scalings], ["islet_http", "epoll_http", "islet_echo", "epoll_echo"])


class StartPeerTest(unittest.TestCase):
    def test_the_harness_on_io_uring_is_started_as_its_kind(self):
        ctx = FakeContext("http")
        suite.Suite(ctx).start_peer("islet_uring_http", 100)
        self.assertEqual(ctx.started, [("islet_uring_http", ["bin/harness", "--handler=http_hello", "--port=0",
                                                             "--num_workers=1", "--event_loop=io_uring",
                                                             "--log=off", "--shutdown_timeout=1s"])])


if __name__ == "__main__":
    unittest.main()
