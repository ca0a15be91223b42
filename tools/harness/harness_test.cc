// End-to-end tests of the harness binary, driven as a subprocess exactly as scripts drive
// it: the listening line on stdout, exit 2 with one line on stderr for bad input, the
// SIGTERM/SIGINT drain and the second-signal exit, each example handler over loopback,
// curl against http_hello, the default 127.0.0.1:4000, unix sockets and --log.
//
// Every server listens on --port=0 (the kernel's choice, parsed from the listening
// line) except the default-port test, which skips when 4000 is busy. Every wait has a
// generous deadline, and every child is killed at the end of its test (Subprocess's
// destructor), pass or fail.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"
#include "tools/harness/harness_test_util.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet::harness {
namespace {

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

std::unique_ptr<TcpSocket> Connect(const SocketInfo& where) {
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(where, kIoTimeout);
  EXPECT_TRUE(client.ok()) << "connect " << where.ToString() << ": " << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

// Reads until the peer closes or `timeout` passes: everything received, and the status
// that ended it (OutOfRange for an orderly close, EOF; Aborted for a reset).
struct ReadToEnd {
  std::string data;
  absl::Status end;
  bool orderly_close() const { return IsPeerClosed(end); }
};

ReadToEnd ReadUntilClosed(Socket& socket, absl::Duration timeout = kIoTimeout) {
  ReadToEnd out;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<std::string> got =
        socket.Recv(0, std::max(absl::ZeroDuration(), deadline - absl::Now()));
    if (!got.ok()) {
      out.end = got.status();
      return out;
    }
    out.data += *got;
  }
}

// The next line (with its "\n") from `socket`, keeping what follows in `buffer`.
absl::StatusOr<std::string> RecvLine(Socket& socket, std::string& buffer, absl::Time deadline) {
  for (;;) {
    if (size_t nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl + 1);
      buffer.erase(0, nl + 1);
      return line;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no whole line yet");
    absl::StatusOr<std::string> got = socket.Recv(0, left);
    if (!got.ok()) return got.status();
    buffer += *got;
  }
}

struct HttpResponse {
  std::string status_line;
  std::string head;  // status line and headers
  std::string body;
};

// One response framed by Content-Length; what follows stays in `buffer`.
absl::StatusOr<HttpResponse> RecvHttpResponse(Socket& socket, std::string& buffer,
                                              absl::Time deadline) {
  size_t head_end;
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no response head");
    absl::StatusOr<std::string> got = socket.Recv(0, left);
    if (!got.ok()) return got.status();
    buffer += *got;
  }
  HttpResponse r;
  r.head = buffer.substr(0, head_end);
  r.status_line = r.head.substr(0, r.head.find("\r\n"));
  uint64_t length = 0;
  bool has_length = false;
  for (absl::string_view line : absl::StrSplit(r.head, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(line.substr(0, colon), "content-length")) {
      has_length =
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &length);
    }
  }
  if (!has_length) return absl::InternalError(absl::StrCat("no Content-Length in: ", r.head));
  buffer.erase(0, head_end + 4);
  while (buffer.size() < length) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("short body");
    absl::StatusOr<std::string> got = socket.Recv(0, left);
    if (!got.ok()) return got.status();
    buffer += *got;
  }
  r.body = buffer.substr(0, length);
  buffer.erase(0, length);
  return r;
}

// 0 when a connection to 127.0.0.1:port is established, otherwise the errno
// (ECONNREFUSED when nothing listens; ETIMEDOUT when nothing answered in time).
int ConnectErrno(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p = {fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kIoTimeout))) <= 0) {
    return ETIMEDOUT;
  }
  int error = 0;
  socklen_t len = sizeof(error);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
  return error;
}

// Connects to an echo server and sends until the connection is stuck: the client never
// reads, so the server's output queue and every socket buffer on the way fill up and
// the server cannot drain this connection.
UniqueFd FloodWithoutReading(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid()) << strerror(errno);
  if (!fd) return fd;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect: " << strerror(errno);
    return UniqueFd();
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  const std::string chunk(64 * 1024, 'x');
  uint64_t sent = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  // Stuck means: no room to write for half a second. 512 MB is far beyond every buffer.
  while (sent < (512u << 20) && absl::Now() < deadline) {
    pollfd p = {fd.get(), POLLOUT, 0};
    if (::poll(&p, 1, 500) == 0) break;
    ssize_t n = ::send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<uint64_t>(n);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      ADD_FAILURE() << "send: " << strerror(errno);
      break;
    }
  }
  EXPECT_GT(sent, 1u << 20) << "the flood should fill more than the server's high water";
  return fd;
}

