import socket
import unittest

from islet_bench import ports


def listener(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen()
    return s


class FreePortTest(unittest.TestCase):
    def test_a_port_with_a_listener_is_not_free(self):
        with listener() as taken:
            port = taken.getsockname()[1]
            self.assertFalse(ports.port_is_free(port))
        self.assertTrue(ports.port_is_free(port))

    def test_a_wildcard_listener_takes_the_port_on_loopback_too(self):
        with listener("0.0.0.0") as taken:
            self.assertFalse(ports.port_is_free(taken.getsockname()[1]))

    def test_skips_taken_ports(self):
        with listener() as a, listener() as b:
            taken = [a.getsockname()[1], b.getsockname()[1]]
            port = ports.free_port(taken + list(range(ports.FIRST, ports.LAST + 1)))
            self.assertNotIn(port, taken)
            self.assertTrue(ports.FIRST <= port <= ports.LAST)

    def test_none_when_nothing_is_free(self):
        with listener() as taken:
            self.assertIsNone(ports.free_port([taken.getsockname()[1]]))

    def test_picks_outside_the_ephemeral_range(self):
        port = ports.free_port()
        self.assertIsNotNone(port)
        self.assertTrue(ports.FIRST <= port <= ports.LAST < 32768)


if __name__ == "__main__":
    unittest.main()
