// Tests of the TCP (and unix-domain) transport over real sockets on 127.0.0.1, [::1]
// and unix sockets in a fresh temporary directory.
//
// Every wait is bounded: blocking calls carry a generous deadline (10 s or more) that
// only a broken transport reaches, and calls that are supposed to time out use small
// timeouts whose error code, never their duration, is asserted.
#include "transport/tcp_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/errors.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Long enough that only a broken transport ever reaches it.
constexpr absl::Duration kGenerous = absl::Seconds(10);
constexpr std::chrono::seconds kGenerousChrono(10);
// For calls that are meant to time out.
constexpr absl::Duration kShort = absl::Milliseconds(100);

// ---- Temporary directory for unix sockets and files ---------------------------------

class TempDir {
 public:
  TempDir() {
    // sun_path holds 107 characters; bazel's TEST_TMPDIR can be long, so fall back to
    // /tmp when it leaves too little room for "/isl.XXXXXX/name.sock".
    std::string base = "/tmp";
    const char* env = std::getenv("TEST_TMPDIR");
    if (env != nullptr && *env != '\0' && std::strlen(env) < 70) base = env;
    std::string pattern = base + "/isl.XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

bool IsSocketFile(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Bytes that differ from position to position, so reordering or loss shows.
std::string Pattern(size_t size, uint32_t seed = 1) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

bool WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  return static_cast<bool>(out);
}

// ---- Networks -------------------------------------------------------------------------

enum class Net { kIpv4, kIpv6, kUnix };

std::string NetName(const testing::TestParamInfo<Net>& info) {
  switch (info.param) {
    case Net::kIpv4:
      return "Ipv4";
    case Net::kIpv6:
      return "Ipv6";
    case Net::kUnix:
      return "Unix";
  }
  return "Unknown";
}

absl::StatusOr<std::unique_ptr<Listener>> ListenOn(Net net, const TempDir& dir,
                                                   ListenOptions options = {}) {
  switch (net) {
    case Net::kIpv4:
      options.address = "127.0.0.1";
      break;
    case Net::kIpv6:
      options.address = "::1";
      break;
    case Net::kUnix:
      options.unix_path = dir.File("s.sock");
      break;
  }
  TcpTransport tcp;
  return tcp.Listen(0, options);
}

absl::StatusOr<std::unique_ptr<TcpSocket>> ConnectTo(const Listener& listener) {
  absl::StatusOr<SocketInfo> info = listener.LocalInfo();
  if (!info.ok()) return info.status();
  return TcpSocket::Connect(*info, kGenerous);
}

// Accept in a detached thread so that a broken Accept fails the test instead of hanging
// it; the thread shares ownership of the listener.
std::future<absl::StatusOr<std::unique_ptr<Socket>>> AsyncAccept(
    std::shared_ptr<Listener> listener) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::unique_ptr<Socket>>>>();
  auto future = promise->get_future();
  std::thread([listener = std::move(listener), promise] {
    promise->set_value(listener->Accept());
  }).detach();
  return future;
}

// Accept, or DeadlineExceeded after kGenerous (the listener is then closed to end the
// waiting Accept).
absl::StatusOr<std::unique_ptr<Socket>> AcceptWithin(const std::shared_ptr<Listener>& listener) {
  auto future = AsyncAccept(listener);
  if (future.wait_for(kGenerousChrono) != std::future_status::ready) {
    listener->Close();
    return absl::DeadlineExceededError("test: no connection was accepted in time");
  }
  return future.get();
}

// ---- Raw POSIX clients ----------------------------------------------------------------

socklen_t MakeSockaddr(const SocketInfo& info, sockaddr_storage* storage) {
  *storage = {};
  switch (info.family) {
    case AddressFamily::kIpv4: {
      auto* v4 = reinterpret_cast<sockaddr_in*>(storage);
      v4->sin_family = AF_INET;
      v4->sin_port = htons(info.port);
      if (::inet_pton(AF_INET, info.address.c_str(), &v4->sin_addr) != 1) return 0;
      return sizeof(sockaddr_in);
    }
    case AddressFamily::kIpv6: {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(storage);
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(info.port);
      if (::inet_pton(AF_INET6, info.address.c_str(), &v6->sin6_addr) != 1) return 0;
      return sizeof(sockaddr_in6);
    }
    case AddressFamily::kUnix: {
      auto* un = reinterpret_cast<sockaddr_un*>(storage);
      un->sun_family = AF_UNIX;
      if (info.address.size() >= sizeof(un->sun_path)) return 0;
      std::memcpy(un->sun_path, info.address.data(), info.address.size());
      return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + info.address.size() + 1);
    }
  }
  return 0;
}

int DomainOf(AddressFamily family) {
  switch (family) {
    case AddressFamily::kIpv4:
      return AF_INET;
    case AddressFamily::kIpv6:
      return AF_INET6;
    case AddressFamily::kUnix:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

// A blocking connect(2): the descriptor, or -errno.
int RawConnect(const SocketInfo& to) {
  sockaddr_storage storage;
  const socklen_t length = MakeSockaddr(to, &storage);
  if (length == 0) return -EINVAL;
  const int fd = ::socket(DomainOf(to.family), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

// Closes `fd` with SO_LINGER {1, 0}, so the kernel answers with a reset.
void ResetAndClose(int fd) {
  struct linger l = {1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

bool WaitReadable(int fd, absl::Duration timeout = kGenerous) {
  struct pollfd p = {};
  p.fd = fd;
  p.events = POLLIN;
  return ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1;
}

int GetIntOption(int fd, int level, int name) {
  int value = -12345;
  socklen_t length = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &length) != 0) return -12345;
  return value;
}

// ---- SIGPIPE --------------------------------------------------------------------------

// The tests that could raise SIGPIPE run with its default disposition (terminate) in
// effect and unblocked: a transport that lets one through kills the test binary.
void UseDefaultSigpipe() {
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &action, nullptr), 0);
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ASSERT_EQ(::pthread_sigmask(SIG_UNBLOCK, &pipe, nullptr), 0);
}

// After a call that met a broken pipe: nothing is left pending or blocked.
void ExpectSigpipeUntouched() {
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";
  sigset_t mask;
  sigemptyset(&mask);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, nullptr, &mask), 0);
  EXPECT_EQ(sigismember(&mask, SIGPIPE), 0) << "SIGPIPE was left blocked";
  struct sigaction action = {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_DFL);
}

// ---- A connected pair: client (TcpSocket::Connect) and server (Accept) ----------------

class ConnectedTest : public testing::TestWithParam<Net> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    ASSERT_OK_AND_ASSIGN(listener_, ListenOn(GetParam(), dir_));
    ASSERT_OK_AND_ASSIGN(client_, ConnectTo(*listener_));
    ASSERT_OK_AND_ASSIGN(server_, AcceptWithin(listener_));
  }

  bool IsIp() const { return GetParam() != Net::kUnix; }

  // Makes the peer's (client's) end go away: a reset for TCP; for a unix socket the
  // closest thing is closing with unread data, which the kernel reports as ECONNRESET.
  void ResetClient() {
    if (IsIp()) {
      ASSERT_THAT(client_->SetOptions({SocketOption::Linger(absl::ZeroDuration())}), IsOk());
    } else {
      ASSERT_THAT(server_->Send("unread"), IsOk());
      ASSERT_TRUE(WaitReadable(client_->fd()));
    }
    client_->Close();
  }

  // Reads exactly n bytes on the client in another thread.
  std::future<absl::StatusOr<std::string>> ClientReadsAsync(size_t n) {
    return std::async(std::launch::async,
                      [this, n] { return client_->Recv(n, absl::Seconds(60)); });
  }

  TempDir dir_;
  std::shared_ptr<Listener> listener_;
  std::unique_ptr<TcpSocket> client_;
  std::unique_ptr<Socket> server_;
};

INSTANTIATE_TEST_SUITE_P(AllNets, ConnectedTest,
                         testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix), NetName);

class IpConnectedTest : public ConnectedTest {};
INSTANTIATE_TEST_SUITE_P(IpNets, IpConnectedTest, testing::Values(Net::kIpv4, Net::kIpv6), NetName);

class UnixConnectedTest : public ConnectedTest {};
INSTANTIATE_TEST_SUITE_P(Unix, UnixConnectedTest, testing::Values(Net::kUnix), NetName);

// =====================================================================================
// Listen
// =====================================================================================

