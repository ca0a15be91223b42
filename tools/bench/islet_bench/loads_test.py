import unittest

from islet_bench import loads

WRK = """Running 10s test @ http://127.0.0.1:41234/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   352.11us   40.02us   2.10ms   90.00%
    Req/Sec   142.31k     3.20k  150.00k    70.00%
  Latency Distribution
     50%  345.00us
     75%  360.00us
     90%  372.00us
     99%  380.00us
  1423456 requests in 10.00s, 130.32MB read
Requests/sec: 142345.60
Transfer/sec:     13.03MB
"""

WRK_ERRORS = WRK.replace(
    "Requests/sec:", "  Socket errors: connect 1, read 2, write 3, timeout 4\n"
    "  Non-2xx or 3xx responses: 5\nRequests/sec:")

H2LOAD = """starting benchmark...
finished in 3.49s, 85857.00 req/s, 10.12MB/s
requests: 300000 total, 300000 started, 300000 done, 300000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 300000 2xx, 0 3xx, 0 4xx, 0 5xx
"""


class WrkTest(unittest.TestCase):
    def test_requests_rate_and_p99(self):
        self.assertEqual(loads.parse_wrk(WRK), loads.Wrk(1423456, 142345.60, "380.00us", 0))

    def test_socket_errors_and_non_2xx_responses_count(self):
        self.assertEqual(loads.parse_wrk(WRK_ERRORS).errors, 15)

    def test_no_figures_in_other_output(self):
        self.assertEqual(loads.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n"),
                         loads.Wrk(None, None, None, 0))


class KeyValueTest(unittest.TestCase):
    def test_echo_load(self):
        line = "messages=1853210 rate=185321/s p50=260us p99=1.5ms errors=0\n"
        self.assertEqual(loads.number(line, "messages"), 1853210)
        self.assertEqual(loads.number(line, "rate"), 185321)
        self.assertEqual(loads.word(line, "p99"), "1.5ms")

    def test_tls_handshake_load(self):
        line = ("handshakes=12565 rate=2513/s p50=805us p99=1448us errors=0 resumed=0 "
                "tickets_per_conn=2.00 server_cpu=3.44s cpu_per_handshake=274.1us\n")
        self.assertEqual([loads.number(line, k) for k in ("rate", "cpu_per_handshake", "p50", "p99")],
                         [2513, 274.1, 805, 1448])

    def test_a_missing_key(self):
        self.assertIsNone(loads.number("requests=5 rate=1/s\n", "messages"))
        self.assertIsNone(loads.word("requests=5\n", "p99"))

    def test_durations_in_microseconds(self):
        self.assertEqual(loads.to_us("16.32ms"), 16320.0)
        self.assertEqual(loads.to_us("214.00us"), 214.0)
        self.assertEqual(loads.to_us("1.2s"), 1200000.0)
        self.assertEqual(loads.to_us("850ns"), 0.8)
        self.assertEqual(loads.to_us("0"), 0.0)
        self.assertIsNone(loads.to_us("-"))
        self.assertIsNone(loads.to_us(None))


class CountTest(unittest.TestCase):
    def test_wrk(self):
        self.assertEqual(loads.count("wrk", WRK, 1), loads.Count(1423456, 142345.60, "380.00us", 0))
        self.assertEqual(loads.count("wrk", WRK_ERRORS, 1).errors, 15)

    def test_wrk_close_is_read_as_wrk(self):
        self.assertEqual(loads.count("wrk_close", WRK, 1), loads.count("wrk", WRK, 1))
        self.assertEqual(loads.count("wrk_close", WRK_ERRORS, 1).errors, 15)

    def test_no_latency_from_wrk_under_pipelining(self):
        self.assertIsNone(loads.count("wrk", WRK, 16).p99)

    def test_echo_load(self):
        self.assertEqual(loads.count("echo", "messages=1853210 rate=185321/s p50=260us p99=1.5ms errors=0\n", 16),
                         loads.Count(1853210, 185321, "1.5ms", 0))
        self.assertEqual(loads.count("echo", "messages=10 rate=1/s p50=1us p99=2us errors=3\n", 1).errors, 3)

    def test_pipelined_load(self):
        self.assertEqual(loads.count("pipelined_http", "requests=74640000 rate=7464000/s errors=0\n", 64),
                         loads.Count(74640000, 7464000, None, 0))

    def test_nothing_completed(self):
        self.assertEqual(loads.count("echo", "echo_load: connect: Connection refused\n", 1),
                         loads.Count(None, None, None, 0))


class H2loadTest(unittest.TestCase):
    def test_every_request_answered(self):
        self.assertEqual(loads.parse_h2load(H2LOAD, 300000), loads.H2load(300000, 85857.0, True))

    def test_failed_requests(self):
        text = H2LOAD.replace("300000 succeeded, 0 failed", "299990 succeeded, 10 failed").replace(
            "status codes: 300000 2xx", "status codes: 299990 2xx")
        self.assertEqual(loads.parse_h2load(text, 300000), loads.H2load(299990, 85857.0, False))


if __name__ == "__main__":
    unittest.main()
