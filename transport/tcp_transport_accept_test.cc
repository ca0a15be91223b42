// Tests of accepting and connecting with the TCP transport over real sockets: what an
// accepted socket is, blocking Accept and Close, running out of descriptors, and
// Connect's errors and backlog. Shared helpers: tcp_transport_test_util.h.
#include "transport/tcp_transport.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
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
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "transport/errors.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/tcp_transport_test_util.h"
#include "transport/transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

INSTANTIATE_TEST_SUITE_P(AllNets, ConnectedTest,
                         testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix), NetName);
INSTANTIATE_TEST_SUITE_P(IpNets, IpConnectedTest, testing::Values(Net::kIpv4, Net::kIpv6), NetName);

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

// A connection reset while it waits to be accepted is still accepted (Linux hands it
// over), and getpeername(2) then has no address for it: PeerInfo reports the one
// accept(2) returned. Before, it failed (ENOTCONN), and the server said remote=:0.
TEST_P(IpConnectedTest, PeerInfoOfAConnectionResetBeforeAcceptIsItsRealAddress) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, ListenOn(GetParam(), dir));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpSocket> client, ConnectTo(*listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo client_local, client->LocalInfo());
  const linger reset = {1, 0};
  ASSERT_EQ(::setsockopt(client->fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  client->Close();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  EXPECT_EQ(peer, client_local);
  // The descriptor itself has nothing left to say: the address came from accept(2).
  sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  EXPECT_NE(::getpeername(server->fd(), reinterpret_cast<sockaddr*>(&storage), &length), 0);
}

// A descriptor accepted from fd() by someone else (an io_uring loop's multishot accept,
// which gives no address) becomes the socket TryAccept would have made: its peer, its
// options (a send timeout is not inherited from the listener, so it is set), its data.
TEST_P(ConnectedTest, AdoptAcceptedMakesTheSocketTryAcceptWould) {
  ListenOptions options;
  options.socket_options.push_back(SocketOption::SendTimeout(absl::Seconds(7)));
  TempDir dir;  // the fixture's listener has dir_'s socket path
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<Listener> listener, ListenOn(GetParam(), dir, options));
  ASSERT_TRUE(listener->CanAdoptAccepted());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpSocket> client, ConnectTo(*listener));
  ASSERT_THAT(client->Send("hello"), IsOk());
  const int fd = ::accept4(listener->fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, listener->AdoptAccepted(UniqueFd(fd)));
  EXPECT_EQ(server->fd(), fd);
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  ASSERT_OK_AND_ASSIGN(SocketInfo client_local, client->LocalInfo());
  EXPECT_EQ(peer, client_local);
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server->GetOptions({SocketOptionName::kBlocking,
                                           SocketOptionName::kSendTimeout}));
  EXPECT_THAT(got, ElementsAre(SocketOption::Blocking(false),
                               SocketOption::SendTimeout(absl::Seconds(7))));
  EXPECT_THAT(server->Recv(5, kGenerous), IsOkAndHolds("hello"));
  ASSERT_THAT(server->Send("back"), IsOk());
  EXPECT_THAT(client->Recv(4, kGenerous), IsOkAndHolds("back"));
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
  absl::StatusOr<ChildPid> child = ForkChild([] {
    ::alarm(30);  // a hang in the child ends it
    return EmfileChild();
  });
  ASSERT_THAT(child, IsOk());
  // Killed and reaped (by ChildPid) if it has not finished by then.
  std::optional<int> status = child->Wait(absl::Seconds(40));
  ASSERT_TRUE(status.has_value()) << "the child did not finish";
  ASSERT_TRUE(WIFEXITED(*status)) << "child died of signal " << WTERMSIG(*status);
  // 2x: Accept did not report ResourceExhausted/EMFILE; 3x: it did not recover.
  EXPECT_EQ(WEXITSTATUS(*status), 0);
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

}  // namespace
}  // namespace islet
