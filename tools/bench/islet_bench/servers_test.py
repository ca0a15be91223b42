import os
import tempfile
import unittest

from islet_bench import servers


class CommandTest(unittest.TestCase):
    def test_bounded_and_pinned(self):
        self.assertEqual(servers.bounded(70, servers.pinned(0, ["harness", "--port=0"])),
                         ["timeout", "-k", "5", "70", "taskset", "-c", "0", "harness", "--port=0"])
        self.assertEqual(servers.pinned(None, ["wrk"]), ["wrk"])

    def test_the_port_a_server_prints(self):
        self.assertEqual(servers.listening_port("islet harness: echo over tcp listening on 127.0.0.1:41234\n"),
                         41234)
        self.assertEqual(servers.listening_port("epoll_echo: listening on 127.0.0.1:5000 (1 threads)\n"), 5000)
        self.assertIsNone(servers.listening_port("starting\n"))


class UringProbeTest(unittest.TestCase):
    def probe(self, script: str):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "uring_echo")
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + script)
            os.chmod(path, 0o755)
            return servers.uring_unavailable(path)

    def test_available(self):
        self.assertIsNone(self.probe('[ "$1" = --probe ] && echo "uring_echo: io_uring available"\n'))

    def test_refused_by_the_kernel(self):
        self.assertEqual(
            self.probe("echo 'uring_echo: io_uring unavailable: io_uring_queue_init_params: "
                       "Operation not permitted' >&2\nexit 77\n"),
            "uring_echo: io_uring unavailable: io_uring_queue_init_params: Operation not permitted")

    def test_any_other_failure(self):
        self.assertEqual(self.probe("echo 'bad flag' >&2\nexit 2\n"), "uring_echo --probe: exit 2: bad flag")


class NginxConfigTest(unittest.TestCase):
    def test_plain_http(self):
        conf = servers.nginx_config("/tmp/n", 20001, 20000)
        for line in ("worker_processes 1;", "daemon off;", "worker_rlimit_nofile 20000;",
                     "  worker_connections 19900;", "  access_log off;", "  keepalive_requests 1000000000;",
                     "    listen 127.0.0.1:20001;", '      return 200 "Hello world!";',
                     "pid /tmp/n/nginx.pid;", "error_log /tmp/n/error.log warn;"):
            self.assertIn(line, conf.splitlines())
        self.assertNotIn("ssl", conf)
        self.assertNotIn("user ", conf)

    def test_tls_and_user(self):
        conf = servers.nginx_config("/tmp/n", 20001, 20000, "root root", ("/c/cert.pem", "/c/key.pem"))
        for line in ("user root root;", "    listen 127.0.0.1:20001 ssl;", "    ssl_certificate /c/cert.pem;",
                     "    ssl_certificate_key /c/key.pem;", "    ssl_session_tickets off;",
                     "    ssl_session_cache off;", "    ssl_protocols TLSv1.2 TLSv1.3;"):
            self.assertIn(line, conf.splitlines())


if __name__ == "__main__":
    unittest.main()
