import unittest

from islet_bench import proxy, report


class HaproxyConfigTest(unittest.TestCase):
    def test_one_thread_tcp_relay_to_the_upstream_on_loopback(self):
        config = proxy.haproxy_config("/tmp/x", 4100, 4200, 20000)
        self.assertIn("nbthread 1", config)
        self.assertIn("mode tcp", config)
        self.assertIn("bind 127.0.0.1:4100", config)
        self.assertIn("server one 127.0.0.1:4200", config)
        self.assertIn("pidfile /tmp/x/haproxy.pid", config)
        self.assertNotIn("0.0.0.0", config)


class ProxyTableTest(unittest.TestCase):
    def test_medians_and_ratios_per_figure(self):
        ours = {name: [] for name in proxy.FIGURES}
        haproxy = {name: [] for name in proxy.FIGURES}
        ours["ka_cpu"] = [9.0, 10.0, 11.0]
        haproxy["ka_cpu"] = [20.0, 20.0, 20.0]
        table = proxy.proxy_table(ours, haproxy)
        lines = table.splitlines()
        self.assertEqual(len(lines), 2 + 6)
        cpu = next(l for l in lines if "CPU per forwarded request" in l)
        self.assertIn("0.50x", cpu)
        self.assertIn("10", cpu)

    def test_a_section_is_appended_under_the_header_once(self):
        first = report.append_section(proxy.PROXY_HEADER, None,
                                      report.run_section("when", "cmd", "abc", "m", "t", False))
        self.assertTrue(first.startswith("# Proxy benchmarks"))
        second = report.append_section(proxy.PROXY_HEADER, first,
                                       report.run_section("later", "cmd", "def", "m", "t", True))
        self.assertEqual(second.count("# Proxy benchmarks"), 1)
        self.assertIn("## later", second)
        self.assertIn("other work was running", second)


if __name__ == "__main__":
    unittest.main()