// Connects until refused (the listener is closed) or `timeout` passes. Connections that
// get through meanwhile (the signal not handled yet) are closed again; one caught in the
// backlog as the listener closes is reset (ECONNRESET).
bool WaitUntilRefused(uint16_t port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const int err = ConnectErrno(port);
    if (err == ECONNREFUSED) return true;
    EXPECT_TRUE(err == 0 || err == ETIMEDOUT || err == ECONNRESET) << "connect: " << strerror(err);
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

void ExpectEchoes(Socket& client, absl::string_view text) {
  ASSERT_TRUE(client.Send(text).ok());
  absl::StatusOr<std::string> back = client.Recv(text.size(), kIoTimeout);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, text);
}

// ---- Exit 2 with one line ----

class UsageErrorTest : public testing::TestWithParam<std::vector<std::string>> {};

TEST(ProxyProtocolFlagsTest, ErrorsNameTheFlagAndValue) {
  auto error = [](const std::vector<std::string>& flags) {
    return std::string(absl::StripTrailingAsciiWhitespace(ExpectUsageError(flags)));
  };
  EXPECT_EQ(error({"--port=0", "--proxy_protocol=v3", "--proxy_trusted=::1"}),
            "harness: --proxy_protocol: \"v3\" is not one of off, v1, v2, any");
  EXPECT_EQ(error({"--port=0", "--proxy_protocol=v2"}),
            "harness: --proxy_trusted: is required with --proxy_protocol: the balancers' networks");
  EXPECT_EQ(error({"--port=0", "--proxy_protocol=v1", "--proxy_trusted=10.0.0.0/33"}),
            "harness: --proxy_trusted: \"10.0.0.0/33\": prefix length above 32");
  EXPECT_EQ(error({"--port=0", "--proxy_optional"}),
            "harness: --proxy_optional: needs --proxy_protocol");
}

TEST_P(UsageErrorTest, ExitsTwoWithOneLineOnStderrAndNothingOnStdout) {
  // --port=0 first: should the harness wrongly start, it takes no fixed port.
  std::vector<std::string> flags = {"--port=0"};
  flags.insert(flags.end(), GetParam().begin(), GetParam().end());
  ExpectUsageError(flags);
}