TEST(TcpListenTest, Ipv4PortZeroReportsTheChosenPort) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kIpv4);
  EXPECT_EQ(info.address, "127.0.0.1");
  EXPECT_NE(info.port, 0);
  EXPECT_FALSE(info.peer_certificate.has_value());

  // The reported port is the real one: a client reaches it.
  ASSERT_OK_AND_ASSIGN(auto client, TcpSocket::Connect(info, kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo server_local, server->LocalInfo());
  EXPECT_EQ(server_local.port, info.port);
  ASSERT_OK_AND_ASSIGN(SocketInfo client_peer, client->PeerInfo());
  EXPECT_EQ(client_peer, info);
}

TEST(TcpListenTest, EmptyAddressBindsEveryIpv4Address) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kIpv4);
  EXPECT_EQ(info.address, "0.0.0.0");
  ASSERT_NE(info.port, 0);
  ASSERT_OK_AND_ASSIGN(auto client,
                       TcpSocket::Connect({.address = "127.0.0.1", .port = info.port}, kGenerous));
  EXPECT_THAT(AcceptWithin(listener), IsOk());
}

TEST(TcpListenTest, Ipv6Loopback) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "::1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kIpv6);
  EXPECT_EQ(info.address, "::1");
  EXPECT_NE(info.port, 0);
  ASSERT_OK_AND_ASSIGN(auto client, TcpSocket::Connect(info, kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  EXPECT_EQ(peer.family, AddressFamily::kIpv6);
  EXPECT_EQ(peer.address, "::1");
}

TEST(TcpListenTest, BracketedIpv6LiteralIsAccepted) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto listener, tcp.Listen(0, {.address = "[::1]"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kIpv6);
  EXPECT_EQ(info.address, "::1");
}

TEST(TcpListenTest, UnixSocketLocalInfoIsThePath) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("u.sock");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.unix_path = path}));
  EXPECT_TRUE(IsSocketFile(path));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kUnix);
  EXPECT_EQ(info.address, path);
  EXPECT_EQ(info.port, 0);
  EXPECT_EQ(info.ToString(), "unix:" + path);

  ASSERT_OK_AND_ASSIGN(auto client, TcpSocket::Connect(info, kGenerous));
  EXPECT_EQ(client->family(), AddressFamily::kUnix);
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo server_local, server->LocalInfo());
  EXPECT_EQ(server_local.family, AddressFamily::kUnix);
  EXPECT_EQ(server_local.address, path);
  ASSERT_OK_AND_ASSIGN(SocketInfo client_peer, client->PeerInfo());
  EXPECT_EQ(client_peer.address, path);
}

TEST(TcpListenTest, AbstractUnixSocket) {
  const std::string name = absl::StrCat("@islet-test-", ::getpid(), "-abstract");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.unix_path = name}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  EXPECT_EQ(info.family, AddressFamily::kUnix);
  EXPECT_EQ(info.address, name);
  EXPECT_FALSE(Exists(name));
  ASSERT_OK_AND_ASSIGN(auto client, TcpSocket::Connect(info, kGenerous));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, client->PeerInfo());
  EXPECT_EQ(peer.address, name);
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_THAT(client->Send("abstract"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server->Recv(8, kGenerous));
  EXPECT_EQ(got, "abstract");
}

TEST(TcpListenTest, Ipv6OnlyLeavesTheIpv4PortFree) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> v6,
                       tcp.Listen(0, {.address = "::", .ipv6_only = true}));
  ASSERT_OK_AND_ASSIGN(SocketInfo v6_info, v6->LocalInfo());
  EXPECT_EQ(v6_info.family, AddressFamily::kIpv6);
  EXPECT_EQ(v6_info.address, "::");
  ASSERT_NE(v6_info.port, 0);

  // The IPv4 side of the port is not taken, so an IPv4 listener can have it.
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> v4,
                       tcp.Listen(v6_info.port, {.address = "127.0.0.1"}));

  ASSERT_OK_AND_ASSIGN(
      auto client6,
      TcpSocket::Connect({.family = AddressFamily::kIpv6, .address = "::1", .port = v6_info.port},
                         kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server6, AcceptWithin(v6));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer6, server6->PeerInfo());
  EXPECT_EQ(peer6.address, "::1");

  ASSERT_OK_AND_ASSIGN(
      auto client4, TcpSocket::Connect({.address = "127.0.0.1", .port = v6_info.port}, kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server4, AcceptWithin(v4));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer4, server4->PeerInfo());
  EXPECT_EQ(peer4.family, AddressFamily::kIpv4);
  EXPECT_EQ(peer4.address, "127.0.0.1");
}

TEST(TcpListenTest, DualStackListenerAcceptsIpv4) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "::"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  ASSERT_NE(info.port, 0);

  // Without ipv6_only the IPv4 side of the port is taken too.
  EXPECT_THAT(tcp.Listen(info.port, {.address = "127.0.0.1"}),
              StatusIs(absl::StatusCode::kAlreadyExists));

  ASSERT_OK_AND_ASSIGN(auto client,
                       TcpSocket::Connect({.address = "127.0.0.1", .port = info.port}, kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  EXPECT_EQ(peer.family, AddressFamily::kIpv6);
  EXPECT_EQ(peer.address, "::ffff:127.0.0.1");
  ASSERT_THAT(client->Send("v4"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server->Recv(2, kGenerous));
  EXPECT_EQ(got, "v4");
}

TEST(TcpListenTest, SecondListenOnTheSamePortIsAlreadyExists) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto first, tcp.Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, first->LocalInfo());
  const absl::StatusOr<std::unique_ptr<Listener>> second =
      tcp.Listen(info.port, {.address = "127.0.0.1"});
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(second.status().message(), HasSubstr("EADDRINUSE"));
  // reuse_port on only one of them does not help.
  EXPECT_THAT(tcp.Listen(info.port, {.address = "127.0.0.1", .reuse_port = true}),
              StatusIs(absl::StatusCode::kAlreadyExists));
  // reuse_address (on by default) does not let a second listener in either.
  EXPECT_THAT(tcp.Listen(info.port, {.address = "127.0.0.1", .reuse_address = true}),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST(TcpListenTest, ReusePortLetsTwoListenersShareAPort) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> first,
                       tcp.Listen(0, {.address = "127.0.0.1", .reuse_port = true}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, first->LocalInfo());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> second,
                       tcp.Listen(info.port, {.address = "127.0.0.1", .reuse_port = true}));
  ASSERT_OK_AND_ASSIGN(SocketInfo second_info, second->LocalInfo());
  EXPECT_EQ(second_info.port, info.port);

  // The second really listens: with the first closed, it takes the connections.
  first->Close();
  ASSERT_OK_AND_ASSIGN(auto client, TcpSocket::Connect(info, kGenerous));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(second));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  ASSERT_OK_AND_ASSIGN(SocketInfo client_local, client->LocalInfo());
  EXPECT_EQ(peer, client_local);
}

