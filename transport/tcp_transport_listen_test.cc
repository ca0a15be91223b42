// Tests of TcpTransport::Listen over real sockets on 127.0.0.1, [::1] and unix sockets
// in a fresh temporary directory: addresses, ports, options given to the listener, and
// the life of a unix socket file. Shared helpers: tcp_transport_test_util.h.
#include "transport/tcp_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "transport/posix_socket.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/tcp_transport_test_util.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

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
    ASSERT_OK_AND_ASSIGN(PosixAddress address, UnixAddress(path));
    ASSERT_EQ(::bind(dead.get(), address.get(), address.length), 0);
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
  ASSERT_TRUE(WriteFileAt(path, "precious"));
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

}  // namespace
}  // namespace islet