INSTANTIATE_TEST_SUITE_P(
    BadInput, UsageErrorTest,
    testing::Values(std::vector<std::string>{"--proxy_protocol=v3", "--proxy_trusted=::1"},
                    std::vector<std::string>{"--proxy_protocol=v2"},
                    std::vector<std::string>{"--proxy_protocol=any", "--proxy_trusted=10.0.0.0/33"},
                    std::vector<std::string>{"--proxy_trusted=127.0.0.1"},
                    std::vector<std::string>{"--proxy_optional"},
                    std::vector<std::string>{"--no_such_flag=1"},
                    std::vector<std::string>{"--no_such_flag"},
                    std::vector<std::string>{"not-a-flag"},
                    std::vector<std::string>{"--handler=nope"},
                    std::vector<std::string>{"--read_timeout=5x"},
                    std::vector<std::string>{"--shutdown_timeout=soon"},
                    std::vector<std::string>{"--port=abc"},
                    std::vector<std::string>{"--port=65536"},
                    std::vector<std::string>{"--num_workers=many"},
                    std::vector<std::string>{"--event_loop=kqueue"},
                    std::vector<std::string>{"--transport=carrier-pigeon"},
                    std::vector<std::string>{"--transport=tls"},
                    std::vector<std::string>{"--transport=tls", "--certfile=/nonexistent",
                                             "--keyfile=/nonexistent"},
                    std::vector<std::string>{"--log=bogus"},
                    std::vector<std::string>{"--port"},  // no value
                    std::vector<std::string>{"--ip=bogus"},
                    std::vector<std::string>{"--num_workers=-3"},
                    std::vector<std::string>{"--max_connections=0"},
                    std::vector<std::string>{"--descriptor_reserve=-1"},
                    std::vector<std::string>{"--max_connections_per_peer=-2"},
                    std::vector<std::string>{"--max_pending_messages=0"},
                    std::vector<std::string>{"--output_budget=-1"},
                    std::vector<std::string>{"--linger_timeout=-1s"},
                    std::vector<std::string>{"--head_timeout=0s"},
                    std::vector<std::string>{"--handler=proxy"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=nowhere"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=127.0.0.1:0"},
                    std::vector<std::string>{"--upstream=127.0.0.1:80"},
                    std::vector<std::string>{"--upstream_tls"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=127.0.0.1:80",
                                             "--upstream_tls=maybe"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=127.0.0.1:80",
                                             "--upstream_cacertfile=/etc/ssl/certs/x.pem"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=127.0.0.1:80",
                                             "--upstream_server_name=localhost"},
                    std::vector<std::string>{"--handler=proxy", "--upstream=127.0.0.1:80",
                                             "--upstream_tls",
                                             "--upstream_cacertfile=/nonexistent/ca.pem"},
                    std::vector<std::string>{"--overload_scale_from=0"},
                    std::vector<std::string>{"--overload_scale_from=1.5"},
                    std::vector<std::string>{"--overload_timeout_floor=0s"},
                    std::vector<std::string>{"--unix_socket=/nonexistent/dir/h.sock"},
                    // Newlines in what the message quotes still make one line.
                    std::vector<std::string>{"--handler=a\nb"},
                    std::vector<std::string>{"--read_timeout=5\nx"},
                    std::vector<std::string>{"--no_such\nflag=1"},
                    std::vector<std::string>{"--log=de\nbug\n"}));