TEST(TcpListenTest, InvalidAddressIsInvalidArgument) {
  TcpTransport tcp;
  for (const char* address :
       {"localhost", "1.2.3", "300.1.1.1", "::g", "[::1", "127.0.0.1:80", " 127.0.0.1"}) {
    SCOPED_TRACE(address);
    EXPECT_THAT(tcp.Listen(0, {.address = address}), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(TcpListenTest, NonPositiveBacklogIsInvalidArgument) {
  TcpTransport tcp;
  EXPECT_THAT(tcp.Listen(0, {.address = "127.0.0.1", .backlog = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tcp.Listen(0, {.address = "127.0.0.1", .backlog = -5}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tcp.Listen(0, {.address = "127.0.0.1", .backlog = 1}), IsOk());
}

TEST(TcpListenTest, BadSocketOptionIsInvalidArgument) {
  TcpTransport tcp;
  const std::vector<SocketOption> bad = {
      SocketOption::Blocking(true),
      SocketOption::Tos(2),
      SocketOption::KeepCount(0),
      SocketOption::KeepIdle(absl::Seconds(40000)),
      SocketOption::Priority(7),
      SocketOption::RecvBuffer(100),
      SocketOption::Raw(SocketOptionName::kSendTimeout, -2),
      SocketOption::Raw(static_cast<SocketOptionName>(200), 1),
  };
  for (const SocketOption& option : bad) {
    SCOPED_TRACE(option.ToString());
    EXPECT_THAT(tcp.Listen(0, {.address = "127.0.0.1",
                               .socket_options = {SocketOption::NoDelay(true), option}}),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("bad.sock");
  EXPECT_THAT(tcp.Listen(0, {.unix_path = path, .socket_options = {SocketOption::Tos(3)}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(Exists(path));
}

TEST(TcpListenTest, SocketOptionsAreInheritedByAcceptedSockets) {
  TcpTransport tcp;
  const std::vector<SocketOption> options = {
      SocketOption::NoDelay(true),
      SocketOption::KeepAlive(true),
      SocketOption::KeepIdle(absl::Seconds(77)),
      SocketOption::KeepCount(5),
      SocketOption::Priority(3),
      SocketOption::RecvBuffer(65536),
      SocketOption::SendTimeout(absl::Milliseconds(1234)),
  };
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener,
                       tcp.Listen(0, {.address = "127.0.0.1", .socket_options = options}));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  std::vector<SocketOptionName> names;
  for (const SocketOption& option : options) names.push_back(option.name());
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got, server->GetOptions(names));
  EXPECT_EQ(got, options);
}

TEST(TcpListenTest, DefaultListenOptionsTurnNoDelayOn) {
  for (Net net : {Net::kIpv4, Net::kIpv6}) {
    SCOPED_TRACE(static_cast<int>(net));
    TempDir dir;
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, ListenOn(net, dir));
    // A raw client leaves Nagle on, so the flag can only come from the listener.
    ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
    const int raw = RawConnect(info);
    ASSERT_GE(raw, 0) << strerror(-raw);
    UniqueFd client(raw);
    EXPECT_EQ(GetIntOption(client.get(), IPPROTO_TCP, TCP_NODELAY), 0);
    ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
    ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                         server->GetOptions({SocketOptionName::kNoDelay}));
    EXPECT_THAT(got, ElementsAre(SocketOption::NoDelay(true)));
    EXPECT_NE(GetIntOption(server->fd(), IPPROTO_TCP, TCP_NODELAY), 0);
  }
}

TEST(TcpListenTest, UnixListenerSkipsTcpOnlyOptions) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<Listener> listener,
      tcp.Listen(0, {.unix_path = dir.File("o.sock"),
                     .socket_options = {SocketOption::NoDelay(true),
                                        SocketOption::KeepIdle(absl::Seconds(30)),
                                        SocketOption::Tos(0x20), SocketOption::KeepAlive(true)}}));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server->GetOptions({SocketOptionName::kKeepAlive}));
  EXPECT_THAT(got, ElementsAre(SocketOption::KeepAlive(true)));
}

TEST(TcpListenTest, StaleUnixSocketFileIsReplaced) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("stale.sock");
  {
    // A server that died: its socket file stays, nobody listens on it.
    UniqueFd dead(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(dead.valid());
    sockaddr_storage storage;
    const socklen_t length =
        MakeSockaddr({.family = AddressFamily::kUnix, .address = path}, &storage);
    ASSERT_EQ(::bind(dead.get(), reinterpret_cast<sockaddr*>(&storage), length), 0);
    ASSERT_EQ(::listen(dead.get(), 1), 0);
  }
  ASSERT_TRUE(IsSocketFile(path));
  EXPECT_EQ(RawConnect({.family = AddressFamily::kUnix, .address = path}), -ECONNREFUSED);

  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.unix_path = path}));
  EXPECT_TRUE(IsSocketFile(path));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_THAT(client->Send("fresh"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server->Recv(5, kGenerous));
  EXPECT_EQ(got, "fresh");
}

TEST(TcpListenTest, LiveUnixSocketPathIsAlreadyExists) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("live.sock");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> first, tcp.Listen(0, {.unix_path = path}));
  EXPECT_THAT(tcp.Listen(0, {.unix_path = path}), StatusIs(absl::StatusCode::kAlreadyExists));
  // The running server keeps its socket file and keeps serving.
  EXPECT_TRUE(IsSocketFile(path));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*first));
  EXPECT_THAT(client->PeerInfo(), IsOk());
  EXPECT_THAT(AcceptWithin(first), IsOk());
}

TEST(TcpListenTest, NonSocketFileAtTheUnixPathIsLeftAlone) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("plain");
  ASSERT_TRUE(WriteFile(path, "precious"));
  TcpTransport tcp;
  EXPECT_THAT(tcp.Listen(0, {.unix_path = path}), Not(IsOk()));
  std::ifstream in(path);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST(TcpListenTest, UnixSocketFileIsRemovedWhenTheListenerIsDestroyed) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("gone.sock");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto listener, tcp.Listen(0, {.unix_path = path}));
  ASSERT_TRUE(IsSocketFile(path));
  listener.reset();
  EXPECT_FALSE(Exists(path));
}

TEST(TcpListenTest, UnixSocketFileIsRemovedOnClose) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("closed.sock");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto listener, tcp.Listen(0, {.unix_path = path}));
  ASSERT_TRUE(IsSocketFile(path));
  listener->Close();
  EXPECT_FALSE(Exists(path));
}

// A listener that was closed, then outlived by its successor on the same path, must not
// take the successor's socket file with it when it is finally destroyed.
TEST(TcpListenTest, DestroyingAClosedListenerKeepsItsSuccessorsSocketFile) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("reload.sock");
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto old_listener, tcp.Listen(0, {.unix_path = path}));
  old_listener->Close();
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> successor, tcp.Listen(0, {.unix_path = path}));
  old_listener.reset();
  EXPECT_TRUE(IsSocketFile(path));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*successor));
  EXPECT_THAT(AcceptWithin(successor), IsOk());
}

TEST(TcpListenTest, UnixPathTooLongIsInvalidArgument) {
  TcpTransport tcp;
  EXPECT_THAT(tcp.Listen(0, {.unix_path = "/tmp/" + std::string(200, 'x')}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TcpListenTest, ListenerLocalInfoAfterCloseIsFailedPrecondition) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(auto listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  listener->Close();
  EXPECT_THAT(listener->LocalInfo(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(TcpTransportTest, DescribesItself) {
  TcpTransport tcp;
  EXPECT_FALSE(tcp.Secure());
  EXPECT_EQ(tcp.Name(), "tcp");
}

TEST(TcpTransportTest, UpgradeIsUnimplemented) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  absl::StatusOr<std::unique_ptr<Socket>> upgraded = tcp.Upgrade(std::move(client));
  EXPECT_THAT(upgraded, StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(upgraded.status().message(), HasSubstr("tcp"));
}

// =====================================================================================
// Accept
// =====================================================================================

TEST_P(ConnectedTest, SocketsAreNonBlockingAndCloseOnExec) {
  for (int fd : {server_->fd(), client_->fd()}) {
    ASSERT_GE(fd, 0);
    const int status_flags = ::fcntl(fd, F_GETFL);
    ASSERT_GE(status_flags, 0);
    EXPECT_NE(status_flags & O_NONBLOCK, 0) << "fd " << fd;
    const int fd_flags = ::fcntl(fd, F_GETFD);
    ASSERT_GE(fd_flags, 0);
    EXPECT_NE(fd_flags & FD_CLOEXEC, 0) << "fd " << fd;
  }
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server_->GetOptions({SocketOptionName::kBlocking}));
  EXPECT_THAT(got, ElementsAre(SocketOption::Blocking(false)));
}

TEST_P(ConnectedTest, PeerInfoMatchesTheOtherSidesLocalInfo) {
  ASSERT_OK_AND_ASSIGN(SocketInfo server_peer, server_->PeerInfo());
  ASSERT_OK_AND_ASSIGN(SocketInfo client_local, client_->LocalInfo());
  EXPECT_EQ(server_peer, client_local);
  ASSERT_OK_AND_ASSIGN(SocketInfo client_peer, client_->PeerInfo());
  ASSERT_OK_AND_ASSIGN(SocketInfo server_local, server_->LocalInfo());
  EXPECT_EQ(client_peer, server_local);
  ASSERT_OK_AND_ASSIGN(SocketInfo listening, listener_->LocalInfo());
  EXPECT_EQ(server_local, listening);
  EXPECT_FALSE(server_peer.peer_certificate.has_value());
  switch (GetParam()) {
    case Net::kIpv4:
      EXPECT_EQ(server_peer.family, AddressFamily::kIpv4);
      EXPECT_EQ(server_peer.address, "127.0.0.1");
      EXPECT_NE(server_peer.port, 0);
      EXPECT_NE(server_peer.port, server_local.port);
      break;
    case Net::kIpv6:
      EXPECT_EQ(server_peer.family, AddressFamily::kIpv6);
      EXPECT_EQ(server_peer.address, "::1");
      EXPECT_NE(server_peer.port, 0);
      break;
    case Net::kUnix:
      EXPECT_EQ(server_peer.family, AddressFamily::kUnix);
      EXPECT_EQ(server_peer.address, "");  // the client is unnamed
      EXPECT_EQ(server_peer.port, 0);
      break;
  }
}

TEST_P(IpConnectedTest, NoDelayIsInheritedByAcceptedSockets) {
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server_->GetOptions({SocketOptionName::kNoDelay}));
  EXPECT_THAT(got, ElementsAre(SocketOption::NoDelay(true)));
  EXPECT_NE(GetIntOption(server_->fd(), IPPROTO_TCP, TCP_NODELAY), 0);
  // Connect turns it on for clients too.
  EXPECT_NE(GetIntOption(client_->fd(), IPPROTO_TCP, TCP_NODELAY), 0);
}

TEST(TcpAcceptTest, AcceptBlocksUntilAConnectionArrives) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  auto accepted = AsyncAccept(listener);
  // Nobody has connected: Accept must still be waiting.
  EXPECT_EQ(accepted.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  if (accepted.wait_for(kGenerousChrono) != std::future_status::ready) {
    listener->Close();
    FAIL() << "Accept did not return after a client connected";
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, accepted.get());
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  ASSERT_OK_AND_ASSIGN(SocketInfo client_local, client->LocalInfo());
  EXPECT_EQ(peer, client_local);
}

TEST(TcpAcceptTest, CloseWakesEveryBlockedAccept) {
  for (Net net : {Net::kIpv4, Net::kUnix}) {
    SCOPED_TRACE(static_cast<int>(net));
    TempDir dir;
    ASSERT_TRUE(dir.ok());
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, ListenOn(net, dir));
    std::vector<std::future<absl::StatusOr<std::unique_ptr<Socket>>>> waiting;
    for (int i = 0; i < 3; ++i) waiting.push_back(AsyncAccept(listener));
    for (auto& w : waiting) {
      EXPECT_EQ(w.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
    }
    std::thread closer([listener] { listener->Close(); });
    closer.join();
    for (auto& w : waiting) {
      ASSERT_EQ(w.wait_for(kGenerousChrono), std::future_status::ready)
          << "Close() did not wake a blocked Accept";
      absl::StatusOr<std::unique_ptr<Socket>> result = w.get();
      EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition));
      EXPECT_TRUE(IsClosed(result.status()));
    }
  }
}

TEST(TcpAcceptTest, AcceptAfterCloseFailsAtOnce) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  listener->Close();
  listener->Close();  // idempotent
  for (int i = 0; i < 2; ++i) {
    auto accepted = AsyncAccept(listener);
    ASSERT_EQ(accepted.wait_for(kGenerousChrono), std::future_status::ready)
        << "Accept blocked on a closed listener";
    EXPECT_THAT(accepted.get(), StatusIs(absl::StatusCode::kFailedPrecondition));
  }
}

