#!/usr/bin/python3 -B
"""The io_uring floor servers (uring_echo, uring_http) on 127.0.0.1, with real replies.

Echo round trips of many sizes (past a provided buffer's 16 KiB), pipelined messages,
many connections at once on two threads, HTTP replies byte for byte epoll_http's, a
client that sends without reading (the server must pause its reading, hold a bounded
amount, and deliver everything once the client reads), and the same servers with each
io_uring feature turned off. Every server runs under `timeout` and is killed at the end.

If io_uring is refused here (the server exits 77: ENOSYS or EPERM), every test is
skipped, and says so on stderr and in unittest's summary. //tools/bench:uring_servers_test;
by hand: tools/bench/uring_servers_test.py BIN_DIR (the directory of the binaries).
"""

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BIN_DIR = HERE
UNAVAILABLE_EXIT = 77  # kUringUnavailableExit (uring_base.h)
LIFETIME_SECONDS = 120  # of every server process
IO_TIMEOUT = 20  # seconds any one socket operation may take
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+) \((\d+) threads\)")
_unavailable = None  # why io_uring is refused here, once probed


def binary(name):
    return os.path.join(BIN_DIR, name)


def io_uring_unavailable():
    """None if io_uring works here; else the server's own words (ENOSYS or EPERM)."""
    global _unavailable
    if _unavailable is None:
        probe = subprocess.run(["timeout", "-k", "5", "20", binary("uring_echo"), "--probe"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if probe.returncode == UNAVAILABLE_EXIT:
            _unavailable = probe.stderr.decode(errors="replace").strip()
            print(f"SKIPPED: io_uring is unavailable on this machine ({_unavailable}): the "
                  "io_uring floor servers are not tested", file=sys.stderr, flush=True)
        elif probe.returncode != 0:
            raise AssertionError(f"uring_echo --probe: exit {probe.returncode}: {probe.stderr!r}")
        else:
            _unavailable = ""
    return _unavailable or None


class Server:
    """A server binary on a port of its choosing, bounded in time."""

    def __init__(self, name, *flags):
        self.process = subprocess.Popen(
            ["timeout", "-k", "5", str(LIFETIME_SECONDS), binary(name), "--port=0"] + list(flags),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.process.stdout], [], [], 15)
        line = self.process.stdout.readline() if ready else b""
        m = _LISTENING.search(line)
        if not m:
            self.stop()
            raise AssertionError(
                f"{name} {flags} did not listen: {line!r} {self.process.stderr.read()!r}")
        self.port = int(m.group(1))
        self.pid = self._server_pid()

    def _server_pid(self):
        """The server under `timeout`: its child."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as f:
                    children = f.read().split()
                if children:
                    return int(children[0])
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server process is not there")

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def alive(self):
        return self.process.poll() is None

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def pattern(size, seed=0):
    """Bytes that differ at every offset modulo 251, so that a lost, repeated or reordered
    chunk shows."""
    block = bytes((seed + i) % 251 for i in range(251))
    return (block * (size // 251 + 1))[:size]


def recv_exactly(s, size):
    chunks, got = [], 0
    while got < size:
        chunk = s.recv(min(size - got, 1 << 20))
        if not chunk:
            raise AssertionError(f"closed after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def round_trip(s, data):
    """Sends data from a thread while reading the echo, so a large message cannot wedge
    both sides on full socket buffers."""
    sender = threading.Thread(target=s.sendall, args=(data,))
    sender.start()
    try:
        return recv_exactly(s, len(data))
    finally:
        sender.join()


def half_close_then_read(server, data, delay=0.5):
    """Sends data and closes the sending side (from a thread: the server may pause its
    reading meanwhile), waits `delay` with nothing read so that the server's reply is
    still going out when the end arrives, then reads to the end."""
    with server.connect() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)

        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(delay)
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        sender.join()
        return b"".join(chunks)


def read_available(s, seconds):
    """What arrives until nothing has for `seconds`."""
    s.settimeout(seconds)
    chunks = []
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        pass
    s.settimeout(IO_TIMEOUT)
    return b"".join(chunks)


def read_to_close(s):
    """Everything up to the peer's close; fails if it does not close within IO_TIMEOUT."""
    chunks = []
    try:
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
    except socket.timeout:
        raise AssertionError(f"not closed by the server; got {b''.join(chunks)!r}") from None
    return b"".join(chunks)


def fill_without_reading(s, data, give_up_seconds):
    """Sends as much of `data` as the peer takes while this side reads nothing; stops when
    nothing more went out for a second, or after give_up_seconds. Returns the bytes sent."""
    s.setblocking(False)
    sent = 0
    last_progress = time.monotonic()
    deadline = last_progress + give_up_seconds
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < deadline and time.monotonic() - last_progress < 1:
        _, writable, _ = select.select([], [s], [], 0.1)
        if not writable:
            continue
        try:
            n = s.send(view[sent:sent + (1 << 20)])
        except BlockingIOError:
            continue
        if n > 0:
            sent += n
            last_progress = time.monotonic()
    s.settimeout(IO_TIMEOUT)
    return sent


class UringTestCase(unittest.TestCase):
    def setUp(self):
        why = io_uring_unavailable()
        if why:
            self.skipTest(f"io_uring unavailable here: {why}")
        self.servers = []

    def tearDown(self):
        for server in self.servers:
            server.stop()

    def start(self, name, *flags):
        server = Server(name, *flags)
        self.servers.append(server)
        return server


# A client that stops reading: what one connection may make the server hold, at most.
# Kernel socket buffers (up to tcp_rmem's and tcp_wmem's maxima, 32 + 4 MiB by default
# on each side) take most of what such a client gets to send; the server's own output
# queue is bounded by uring_base.h's kPendingLimit plus one read.
SLOW_READER_DATA = 256 << 20
SLOW_READER_MAX_SENT = 96 << 20
# Sanitizers shadow every byte the server touches: its RSS grows several times as much.
SLOW_READER_MAX_RSS_GROWTH_KB = (160 if os.environ.get("ISLET_SANITIZER") else 48) << 10


class UringEchoTest(UringTestCase):
    def test_round_trips_of_many_sizes(self):
        server = self.start("uring_echo")
        with server.connect() as s:
            for i, size in enumerate((1, 2, 63, 64, 1000, 4096, 16383, 16384, 16385, 65536, 100_003,
                                      1 << 20, 3 << 20)):
                data = pattern(size, i)
                self.assertEqual(round_trip(s, data), data, f"{size} bytes")

    def test_pipelined_messages(self):
        server = self.start("uring_echo")
        with server.connect() as s:
            messages = [pattern(64 + i * 37, i) for i in range(300)]
            data = b"".join(messages)
            s.sendall(data)  # all at once, before reading any reply
            self.assertEqual(recv_exactly(s, len(data)), data)

    def test_many_connections_on_two_threads(self):
        server = self.start("uring_echo", "--threads=2")
        conns = [server.connect() for _ in range(400)]
        try:
            for rounds in range(3):
                for i, s in enumerate(conns):
                    s.sendall(pattern(100, i + rounds))
                for i, s in enumerate(conns):
                    self.assertEqual(recv_exactly(s, 100), pattern(100, i + rounds),
                                     f"connection {i}")
        finally:
            for s in conns:
                s.close()
        with server.connect() as s:  # closed connections left nothing wedged
            self.assertEqual(round_trip(s, b"after"), b"after")

    def test_a_client_that_does_not_read(self):
        server = self.start("uring_echo")
        rss_before = server.rss_kb()
        data = pattern(SLOW_READER_DATA, 7)
        with server.connect() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            sent = fill_without_reading(slow, data, give_up_seconds=15)
            growth = server.rss_kb() - rss_before
            print(f"uring_echo: a client that does not read got {sent >> 20} MiB in; server RSS "
                  f"{growth:+d} kB", file=sys.stderr)
            self.assertGreater(sent, 1 << 20, "the server took almost nothing before pausing")
            self.assertLess(sent, SLOW_READER_MAX_SENT,
                            "the server kept reading a client that does not read")
            self.assertLess(growth, SLOW_READER_MAX_RSS_GROWTH_KB, f"server RSS grew {growth} kB")
            # Others are still served meanwhile.
            with server.connect() as other:
                self.assertEqual(round_trip(other, pattern(5000, 1)), pattern(5000, 1))
            # Once the client reads, everything it sent comes back, in order, and the
            # connection goes on.
            self.assertEqual(recv_exactly(slow, sent), data[:sent])
            self.assertEqual(round_trip(slow, b"and again"), b"and again")
        self.assertTrue(server.alive())

    def test_output_owed_to_a_half_closed_client(self):
        server = self.start("uring_echo")
        data = pattern(4 << 20, 3)
        self.assertEqual(half_close_then_read(server, data), data)

    def test_an_empty_buffer_ring(self):
        # Two provided buffers for 200 connections that all send at once: recvs end with
        # -ENOBUFS all the time and must be armed again once buffers come back.
        server = self.start("uring_echo", "--buffers=2")
        conns = [server.connect() for _ in range(200)]
        try:
            for rounds in range(3):
                for i, s in enumerate(conns):
                    s.sendall(pattern(3000, i + rounds))
                for i, s in enumerate(conns):
                    self.assertEqual(recv_exactly(s, 3000), pattern(3000, i + rounds), f"connection {i}")
        finally:
            for s in conns:
                s.close()

    def test_every_feature_turned_off(self):
        for flags in (["--accept=oneshot"], ["--accept=poll"], ["--peer_address=getpeername"],
                      ["--recv=oneshot"], ["--send=syscall"], ["--submit=split"],
                      ["--fixed_files=off"], ["--register_ring=off"], ["--setup=coop"], ["--setup=none"],
                      ["--accept=oneshot", "--recv=oneshot", "--send=syscall", "--submit=split",
                       "--register_ring=off", "--setup=none"]):
            with self.subTest(flags=flags):
                server = self.start("uring_echo", *flags)
                with server.connect() as s:
                    for size in (64, 16385, 1 << 20):
                        self.assertEqual(round_trip(s, pattern(size, size)), pattern(size, size))
                    s.sendall(b"x" * 64 * 16)
                    self.assertEqual(recv_exactly(s, 64 * 16), b"x" * 64 * 16)
                server.stop()
                self.servers.remove(server)


class UringHttpTest(UringTestCase):
    def replies(self, server, requests, split=False):
        with server.connect() as s:
            if split:  # every byte on its own: "\r\n\r\n" spans reads
                for b in requests:
                    s.sendall(bytes([b]))
            else:
                s.sendall(requests)
            s.shutdown(socket.SHUT_WR)
            return read_available(s, 2)

    def test_the_bytes_of_epoll_http(self):
        uring = self.start("uring_http")
        epoll = self.start("epoll_http")
        one = self.replies(epoll, REQUEST)
        self.assertTrue(one.startswith(b"HTTP/1.1 200 OK\r\n"), one)
        self.assertTrue(one.endswith(b"\r\n\r\nHello world!"), one)
        for requests, split in ((REQUEST, False), (REQUEST * 3, True), (REQUEST * 1000, False)):
            with self.subTest(requests=len(requests), split=split):
                got = self.replies(uring, requests, split)
                self.assertEqual(len(got), len(one) * requests.count(b"\r\n\r\n"))
                self.assertEqual(got, self.replies(epoll, requests, split))

    def test_connection_close(self):
        """The churn case's requests: the answer says Connection: close, and the server
        closes after it (the client does not close first), on either floor and with the
        io_uring features that touch accepting and closing turned off."""
        keep = self.replies(self.start("epoll_http"), REQUEST)
        for name, flags in (("epoll_http", []), ("uring_http", []), ("uring_http", ["--accept=oneshot"]),
                            ("uring_http", ["--accept=poll"]), ("uring_http", ["--peer_address=getpeername"]),
                            ("uring_http", ["--fixed_files=off"]), ("uring_http", ["--send=syscall"])):
            with self.subTest(server=name, flags=flags):
                server = self.start(name, *flags)
                for requests in (CLOSE_REQUEST, REQUEST * 2 + CLOSE_REQUEST):
                    for _ in range(20):
                        with server.connect() as s:
                            s.sendall(requests)
                            got = read_to_close(s)
                        kept = requests.count(b"\r\n\r\n") - 1
                        self.assertEqual(got[:len(keep) * kept], keep * kept)
                        closing = got[len(keep) * kept:]
                        self.assertIn(b"\r\nConnection: close\r\n", closing)
                        self.assertEqual(closing.replace(b"Connection: close\r\n", b""), keep)
                server.stop()
                self.servers.remove(server)

    def test_output_owed_to_a_half_closed_client(self):
        server = self.start("uring_http")
        one = self.replies(server, REQUEST)
        self.assertEqual(half_close_then_read(server, REQUEST * 20000), one * 20000)

    def test_keep_alive_on_many_connections(self):
        server = self.start("uring_http", "--threads=2")
        one = self.replies(server, REQUEST)
        conns = [server.connect() for _ in range(300)]
        try:
            for _ in range(3):
                for s in conns:
                    s.sendall(REQUEST)
                for s in conns:
                    self.assertEqual(recv_exactly(s, len(one)), one)
        finally:
            for s in conns:
                s.close()

    def test_a_client_that_does_not_read(self):
        server = self.start("uring_http")
        one = self.replies(server, REQUEST)
        rss_before = server.rss_kb()
        requests = REQUEST * (SLOW_READER_DATA // len(REQUEST) // 4)
        with server.connect() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            sent = fill_without_reading(slow, requests, give_up_seconds=15)
            growth = server.rss_kb() - rss_before
            print(f"uring_http: a client that does not read got {sent >> 20} MiB of requests in; "
                  f"server RSS {growth:+d} kB", file=sys.stderr)
            self.assertLess(sent, len(requests), "the server kept reading a client that does not read")
            self.assertLess(growth, SLOW_READER_MAX_RSS_GROWTH_KB, f"server RSS grew {growth} kB")
            answered = sent // len(REQUEST)
            self.assertEqual(recv_exactly(slow, answered * len(one)), one * answered)
        self.assertTrue(server.alive())


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        BIN_DIR = sys.argv.pop(1)
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