TEST(HarnessTest, PortInUseExitsTwoWithOneLine) {
  UniqueFd occupant(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(occupant.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(occupant.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(occupant.get(), 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(occupant.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  // Whatever the log level: no log line may come before the error's.
  for (const char* log : {"--log=info", "--log=debug", "--log=off"}) {
    ExpectUsageError({absl::StrCat("--port=", ntohs(addr.sin_port)), log});
  }
}

// A unix socket path short enough for sun_path (108 bytes), in TEST_TMPDIR when it is.
std::string UnixSocketPath() {
  static int counter = 0;
  const std::string name = absl::StrCat("h", ::getpid(), "_", ++counter, ".sock");
  if (const char* tmp = std::getenv("TEST_TMPDIR")) {
    std::string path = absl::StrCat(tmp, "/", name);
    if (path.size() < 100) return path;
  }
  return absl::StrCat("/tmp/islet_", name);
}

TEST(HarnessTest, UnixSocketInUseExitsTwoWithOneLine) {
  const std::string path = UnixSocketPath();
  ::unlink(path.c_str());
  UniqueFd occupant(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(occupant.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(occupant.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << strerror(errno);
  ASSERT_EQ(::listen(occupant.get(), 16), 0);
  ExpectUsageError({absl::StrCat("--unix_socket=", path)});
  occupant.reset();
  ::unlink(path.c_str());
}

// ---- The listening line ----

TEST(HarnessTest, ListeningLineNamesHostAndPortAndEchoServes) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0"}, &h));
  EXPECT_TRUE(absl::StrContains(h.line, absl::StrCat("127.0.0.1:", h.port))) << h.line;
  auto client = Connect(Loopback(h.port));
  ASSERT_NE(client, nullptr);
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "hello harness\n"));
  EXPECT_EQ(h.process->Stdout(), h.line + "\n") << "one line on stdout, nothing more";
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// The stderr line naming the loop, for each choice; io_uring where the kernel allows it,
// else one clear line and exit 2 (no silent fallback to epoll).
TEST(HarnessTest, EventLoopFlagChoosesTheLoopAndTheLogSaysWhich) {
  for (const char* loop : {"epoll", "io_uring"}) {
    SCOPED_TRACE(loop);
    std::optional<std::string> refused;
    if (std::string(loop) == "io_uring") {
      CommandResult probe = RunCommand({"server/io_uring_probe"});
      if (probe.exit_code == 77) refused = probe.output;
    }
    if (refused.has_value()) {
      const std::string line = ExpectUsageError({"--port=0", "--event_loop=io_uring"});
      EXPECT_TRUE(absl::StrContains(line, "io_uring")) << line;
      continue;
    }
    Harness h;
    ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", absl::StrCat("--event_loop=", loop)}, &h));
    const std::string said = absl::StrCat("harness: event loop: ", loop);
    EXPECT_TRUE(h.process->WaitForStderr(
        [&](absl::string_view err) { return absl::StrContains(err, said); }, kExitTimeout))
        << Describe(*h.process);
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "over the chosen loop\n"));
    ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  }
}

// ---- Signals ----

class StopSignalTest : public testing::TestWithParam<int> {};

TEST_P(StopSignalTest, ClosesListenerAtOnceDrainsThenExitsZero) {
  const int sig = GetParam();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--shutdown_timeout=2s"}, &h));

  // An idle client (its echo done) and one that cannot drain: it never reads.
  auto idle = Connect(Loopback(h.port));
  ASSERT_NE(idle, nullptr);
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*idle, "before the signal\n"));
  UniqueFd stuck = FloodWithoutReading(h.port);
  ASSERT_TRUE(stuck.valid());
  ASSERT_TRUE(h.process->Running()) << Describe(*h.process);

  const absl::Time signalled = absl::Now();
  ASSERT_TRUE(h.process->Signal(sig));
  // The listener closes at once: new connects are refused while the stuck
  // connection still holds the drain open (for up to --shutdown_timeout).
  EXPECT_TRUE(WaitUntilRefused(h.port, kIoTimeout))
      << "connects still accepted after " << strsignal(sig) << Describe(*h.process);
  EXPECT_TRUE(h.process->Running())
      << "the listener should close at once, before the drain ends" << Describe(*h.process);

  // The idle connection gets its shutdown and an orderly close (EOF, not a reset).
  ReadToEnd idle_end = ReadUntilClosed(*idle);
  EXPECT_EQ(idle_end.data, "");
  EXPECT_TRUE(idle_end.orderly_close()) << idle_end.end;

  // The stuck connection is given up at the shutdown timeout; then exit 0.
  std::optional<Subprocess::Exit> exit = h.process->Wait(kExitTimeout);
  ASSERT_TRUE(exit.has_value()) << "still running " << absl::Now() - signalled << " after "
                                << strsignal(sig) << " with --shutdown_timeout=2s"
                                << Describe(*h.process);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(*h.process);
}

TEST_P(StopSignalTest, IdleConnectionsOnlyExitsZeroPromptly) {
  const int sig = GetParam();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--shutdown_timeout=2s"}, &h));
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Connect(Loopback(h.port)));
    ASSERT_NE(clients.back(), nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*clients.back(), absl::StrCat("client ", i, "\n")));
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process, sig));
  for (auto& client : clients) {
    ReadToEnd end = ReadUntilClosed(*client);
    EXPECT_TRUE(end.orderly_close()) << end.end;
  }
}

INSTANTIATE_TEST_SUITE_P(TermAndInt, StopSignalTest, testing::Values(SIGTERM, SIGINT),
                         [](const testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGTERM ? "SIGTERM" : "SIGINT");
                         });

class SecondSignalTest : public testing::TestWithParam<std::pair<int, int>> {};

TEST_P(SecondSignalTest, SecondSignalWhileDrainingExitsAtOnceNonzero) {
  const auto [first, second] = GetParam();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--shutdown_timeout=30s"}, &h));
  UniqueFd stuck = FloodWithoutReading(h.port);
  ASSERT_TRUE(stuck.valid());

  ASSERT_TRUE(h.process->Signal(first));
  // Refused connects prove the first signal was taken and the drain has begun, so the
  // second one cannot merge with the first while both are pending.
  ASSERT_TRUE(WaitUntilRefused(h.port, kIoTimeout)) << Describe(*h.process);
  ASSERT_TRUE(h.process->Running()) << "the stuck connection should hold the drain open"
                                    << Describe(*h.process);
  ASSERT_TRUE(h.process->Signal(second));
  // Well under the 30 s drain: the second signal cut it short.
  std::optional<Subprocess::Exit> exit = h.process->Wait(kExitTimeout);
  ASSERT_TRUE(exit.has_value()) << "a second " << strsignal(second)
                                << " did not stop the drain" << Describe(*h.process);
  EXPECT_TRUE(exit->exited && exit->code != 0) << exit->ToString() << Describe(*h.process);
}