TEST(TcpAcceptTest, ConnectionsAreRefusedAfterClose) {
  for (Net net : {Net::kIpv4, Net::kIpv6, Net::kUnix}) {
    SCOPED_TRACE(static_cast<int>(net));
    TempDir dir;
    ASSERT_TRUE(dir.ok());
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, ListenOn(net, dir));
    ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
    listener->Close();
    if (net == Net::kUnix) {
      // The socket file is gone or refuses: either way nobody gets in.
      const int raw = RawConnect(info);
      EXPECT_TRUE(raw == -ECONNREFUSED || raw == -ENOENT) << raw;
      if (raw >= 0) ::close(raw);
      continue;
    }
    const int raw = RawConnect(info);
    EXPECT_EQ(raw, -ECONNREFUSED) << (raw < 0 ? strerror(-raw) : "connected");
    if (raw >= 0) ::close(raw);
    const absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(info, kGenerous);
    EXPECT_THAT(client, StatusIs(absl::StatusCode::kAborted));
    EXPECT_THAT(client.status().message(), HasSubstr("ECONNREFUSED"));
  }
}

TEST(TcpAcceptTest, SeveralAcceptorsEachGetOneConnection) {
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  std::vector<std::future<absl::StatusOr<std::unique_ptr<Socket>>>> waiting;
  for (int i = 0; i < 4; ++i) waiting.push_back(AsyncAccept(listener));
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
    clients.push_back(std::move(client));
  }
  std::vector<uint16_t> peer_ports;
  for (auto& w : waiting) {
    if (w.wait_for(kGenerousChrono) != std::future_status::ready) {
      listener->Close();
      FAIL() << "an Accept did not return";
    }
    ASSERT_OK_AND_ASSIGN(auto server, w.get());
    ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
    peer_ports.push_back(peer.port);
  }
  std::vector<uint16_t> client_ports;
  for (auto& client : clients) {
    ASSERT_OK_AND_ASSIGN(SocketInfo local, client->LocalInfo());
    client_ports.push_back(local.port);
  }
  EXPECT_THAT(peer_ports, testing::UnorderedElementsAreArray(client_ports));
}

// Runs in a forked child so the test process keeps its descriptor limit. Returns an
// exit code: 0 when every step held.
int EmfileChild() {
  TcpTransport tcp;
  absl::StatusOr<std::unique_ptr<Listener>> listener = tcp.Listen(0, {.address = "127.0.0.1"});
  if (!listener.ok()) return 10;
  absl::StatusOr<SocketInfo> info = (*listener)->LocalInfo();
  if (!info.ok()) return 11;
  const int client = RawConnect(*info);
  if (client < 0) return 12;
  if (::send(client, "ping", 4, MSG_NOSIGNAL) != 4) return 13;

  // Every descriptor the next call could get is beyond the limit.
  const int lowest_free = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (lowest_free < 0) return 14;
  ::close(lowest_free);
  struct rlimit saved;
  if (::getrlimit(RLIMIT_NOFILE, &saved) != 0) return 15;
  struct rlimit lowered = saved;
  lowered.rlim_cur = static_cast<rlim_t>(lowest_free);
  if (::setrlimit(RLIMIT_NOFILE, &lowered) != 0) return 16;

  absl::StatusOr<std::unique_ptr<Socket>> refused = (*listener)->Accept();
  if (refused.ok()) return 20;
  if (!absl::IsResourceExhausted(refused.status())) return 21;
  if (!absl::StrContains(refused.status().message(), "EMFILE")) return 22;

  if (::setrlimit(RLIMIT_NOFILE, &saved) != 0) return 30;
  // The connection waited in the backlog: the next Accept gets it.
  absl::StatusOr<std::unique_ptr<Socket>> accepted = (*listener)->Accept();
  if (!accepted.ok()) return 31;
  absl::StatusOr<std::string> got = (*accepted)->Recv(4, kGenerous);
  if (!got.ok()) return 32;
  if (*got != "ping") return 33;
  ::close(client);
  return 0;
}