INSTANTIATE_TEST_SUITE_P(
    Pairs, SecondSignalTest,
    testing::Values(std::pair{SIGTERM, SIGTERM}, std::pair{SIGINT, SIGINT},
                    std::pair{SIGTERM, SIGINT}),
    [](const testing::TestParamInfo<std::pair<int, int>>& info) {
      auto name = [](int s) { return s == SIGTERM ? "TERM" : "INT"; };
      return absl::StrCat(name(info.param.first), "then", name(info.param.second));
    });

// ---- Handlers ----

TEST(HarnessTest, EchoReturnsEveryByte) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=echo", "--port=0"}, &h));
  std::string big(256 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  for (int c = 0; c < 2; ++c) {
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "hello\n"));
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, big));
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

TEST(HarnessTest, DaytimeSendsTheDateThenClosesInOrder) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=daytime", "--port=0"}, &h));
  for (int c = 0; c < 3; ++c) {
    const absl::Time before = absl::Now();
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ReadToEnd got = ReadUntilClosed(*client);
    const absl::Time after = absl::Now();
    EXPECT_TRUE(got.orderly_close()) << "want EOF, not a reset: " << got.end;
    ExpectOneLine(got.data);
    // The date in UTC, from either side of the connection (midnight may pass).
    auto date = [](absl::Time t) {
      return absl::FormatTime("%B %d, %Y", t, absl::UTCTimeZone());
    };
    EXPECT_TRUE(absl::StrContains(got.data, date(before)) ||
                absl::StrContains(got.data, date(after)))
        << "\"" << absl::CEscape(got.data) << "\" lacks " << date(before);
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

constexpr absl::string_view kGet = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

TEST(HarnessTest, HttpHelloKeepAlive) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0"}, &h));
  auto client = Connect(Loopback(h.port));
  ASSERT_NE(client, nullptr);
  std::string buffer;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client->Send(kGet).ok());
    absl::StatusOr<HttpResponse> r =
        RecvHttpResponse(*client, buffer, absl::Now() + kIoTimeout);
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.status();
    EXPECT_EQ(r->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(r->body, "Hello world!");
    EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(r->head), "connection: close"));
  }
  EXPECT_EQ(buffer, "");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