TEST(TcpAcceptTest, OutOfDescriptorsIsResourceExhaustedAndRecovers) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    ::alarm(30);  // a hang in the child ends it
    ::_exit(EmfileChild());
  }
  int status = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(40);
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the child did not finish";
  }
  ASSERT_EQ(done, pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died of signal " << WTERMSIG(status);
  // 2x: Accept did not report ResourceExhausted/EMFILE; 3x: it did not recover.
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// =====================================================================================
// Connect
// =====================================================================================

TEST(TcpConnectTest, InvalidAddressIsInvalidArgument) {
  EXPECT_THAT(TcpSocket::Connect({.address = "nowhere", .port = 80}, kGenerous),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TcpSocket::Connect({.family = AddressFamily::kUnix, .address = ""}, kGenerous),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TcpConnectTest, MissingUnixPathIsNotFound) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  EXPECT_THAT(TcpSocket::Connect(
                  {.family = AddressFamily::kUnix, .address = dir.File("missing.sock")}, kGenerous),
              StatusIs(absl::StatusCode::kNotFound));
}

// A unix listener with a full backlog: a connect(2) that fails with EAGAIN has not
// started anything, so Connect must not hand back an unconnected socket.
TEST(TcpConnectTest, FullUnixBacklogIsNeverAnUnconnectedSocket) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener,
                       tcp.Listen(0, {.unix_path = dir.File("full.sock"), .backlog = 1}));
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener->LocalInfo());
  std::vector<std::unique_ptr<TcpSocket>> clients;
  bool refused = false;
  for (int i = 0; i < 8 && !refused; ++i) {
    absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(info, kShort);
    if (!client.ok()) {
      EXPECT_THAT(client, StatusIs(absl::StatusCode::kDeadlineExceeded));
      refused = true;
      break;
    }
    // Every socket Connect returns is connected.
    EXPECT_THAT((*client)->PeerInfo(), IsOk()) << "client " << i;
    EXPECT_THAT((*client)->Send("x"), IsOk()) << "client " << i;
    clients.push_back(*std::move(client));
  }
  EXPECT_TRUE(refused) << "the backlog never filled up";

  // A Connect that waits gets in once the server makes room.
  auto waiting = std::async(std::launch::async,
                            [info] { return TcpSocket::Connect(info, absl::Seconds(20)); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  ASSERT_OK_AND_ASSIGN(auto first, AcceptWithin(listener));
  ASSERT_EQ(waiting.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  ASSERT_OK_AND_ASSIGN(auto late, waiting.get());
  EXPECT_THAT(late->PeerInfo(), IsOk());
  ASSERT_THAT(late->Send("late"), IsOk());
}

// =====================================================================================
// Recv
// =====================================================================================

TEST_P(ConnectedTest, RecvZeroReturnsWhatIsAvailable) {
  ASSERT_THAT(client_->Send("abc"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, kGenerous));
  EXPECT_EQ(got, "abc");
  // More than one read's worth comes back in pieces, nothing lost.
  const std::string big = Pattern(300000);
  auto sent = std::async(std::launch::async, [&] { return client_->Send(big); });
  std::string all;
  while (all.size() < big.size()) {
    ASSERT_OK_AND_ASSIGN(std::string piece, server_->Recv(0, kGenerous));
    ASSERT_FALSE(piece.empty());
    all += piece;
  }
  EXPECT_THAT(sent.get(), IsOk());
  EXPECT_EQ(all, big);
}

TEST_P(ConnectedTest, RecvExactLengthAssemblesPieces) {
  std::thread sender([this] {
    for (absl::string_view piece : {"he", "llo", ", ", "wor", "ld!"}) {
      if (!client_->Send(piece).ok()) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  absl::StatusOr<std::string> first = server_->Recv(5, kGenerous);
  absl::StatusOr<std::string> rest = server_->Recv(8, kGenerous);
  sender.join();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(*first, "hello");
  ASSERT_THAT(rest, IsOk());
  EXPECT_EQ(*rest, ", world!");
}

TEST_P(ConnectedTest, RecvLargeExactLength) {
  const std::string big = Pattern(1 << 20, 7);
  auto sent = std::async(std::launch::async, [&] { return client_->Send(big); });
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(big.size(), absl::Seconds(30)));
  EXPECT_THAT(sent.get(), IsOk());
  EXPECT_TRUE(got == big);
}

TEST_P(ConnectedTest, RecvTimeoutKeepsThePartialBytes) {
  ASSERT_THAT(client_->Send("abc"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  const absl::StatusOr<std::string> short_read = server_->Recv(6, kShort);
  EXPECT_THAT(short_read, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsTimeout(short_read.status()));
  EXPECT_TRUE(server_->HasBufferedInput());
  // The three bytes were kept: they lead the next Recv.
  ASSERT_THAT(client_->Send("def"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(6, kGenerous));
  EXPECT_EQ(got, "abcdef");
  EXPECT_FALSE(server_->HasBufferedInput());
}

TEST_P(ConnectedTest, KeptBytesComeBackFromRecvZeroAndReadSome) {
  ASSERT_THAT(client_->Send("xyz"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  EXPECT_THAT(server_->Recv(10, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
  // Nothing is readable on the descriptor any more, yet the bytes are there at once.
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, absl::ZeroDuration()));
  EXPECT_EQ(got, "xyz");

  ASSERT_THAT(client_->Send("12345"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  EXPECT_THAT(server_->Recv(8, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
  char buf[3];
  ASSERT_OK_AND_ASSIGN(size_t n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "123");
  ASSERT_OK_AND_ASSIGN(n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "45");
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_P(ConnectedTest, RecvWithZeroTimeoutNeverWaits) {
  EXPECT_THAT(server_->Recv(0, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(server_->Recv(4, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(server_->Recv(0, absl::Milliseconds(-5)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));

  ASSERT_THAT(client_->Send("now"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, absl::ZeroDuration()));
  EXPECT_EQ(got, "now");

  ASSERT_THAT(client_->Send("exact"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(got, server_->Recv(5, absl::ZeroDuration()));
  EXPECT_EQ(got, "exact");
}

TEST_P(ConnectedTest, RecvWithInfiniteTimeoutWaitsForData) {
  std::thread sender([this] {
    absl::SleepFor(absl::Milliseconds(50));
    client_->Send("late").IgnoreError();
  });
  absl::StatusOr<std::string> got = server_->Recv(4, absl::InfiniteDuration());
  sender.join();
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "late");
}

TEST_P(ConnectedTest, RecvAfterOrderlyCloseIsOutOfRange) {
  client_->Close();
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_TRUE(IsPeerClosed(got.status()));
  EXPECT_THAT(server_->Recv(1, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  char buf[4];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_P(ConnectedTest, ShortDataBeforeCloseIsOutOfRangeButNotLost) {
  ASSERT_THAT(client_->Send("tail"), IsOk());
  ASSERT_THAT(client_->Shutdown(ShutdownWay::kWrite), IsOk());
  EXPECT_THAT(server_->Recv(10, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, kGenerous));
  EXPECT_EQ(got, "tail");
  EXPECT_THAT(server_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_P(ConnectedTest, RecvAfterResetIsAborted) {
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(IsConnectionLost(got.status()));
  EXPECT_THAT(got.status().message(), HasSubstr("ECONNRESET"));
}

TEST_P(IpConnectedTest, RecvAfterRawResetIsAborted) {
  // The same through a raw client with SO_LINGER {1, 0}.
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener_->LocalInfo());
  const int raw = RawConnect(info);
  ASSERT_GE(raw, 0) << strerror(-raw);
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener_));
  ASSERT_EQ(::send(raw, "hi", 2, MSG_NOSIGNAL), 2);
  ASSERT_OK_AND_ASSIGN(std::string got, server->Recv(2, kGenerous));
  EXPECT_EQ(got, "hi");
  ResetAndClose(raw);
  EXPECT_THAT(server->Recv(0, kGenerous), StatusIs(absl::StatusCode::kAborted));
}

TEST_P(ConnectedTest, RecvOnAClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_TRUE(server_->IsClosed());
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(IsClosed(got.status()));
  EXPECT_THAT(server_->Recv(5, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(ConnectedTest, ReadSomeIsUnavailableWhenNothingIsReady) {
  char buf[16];
  const absl::StatusOr<size_t> nothing = server_->ReadSome(absl::MakeSpan(buf));
  EXPECT_THAT(nothing, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsWouldBlock(nothing.status()));
  EXPECT_FALSE(server_->HasBufferedInput());
  ASSERT_THAT(client_->Send("q"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(size_t n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "q");
}

// =====================================================================================
// Send
// =====================================================================================

TEST_P(ConnectedTest, SendSingleBuffer) {
  ASSERT_THAT(server_->Send("hello world"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(11, kGenerous));
  EXPECT_EQ(got, "hello world");
  EXPECT_THAT(server_->Send(""), IsOk());
}

TEST_P(ConnectedTest, SendBufferListIsOneGatherWriteInOrder) {
  const std::string big = Pattern(1000, 3);
  const std::vector<absl::string_view> buffers = {"alpha-", "", "beta-", big, "-omega"};
  ASSERT_THAT(server_->Send(buffers), IsOk());
  const std::string expected = absl::StrCat("alpha-", "beta-", big, "-omega");
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(expected.size(), kGenerous));
  EXPECT_EQ(got, expected);
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.send_calls, 1u) << "the list was not sent as one gather write";
  EXPECT_EQ(stats.bytes_sent, expected.size());
}

TEST_P(ConnectedTest, SendMoreBuffersThanIovMax) {
  std::vector<std::string> storage;
  for (int i = 0; i < 3000; ++i) storage.push_back(absl::StrCat(i, ";"));
  std::vector<absl::string_view> buffers(storage.begin(), storage.end());
  std::string expected;
  for (const std::string& s : storage) expected += s;
  auto reader = ClientReadsAsync(expected.size());
  ASSERT_THAT(server_->Send(buffers), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_EQ(got, expected);
}

TEST_P(ConnectedTest, LargeSendWithAConcurrentReader) {
  const std::string big = Pattern(8 << 20, 11);
  auto reader = ClientReadsAsync(big.size());
  ASSERT_THAT(server_->Send(big), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big) << "the data arrived altered";
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_sent, big.size());
}

TEST_P(ConnectedTest, SendToAClosedPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  client_->Close();
  // The first writes may still be taken in; once the kernel knows the peer is gone,
  // every Send fails. The second failure is EPIPE, where SIGPIPE would be raised.
  const std::string chunk(4096, 'p');
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Send(chunk);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(IsConnectionLost(status));
  EXPECT_THAT(server_->Send(chunk), StatusIs(absl::StatusCode::kAborted));
  const std::vector<absl::string_view> pair = {"a", "b"};
  EXPECT_THAT(server_->Send(pair), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(ConnectedTest, SendToAResetPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  const std::string chunk(4096, 'r');
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Send(chunk);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(server_->Send(chunk), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(ConnectedTest, SendTimeoutWhenThePeerNeverReads) {
  // Small buffers keep what the kernel absorbs far below what is sent.
  ASSERT_THAT(client_->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_THAT(
      server_->SetOptions({SocketOption::SendBuffer(65536), SocketOption::SendTimeout(kShort)}),
      IsOk());
  const std::string big = Pattern(32 << 20, 5);
  const absl::Status status = server_->Send(big);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsTimeout(status));
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_GT(stats.bytes_sent, 0u);
  EXPECT_LT(stats.bytes_sent, big.size());
  EXPECT_GT(stats.send_pending, 0u) << "the unread bytes sit in the send queue";
  // A zero send_timeout never waits on a full buffer.
  ASSERT_THAT(server_->SetOptions({SocketOption::SendTimeout(absl::ZeroDuration())}), IsOk());
  EXPECT_THAT(server_->Send(std::string(1 << 20, 'z')),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  // What did go out arrives intact and in order.
  ASSERT_OK_AND_ASSIGN(std::string head, client_->Recv(4096, kGenerous));
  EXPECT_EQ(head, big.substr(0, 4096));
}

TEST_P(ConnectedTest, SendTimeoutFromTheListenerOptions) {
  TempDir other_dir;
  ASSERT_TRUE(other_dir.ok());
  ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<Listener> listener,
      ListenOn(GetParam(), other_dir,
               {.socket_options = {SocketOption::SendTimeout(absl::Milliseconds(80)),
                                   SocketOption::SendBuffer(65536)}}));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  ASSERT_THAT(client->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server->GetOptions({SocketOptionName::kSendTimeout}));
  EXPECT_THAT(got, ElementsAre(SocketOption::SendTimeout(absl::Milliseconds(80))));
  EXPECT_THAT(server->Send(Pattern(32 << 20)), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(ConnectedTest, SendOnAClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_THAT(server_->Send("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  const std::vector<absl::string_view> pair = {"x", "y"};
  EXPECT_THAT(server_->Send(pair), StatusIs(absl::StatusCode::kFailedPrecondition));
  const absl::string_view data = "x";
  EXPECT_THAT(server_->WriteSome(absl::MakeConstSpan(&data, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// =====================================================================================
// Sendfile
// =====================================================================================

class SendfileTest : public ConnectedTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ConnectedTest::SetUp());
    path_ = dir_.File("data.bin");
    content_ = Pattern(300000, 9);
    ASSERT_TRUE(WriteFile(path_, content_));
  }
  std::string path_;
  std::string content_;
};
INSTANTIATE_TEST_SUITE_P(AllNets, SendfileTest, testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix),
                         NetName);

TEST_P(SendfileTest, WholeFile) {
  auto reader = ClientReadsAsync(content_.size());
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, 0, 0));
  EXPECT_EQ(sent, content_.size());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_TRUE(got == content_);
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_sent, content_.size());
}

TEST_P(SendfileTest, OffsetAndLength) {
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, 1000, 5000));
  EXPECT_EQ(sent, 5000u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(5000, kGenerous));
  EXPECT_EQ(got, content_.substr(1000, 5000));
  // Nothing beyond the slice was sent.
  EXPECT_THAT(client_->Recv(0, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(SendfileTest, OffsetToTheEnd) {
  const uint64_t offset = content_.size() - 777;
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, offset, 0));
  EXPECT_EQ(sent, 777u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(777, kGenerous));
  EXPECT_EQ(got, content_.substr(offset));
}

TEST_P(SendfileTest, LengthPastTheEndIsClamped) {
  const uint64_t offset = content_.size() - 10;
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, offset, 1000));
  EXPECT_EQ(sent, 10u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(10, kGenerous));
  EXPECT_EQ(got, content_.substr(offset));
}

TEST_P(SendfileTest, OffsetAtTheEndSendsNothing) {
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, content_.size(), 0));
  EXPECT_EQ(sent, 0u);
}

TEST_P(SendfileTest, MissingFileIsNotFound) {
  EXPECT_THAT(server_->Sendfile(dir_.File("missing.bin"), 0, 0),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SendfileTest, OffsetPastTheEndIsInvalidArgument) {
  EXPECT_THAT(server_->Sendfile(path_, content_.size() + 1, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(server_->Sendfile(path_, content_.size() + 100, 5),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SendfileTest, DirectoryIsInvalidArgument) {
  const std::string sub = dir_.File("subdir");
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  EXPECT_THAT(server_->Sendfile(sub, 0, 0), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SendfileTest, ClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(SendfileTest, SendTimeoutWhenThePeerNeverReads) {
  const std::string big_path = dir_.File("big.bin");
  ASSERT_TRUE(WriteFile(big_path, Pattern(32 << 20, 2)));
  ASSERT_THAT(client_->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_THAT(
      server_->SetOptions({SocketOption::SendBuffer(65536), SocketOption::SendTimeout(kShort)}),
      IsOk());
  EXPECT_THAT(server_->Sendfile(big_path, 0, 0), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(SendfileTest, ResetPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  // Again: now it is EPIPE, the error that raises SIGPIPE.
  const absl::StatusOr<uint64_t> again = server_->Sendfile(path_, 0, 0);
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(SendfileTest, ClosedPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  client_->Close();
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

// A SIGPIPE that was pending before the call belongs to someone else: the guard must
// leave it pending.
TEST_P(SendfileTest, SigpipePendingForSomeoneElseIsLeftPending) {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigset_t saved;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &pipe, &saved), 0);
  ASSERT_EQ(::pthread_kill(::pthread_self(), SIGPIPE), 0);
  client_->Close();
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kAborted));
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 1) << "someone else's SIGPIPE was swallowed";
  // Consume it before unblocking.
  struct timespec zero = {};
  EXPECT_EQ(::sigtimedwait(&pipe, nullptr, &zero), SIGPIPE);
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &saved, nullptr), 0);
}

// =====================================================================================
// Options
// =====================================================================================

int64_t ProcMax(const char* path) {
  std::ifstream in(path);
  int64_t value = 0;
  in >> value;
  return value;
}

TEST_P(IpConnectedTest, EveryOptionRoundTrips) {
  const int64_t rmem_max = ProcMax("/proc/sys/net/core/rmem_max");
  const int64_t wmem_max = ProcMax("/proc/sys/net/core/wmem_max");
  ASSERT_GE(rmem_max, 4096);
  ASSERT_GE(wmem_max, 4096);
  const std::vector<SocketOption> options = {
      SocketOption::NoDelay(false),
      SocketOption::NoDelay(true),
      SocketOption::KeepAlive(true),
      SocketOption::KeepAlive(false),
      SocketOption::KeepIdle(absl::Seconds(77)),
      SocketOption::KeepIdle(absl::Seconds(1)),
      SocketOption::KeepIdle(absl::Seconds(32767)),
      SocketOption::KeepInterval(absl::Seconds(13)),
      SocketOption::KeepInterval(absl::Seconds(32767)),
      SocketOption::KeepCount(9),
      SocketOption::KeepCount(127),
      SocketOption::RecvBuffer(65536),
      SocketOption::RecvBuffer(4096),
      SocketOption::RecvBuffer(static_cast<int>(rmem_max)),
      SocketOption::SendBuffer(131072),
      SocketOption::SendBuffer(4096),
      SocketOption::SendBuffer(static_cast<int>(wmem_max)),
      SocketOption::Linger(absl::Seconds(7)),
      SocketOption::Linger(absl::ZeroDuration()),
      SocketOption::Linger(absl::Seconds(65535)),
      SocketOption::Linger(std::nullopt),
      SocketOption::Tos(0x20),
      SocketOption::Tos(0xb8),
      SocketOption::Tos(252),
      SocketOption::Tos(0),
      SocketOption::Priority(5),
      SocketOption::Priority(6),
      SocketOption::Priority(0),
      SocketOption::ReuseAddress(true),
      SocketOption::ReuseAddress(false),
      SocketOption::Blocking(false),
      SocketOption::SendTimeout(absl::Milliseconds(1500)),
      SocketOption::SendTimeout(absl::ZeroDuration()),
      SocketOption::SendTimeout(absl::Milliseconds(int64_t{1} << 31)),
      SocketOption::SendTimeout(absl::InfiniteDuration()),
  };
  for (const SocketOption& option : options) {
    SCOPED_TRACE(option.ToString());
    ASSERT_THAT(server_->SetOptions({option}), IsOk());
    ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got, server_->GetOptions({option.name()}));
    EXPECT_THAT(got, ElementsAre(option));
  }
}

// Linux derives SO_PRIORITY from IP_TOS; setting tos must leave priority as it was
// (found by //fuzz:setopts_fuzz).
TEST_P(IpConnectedTest, SettingTosLeavesPriorityAlone) {
  ASSERT_TRUE(server_->SetOptions({SocketOption::Priority(2)}).ok());
  for (int tos : {0x10, 0xb8, 0x20, 0}) {
    ASSERT_TRUE(server_->SetOptions({SocketOption::Tos(tos)}).ok()) << tos;
    auto read = server_->GetOptions({SocketOptionName::kTos, SocketOptionName::kPriority});
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ((*read)[0].value(), tos);
    EXPECT_EQ((*read)[1].value(), 2) << "tos " << tos << " moved the priority";
  }
}

TEST_P(IpConnectedTest, OptionsReachTheKernel) {
  const int fd = server_->fd();
  const bool v6 = GetParam() == Net::kIpv6;
  ASSERT_THAT(
      server_->SetOptions(
          {SocketOption::NoDelay(false), SocketOption::KeepAlive(true),
           SocketOption::KeepIdle(absl::Seconds(45)), SocketOption::KeepInterval(absl::Seconds(6)),
           SocketOption::KeepCount(4), SocketOption::Tos(0x28), SocketOption::Priority(4),
           SocketOption::RecvBuffer(32768), SocketOption::Linger(absl::Seconds(3))}),
      IsOk());
  EXPECT_EQ(GetIntOption(fd, IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_NE(GetIntOption(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_EQ(GetIntOption(fd, IPPROTO_TCP, TCP_KEEPIDLE), 45);
  EXPECT_EQ(GetIntOption(fd, IPPROTO_TCP, TCP_KEEPINTVL), 6);
  EXPECT_EQ(GetIntOption(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
  EXPECT_EQ(v6 ? GetIntOption(fd, IPPROTO_IPV6, IPV6_TCLASS) : GetIntOption(fd, IPPROTO_IP, IP_TOS),
            0x28);
  EXPECT_EQ(GetIntOption(fd, SOL_SOCKET, SO_PRIORITY), 4);
  EXPECT_EQ(GetIntOption(fd, SOL_SOCKET, SO_RCVBUF), 65536);  // the kernel doubles it
  struct linger l = {};
  socklen_t length = sizeof(l);
  ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &length), 0);
  EXPECT_EQ(l.l_onoff, 1);
  EXPECT_EQ(l.l_linger, 3);
}

TEST_P(IpConnectedTest, GetOptionsReturnsTheNamesInOrder) {
  ASSERT_THAT(server_->SetOptions({SocketOption::KeepCount(8), SocketOption::Priority(2),
                                   SocketOption::SendTimeout(absl::Seconds(2))}),
              IsOk());
  ASSERT_OK_AND_ASSIGN(
      std::vector<SocketOption> got,
      server_->GetOptions({SocketOptionName::kSendTimeout, SocketOptionName::kKeepCount,
                           SocketOptionName::kBlocking, SocketOptionName::kPriority,
                           SocketOptionName::kNoDelay}));
  EXPECT_THAT(got, ElementsAre(SocketOption::SendTimeout(absl::Seconds(2)),
                               SocketOption::KeepCount(8), SocketOption::Blocking(false),
                               SocketOption::Priority(2), SocketOption::NoDelay(true)));
  ASSERT_OK_AND_ASSIGN(got, server_->GetOptions({}));
  EXPECT_TRUE(got.empty());
}

TEST_P(ConnectedTest, DefaultOptionsOfAnAcceptedSocket) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<SocketOption> got,
      server_->GetOptions({SocketOptionName::kBlocking, SocketOptionName::kSendTimeout,
                           SocketOptionName::kLinger}));
  EXPECT_THAT(got, ElementsAre(SocketOption::Blocking(false),
                               SocketOption::SendTimeout(absl::InfiniteDuration()),
                               SocketOption::Linger(std::nullopt)));
}

TEST_P(ConnectedTest, BlockingTrueIsRefusedAndChangesNothing) {
  const bool ip = IsIp();
  std::vector<SocketOption> request = {SocketOption::KeepAlive(true),
                                       SocketOption::SendTimeout(absl::Seconds(3)),
                                       SocketOption::Blocking(true)};
  if (ip) request.insert(request.begin(), SocketOption::NoDelay(false));
  const absl::Status status = server_->SetOptions(request);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(status.message(), HasSubstr("blocking"));

  std::vector<SocketOptionName> names = {
      SocketOptionName::kKeepAlive, SocketOptionName::kSendTimeout, SocketOptionName::kBlocking};
  std::vector<SocketOption> unchanged = {SocketOption::KeepAlive(false),
                                         SocketOption::SendTimeout(absl::InfiniteDuration()),
                                         SocketOption::Blocking(false)};
  if (ip) {
    names.insert(names.begin(), SocketOptionName::kNoDelay);
    unchanged.insert(unchanged.begin(), SocketOption::NoDelay(true));
  }
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got, server_->GetOptions(names));
  EXPECT_EQ(got, unchanged);
  EXPECT_NE(::fcntl(server_->fd(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_P(IpConnectedTest, OutOfRangeValuesAreRefusedAndChangeNothing) {
  const int64_t rmem_max = ProcMax("/proc/sys/net/core/rmem_max");
  const int64_t wmem_max = ProcMax("/proc/sys/net/core/wmem_max");
  const std::vector<SocketOption> bad = {
      SocketOption::Raw(SocketOptionName::kNoDelay, 2),
      SocketOption::Raw(SocketOptionName::kKeepAlive, -1),
      SocketOption::KeepIdle(absl::ZeroDuration()),
      SocketOption::KeepIdle(absl::Seconds(32768)),
      SocketOption::KeepInterval(absl::ZeroDuration()),
      SocketOption::KeepInterval(absl::Seconds(40000)),
      SocketOption::KeepCount(0),
      SocketOption::KeepCount(128),
      SocketOption::RecvBuffer(4095),
      SocketOption::Raw(SocketOptionName::kRecvBuffer, rmem_max + 1),
      SocketOption::SendBuffer(1024),
      SocketOption::Raw(SocketOptionName::kSendBuffer, wmem_max + 1),
      SocketOption::Raw(SocketOptionName::kLinger, -2),
      SocketOption::Linger(absl::Seconds(65536)),
      SocketOption::Tos(256),
      SocketOption::Tos(-1),
      SocketOption::Tos(1),
      SocketOption::Tos(0x22),
      SocketOption::Priority(7),
      SocketOption::Priority(-1),
      SocketOption::Raw(SocketOptionName::kReuseAddress, 5),
      SocketOption::Blocking(true),
      SocketOption::Raw(SocketOptionName::kBlocking, -1),
      SocketOption::Raw(SocketOptionName::kSendTimeout, -2),
      SocketOption::Raw(SocketOptionName::kSendTimeout, (int64_t{1} << 31) + 1),
      SocketOption::Raw(static_cast<SocketOptionName>(kSocketOptionNameCount), 0),
  };
  const std::vector<SocketOptionName> watched = {
      SocketOptionName::kNoDelay, SocketOptionName::kKeepIdle, SocketOptionName::kPriority,
      SocketOptionName::kLinger, SocketOptionName::kSendTimeout};
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> before, server_->GetOptions(watched));
  for (const SocketOption& option : bad) {
    SCOPED_TRACE(option.ToString());
    // Valid changes first, the bad option last: none of them may stick.
    const absl::Status status = server_->SetOptions(
        {SocketOption::NoDelay(false), SocketOption::KeepIdle(absl::Seconds(99)),
         SocketOption::Priority(1), SocketOption::Linger(absl::Seconds(2)),
         SocketOption::SendTimeout(absl::Seconds(9)), option});
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(status.message(), HasSubstr(std::string(SocketOptionNameString(option.name()))));
    ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> after, server_->GetOptions(watched));
    EXPECT_EQ(after, before);
  }
}

TEST_P(UnixConnectedTest, TcpOnlyOptionsAreRefusedOnUnixSockets) {
  for (const SocketOption& option :
       {SocketOption::NoDelay(true), SocketOption::KeepIdle(absl::Seconds(5)),
        SocketOption::KeepInterval(absl::Seconds(5)), SocketOption::KeepCount(3),
        SocketOption::Tos(0x20)}) {
    SCOPED_TRACE(option.ToString());
    const absl::Status status =
        server_->SetOptions({SocketOption::KeepAlive(true), SocketOption::Priority(3), option});
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(status.message(), HasSubstr(std::string(SocketOptionNameString(option.name()))));
    EXPECT_THAT(server_->GetOptions({option.name()}), StatusIs(absl::StatusCode::kInvalidArgument));
    ASSERT_OK_AND_ASSIGN(
        std::vector<SocketOption> got,
        server_->GetOptions({SocketOptionName::kKeepAlive, SocketOptionName::kPriority}));
    EXPECT_THAT(got, ElementsAre(SocketOption::KeepAlive(false), SocketOption::Priority(0)));
  }
}

TEST_P(UnixConnectedTest, SocketLevelOptionsRoundTripOnUnixSockets) {
  for (const SocketOption& option :
       {SocketOption::KeepAlive(true), SocketOption::RecvBuffer(65536),
        SocketOption::SendBuffer(65536), SocketOption::Linger(absl::Seconds(4)),
        SocketOption::Linger(std::nullopt), SocketOption::Priority(2),
        SocketOption::ReuseAddress(true), SocketOption::Blocking(false),
        SocketOption::SendTimeout(absl::Milliseconds(250))}) {
    SCOPED_TRACE(option.ToString());
    ASSERT_THAT(server_->SetOptions({option}), IsOk());
    ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got, server_->GetOptions({option.name()}));
    EXPECT_THAT(got, ElementsAre(option));
  }
}

TEST_P(ConnectedTest, OptionsOnAClosedSocketAreFailedPrecondition) {
  server_->Close();
  EXPECT_THAT(server_->GetOptions({SocketOptionName::kKeepAlive}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server_->GetOptions({SocketOptionName::kSendTimeout}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server_->SetOptions({SocketOption::KeepAlive(true)}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// =====================================================================================
// Shutdown, Close, info, stats
// =====================================================================================

TEST_P(ConnectedTest, ShutdownWriteSendsEofAndKeepsReceiving) {
  ASSERT_THAT(server_->Send("last words"), IsOk());
  ASSERT_THAT(server_->Shutdown(ShutdownWay::kWrite), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(10, kGenerous));
  EXPECT_EQ(got, "last words");
  EXPECT_THAT(client_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  // Our read side still works.
  ASSERT_THAT(client_->Send("reply"), IsOk());
  ASSERT_OK_AND_ASSIGN(got, server_->Recv(5, kGenerous));
  EXPECT_EQ(got, "reply");
  // But we cannot write any more.
  EXPECT_THAT(server_->Send("more"), Not(IsOk()));
}

TEST_P(ConnectedTest, ShutdownReadEndsReceivingButNotSending) {
  ASSERT_THAT(server_->Shutdown(ShutdownWay::kRead), IsOk());
  EXPECT_THAT(server_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  ASSERT_THAT(server_->Send("still"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(5, kGenerous));
  EXPECT_EQ(got, "still");
}

TEST_P(ConnectedTest, ShutdownBothWays) {
  ASSERT_THAT(server_->Shutdown(ShutdownWay::kReadWrite), IsOk());
  EXPECT_THAT(client_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_THAT(server_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  // Shutting down what is already shut down is fine.
  EXPECT_THAT(server_->Shutdown(ShutdownWay::kReadWrite), IsOk());
}

TEST_P(ConnectedTest, CloseIsIdempotentAndEveryLaterCallFails) {
  EXPECT_FALSE(server_->IsClosed());
  server_->Close();
  server_->Close();
  EXPECT_TRUE(server_->IsClosed());
  EXPECT_LT(server_->fd(), 0);
  const auto kClosed = absl::StatusCode::kFailedPrecondition;
  EXPECT_THAT(server_->Shutdown(ShutdownWay::kWrite), StatusIs(kClosed));
  EXPECT_THAT(server_->LocalInfo(), StatusIs(kClosed));
  EXPECT_THAT(server_->PeerInfo(), StatusIs(kClosed));
  EXPECT_THAT(server_->GetStat(), StatusIs(kClosed));
  char buf[4];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(kClosed));
  // The peer sees an orderly close.
  EXPECT_THAT(client_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_P(ConnectedTest, GetStatCountsBytesAndCalls) {
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_received, 0u);
  EXPECT_EQ(stats.receive_calls, 0u);
  EXPECT_EQ(stats.bytes_sent, 0u);
  EXPECT_EQ(stats.send_calls, 0u);
  EXPECT_EQ(stats.send_pending, 0u);

  ASSERT_THAT(client_->Send("hello"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(5, kGenerous));
  ASSERT_THAT(client_->Send("0123456789"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(got, server_->Recv(10, kGenerous));
  ASSERT_THAT(server_->Send("abc"), IsOk());
  const std::vector<absl::string_view> three = {"de", "f", "gh"};
  ASSERT_THAT(server_->Send(three), IsOk());

  ASSERT_OK_AND_ASSIGN(stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_received, 15u);
  EXPECT_EQ(stats.receive_calls, 2u);
  EXPECT_EQ(stats.largest_receive, 10u);
  EXPECT_EQ(stats.bytes_sent, 8u);
  EXPECT_EQ(stats.send_calls, 2u);
  EXPECT_EQ(stats.largest_send, 5u);

  ASSERT_OK_AND_ASSIGN(got, client_->Recv(8, kGenerous));
  EXPECT_EQ(got, "abcdefgh");
  ASSERT_OK_AND_ASSIGN(SocketStats client_stats, client_->GetStat());
  EXPECT_EQ(client_stats.bytes_sent, 15u);
  EXPECT_EQ(client_stats.send_calls, 2u);
  EXPECT_EQ(client_stats.bytes_received, 8u);
  EXPECT_GE(client_stats.receive_calls, 1u);

  // Bytes kept by a timed-out Recv were counted when they were read, once.
  ASSERT_THAT(client_->Send("xy"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  EXPECT_THAT(server_->Recv(4, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
  ASSERT_OK_AND_ASSIGN(got, server_->Recv(0, kGenerous));
  EXPECT_EQ(got, "xy");
  ASSERT_OK_AND_ASSIGN(stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_received, 17u);
  EXPECT_EQ(stats.receive_calls, 3u);
}

TEST_P(ConnectedTest, PlainTransportFacts) {
  EXPECT_FALSE(server_->Secure());
  EXPECT_FALSE(client_->Secure());
  const absl::StatusOr<std::string> protocol = server_->NegotiatedProtocol();
  EXPECT_THAT(protocol, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(protocol.status().message(), HasSubstr("not negotiated"));
  EXPECT_THAT(server_->Handshake(kGenerous), IsOk());
  EXPECT_THAT(server_->Handshake(absl::ZeroDuration()), IsOk());
  EXPECT_THAT(client_->Handshake(absl::InfiniteDuration()), IsOk());
  ASSERT_OK_AND_ASSIGN(IoInterest step, server_->HandshakeStep());
  EXPECT_EQ(step, IoInterest::kNone);
  EXPECT_EQ(client_->family(), GetParam() == Net::kIpv4   ? AddressFamily::kIpv4
                               : GetParam() == Net::kIpv6 ? AddressFamily::kIpv6
                                                          : AddressFamily::kUnix);
  // The handshake moved no data.
  ASSERT_THAT(client_->Send("ok"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(2, kGenerous));
  EXPECT_EQ(got, "ok");
}

}  // namespace
}  // namespace islet