TEST(HarnessTest, HttpHelloPipelinedRequests) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0"}, &h));
  auto client = Connect(Loopback(h.port));
  ASSERT_NE(client, nullptr);
  constexpr int kRequests = 5;
  std::string pipelined;
  for (int i = 0; i < kRequests; ++i) {
    absl::StrAppend(&pipelined, "GET /", i, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }
  ASSERT_TRUE(client->Send(pipelined).ok());
  std::string buffer;
  for (int i = 0; i < kRequests; ++i) {
    absl::StatusOr<HttpResponse> r =
        RecvHttpResponse(*client, buffer, absl::Now() + kIoTimeout);
    ASSERT_TRUE(r.ok()) << "response " << i << ": " << r.status();
    EXPECT_EQ(r->status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(r->body, "Hello world!");
  }
  // Nothing more: exactly one response per request.
  absl::StatusOr<std::string> extra = client->Recv(0, absl::Milliseconds(200));
  EXPECT_TRUE(!extra.ok() && IsTimeout(extra.status()))
      << (extra.ok() ? absl::CEscape(*extra) : extra.status().ToString());
  EXPECT_EQ(buffer, "");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// A bad line is refused as soon as it is complete: no blank line follows it here.
TEST(HarnessTest, HttpHelloMalformedRequestGetsAnErrorBeforeTheClose) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0"}, &h));
  const std::pair<absl::string_view, absl::string_view> cases[] = {
      {"THIS IS NOT HTTP\r\n", "HTTP/1.1 400"},
      {"GET / HTTP/9.9\r\n", "HTTP/1.1 505"},
      {"GET / HTTP/1.1\r\nno colon here\r\n", "HTTP/1.1 400"},
  };
  for (const auto& [bad, status] : cases) {
    SCOPED_TRACE(absl::CEscape(bad));
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Send(bad).ok());
    ReadToEnd got = ReadUntilClosed(*client);
    EXPECT_TRUE(absl::StartsWith(got.data, status)) << absl::CEscape(got.data);
    EXPECT_TRUE(got.orderly_close()) << got.end;
  }
  // A good request after a good one, then a bad one on the same connection.
  auto client = Connect(Loopback(h.port));
  ASSERT_NE(client, nullptr);
  std::string buffer;
  ASSERT_TRUE(client->Send(kGet).ok());
  absl::StatusOr<HttpResponse> ok = RecvHttpResponse(*client, buffer, absl::Now() + kIoTimeout);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->body, "Hello world!");
  ASSERT_TRUE(client->Send("BROKEN\r\n\r\n").ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(absl::StartsWith(buffer + got.data, "HTTP/1.1 400"))
      << absl::CEscape(buffer + got.data);
  EXPECT_TRUE(got.orderly_close()) << got.end;
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// Messenger clients with what each has received but not yet consumed.
struct Chat {
  std::vector<std::unique_ptr<TcpSocket>> clients;
  std::vector<std::string> buffers;
  std::vector<std::string> names;       // "127.0.0.1:PORT", as the server names them
  std::map<std::string, size_t> sent;   // every text sent, and who sent it
  int serial = 0;
};

// Checks one received line against everything sent: "NAME: TEXT\n" where NAME is the
// sender's and the sender is not `receiver`. Returns the text.
std::string CheckChatLine(const Chat& chat, size_t receiver, const std::string& line) {
  for (const auto& [text, from] : chat.sent) {
    if (line == absl::StrCat(chat.names[from], ": ", text, "\n")) {
      EXPECT_NE(from, receiver) << "the sender got its own line: " << absl::CEscape(line);
      return text;
    }
  }
  ADD_FAILURE() << "client " << receiver << " got a line nobody sent (want \"NAME: TEXT\\n\"): "
                << absl::CEscape(line);
  return "";
}

// Client `from` sends a line until every other client has received one of its lines:
// joins are asynchronous, so a first line may reach only some of them. A fresh, unique
// line is sent each second, for up to 10 s.
void ExpectBroadcast(Chat& chat, size_t from) {
  const size_t n = chat.clients.size();
  std::vector<bool> got(n, false);
  got[from] = true;
  std::vector<std::string> mine;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto all = [&] { return std::all_of(got.begin(), got.end(), [](bool b) { return b; }); };
  while (!all() && absl::Now() < deadline) {
    const std::string text = absl::StrCat("line ", ++chat.serial, " from client ", from);
    chat.sent[text] = from;
    mine.push_back(text);
    ASSERT_TRUE(chat.clients[from]->Send(text + "\n").ok());
    const absl::Time attempt_end = std::min(absl::Now() + absl::Seconds(1), deadline);
    for (size_t i = 0; i < n; ++i) {
      while (!got[i]) {
        absl::StatusOr<std::string> line = RecvLine(*chat.clients[i], chat.buffers[i], attempt_end);
        if (!line.ok()) {
          ASSERT_TRUE(IsTimeout(line.status())) << "client " << i << ": " << line.status();
          break;
        }
        const std::string text_got = CheckChatLine(chat, i, *line);
        if (std::find(mine.begin(), mine.end(), text_got) != mine.end()) got[i] = true;
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    EXPECT_TRUE(got[i]) << "client " << i << " never got a line from client " << from;
  }
}

TEST(HarnessTest, ProxyRelaysToItsUpstream) {
  Harness upstream;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0"}, &upstream));
  Harness proxy;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--port=0", "--handler=proxy", absl::StrCat("--upstream=127.0.0.1:", upstream.port)},
      &proxy));
  auto client = Connect(Loopback(proxy.port));
  ASSERT_NE(client, nullptr);
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "through the proxy\n"));
  client.reset();
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*proxy.process));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*upstream.process));
}

TEST(HarnessTest, MessengerLineReachesEveryOtherClient) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=messenger", "--port=0"}, &h));
  Chat chat;
  for (int i = 0; i < 3; ++i) {
    chat.clients.push_back(Connect(Loopback(h.port)));
    ASSERT_NE(chat.clients.back(), nullptr);
    absl::StatusOr<SocketInfo> local = chat.clients.back()->LocalInfo();
    ASSERT_TRUE(local.ok()) << local.status();
    chat.names.push_back(local->ToString());
    chat.buffers.emplace_back();
  }
  for (size_t from : {0u, 2u, 1u}) {
    SCOPED_TRACE(absl::StrCat("from client ", from));
    ASSERT_NO_FATAL_FAILURE(ExpectBroadcast(chat, from));
  }
  // Whatever is still arriving (repeats sent while others joined) is checked as well:
  // right sender, never one's own line.
  for (size_t i = 0; i < chat.clients.size(); ++i) {
    const absl::Time until = absl::Now() + absl::Milliseconds(300);
    for (;;) {
      absl::StatusOr<std::string> line = RecvLine(*chat.clients[i], chat.buffers[i], until);
      if (!line.ok()) break;
      CheckChatLine(chat, i, *line);
    }
    EXPECT_EQ(chat.buffers[i], "") << "a partial line at client " << i;
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- curl ----

constexpr char kCurl[] = "/usr/bin/curl";

// Runs curl with `args` (no proxy from the environment) and returns its stdout.
void RunCurl(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv = {kCurl};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = absl::AsciiStrToLower(absl::string_view(*e).substr(
        0, absl::string_view(*e).find('=')));
    if (absl::EndsWith(var, "_proxy")) continue;
    env.emplace_back(*e);
  }
  SCOPED_TRACE(absl::StrJoin(argv, " "));
  absl::StatusOr<std::unique_ptr<Subprocess>> curl = Subprocess::Start(argv, env);
  ASSERT_TRUE(curl.ok()) << curl.status();
  std::optional<Subprocess::Exit> exit = (*curl)->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value()) << "curl hangs" << Describe(**curl);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(**curl);
  *out = (*curl)->Stdout();
}

TEST(HarnessTest, CurlGetsHelloWorldWithKeepAlive) {
  if (::access(kCurl, X_OK) != 0) {
    GTEST_SKIP() << kCurl << " is missing: install curl (tools/setup.sh lists it)";
  }
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0"}, &h));
  const std::string base = absl::StrCat("http://127.0.0.1:", h.port);
  std::string out;
  ASSERT_NO_FATAL_FAILURE(RunCurl({"-s", base + "/"}, &out));
  EXPECT_EQ(out, "Hello world!");
  ASSERT_NO_FATAL_FAILURE(RunCurl({"-s", "--http1.1", base + "/a", base + "/b"}, &out));
  EXPECT_EQ(out, "Hello world!Hello world!");
  // The second transfer reused the first one's connection: no new connect.
  ASSERT_NO_FATAL_FAILURE(RunCurl(
      {"-s", "--http1.1", "-w", " connects=%{num_connects}\n", base + "/a", base + "/b"}, &out));
  EXPECT_EQ(out, "Hello world! connects=1\nHello world! connects=0\n");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- Defaults, unix sockets, logging ----

TEST(HarnessTest, DefaultsToEchoOnLoopbackPort4000) {
  // Concurrent runs of this test take turns on port 4000 (best effort).
  UniqueFd lock(::open("/tmp/islet_harness_test_port_4000.lock", O_CREAT | O_RDWR | O_CLOEXEC,
                       0666));
  if (lock.valid()) ::flock(lock.get(), LOCK_EX);
  {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(probe.valid());
    const int one = 1;
    ::setsockopt(probe.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(4000);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      GTEST_SKIP() << "127.0.0.1:4000 is busy: " << strerror(errno);
    }
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start({HarnessPath()});
  ASSERT_TRUE(child.ok()) << child.status();
  Subprocess& harness = **child;
  const bool got_line = harness.WaitForStdout(
      [](absl::string_view s) { return absl::StrContains(s, "\n"); }, kStartTimeout);
  if (!got_line) {
    std::optional<Subprocess::Exit> exit = harness.Wait(kExitTimeout);
    if (exit.has_value() && exit->ExitedWith(2) &&
        absl::StrContains(harness.Stderr(), "in use")) {
      GTEST_SKIP() << "someone took 127.0.0.1:4000 after the probe: " << harness.Stderr();
    }
    FAIL() << "no listening line" << Describe(harness);
  }
  EXPECT_TRUE(absl::StrContains(harness.Stdout(), "127.0.0.1:4000")) << harness.Stdout();
  auto client = Connect(Loopback(4000));
  ASSERT_NE(client, nullptr);
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "default echo\n"));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(harness));
}

TEST(HarnessTest, UnixSocketServesEcho) {
  const std::string path = UnixSocketPath();
  ::unlink(path.c_str());
  Harness h;
  ASSERT_NO_FATAL_FAILURE(
      StartHarness({"--handler=echo", absl::StrCat("--unix_socket=", path)}, &h,
                   /*tcp_on_loopback=*/false));
  EXPECT_TRUE(absl::StrContains(h.line, path)) << h.line;
  for (int c = 0; c < 2; ++c) {
    auto client = Connect(SocketInfo{.family = AddressFamily::kUnix, .address = path});
    ASSERT_NE(client, nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "over a unix socket\n"));
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  ::unlink(path.c_str());
}

TEST(HarnessTest, LogDebugShowsConnectionEvents) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--log=debug"}, &h));
  {
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "logged\n"));
  }  // closed here
  const bool logged = h.process->WaitForStderr(
      [](absl::string_view s) {
        return absl::StrContains(s, "connection.start") && absl::StrContains(s, "connection.stop");
      },
      kIoTimeout);
  EXPECT_TRUE(logged) << Describe(*h.process);
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

TEST(HarnessTest, DefaultLogLevelHidesConnectionEvents) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0"}, &h));
  {
    auto client = Connect(Loopback(h.port));
    ASSERT_NE(client, nullptr);
    ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*client, "not logged\n"));
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  // After the exit every line is in: none is about a connection.
  EXPECT_FALSE(absl::StrContains(h.process->Stderr(), "connection.")) << h.process->Stderr();
}

TEST(HarnessTest, LogShowsOverloadStateChangesAndTheFlagsShedIdleConnections) {
  Harness h;
  // Two connections fill the cap; at it, the minute-long read timeout shrinks to the
  // floor's 200 ms, and the idle connections are closed.
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--num_workers=1", "--max_connections=2",
                                        "--read_timeout=60s", "--overload_scale_from=0.5",
                                        "--overload_timeout_floor=200ms"},
                                       &h));
  auto a = Connect(Loopback(h.port));
  auto b = Connect(Loopback(h.port));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*a, "a\n"));
  ASSERT_NO_FATAL_FAILURE(ExpectEchoes(*b, "b\n"));
  EXPECT_TRUE(ReadUntilClosed(*a).orderly_close());
  EXPECT_TRUE(ReadUntilClosed(*b).orderly_close());
  const bool logged = h.process->WaitForStderr(
      [](absl::string_view s) {
        return absl::StrContains(s, "warning server.overload") &&
               absl::StrContains(s, "state=saturated was=normal resource=connections") &&
               absl::StrContains(s, "state=normal was=saturated");
      },
      kIoTimeout);
  EXPECT_TRUE(logged) << Describe(*h.process);
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// The soft limit of open files is often 1024; the harness takes the hard limit.
TEST(HarnessTest, RaisesItsSoftDescriptorLimitToTheHardLimit) {
  rlimit ours{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max <= 256) GTEST_SKIP() << "the hard limit is too low to tell";
  // The child inherits a low soft limit; ours is restored at once.
  rlimit low = ours;
  low.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  Harness h;
  StartHarness({"--port=0"}, &h);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &ours), 0);
  ASSERT_NE(h.process, nullptr);

  std::ifstream limits(absl::StrCat("/proc/", h.process->pid(), "/limits"));
  std::string line;
  std::string found;
  while (std::getline(limits, line)) {
    if (absl::StartsWith(line, "Max open files")) found = line;
  }
  const std::vector<std::string> fields = absl::StrSplit(found, ' ', absl::SkipEmpty());
  ASSERT_GE(fields.size(), 5u) << found;
  EXPECT_EQ(fields[3], absl::StrCat(ours.rlim_max)) << found;  // the soft limit
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

}  // namespace
}  // namespace islet::harness
