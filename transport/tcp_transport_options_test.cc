// Tests of socket options (SetOptions / GetOptions against what the kernel reports),
// Shutdown, Close, the info calls and GetStat on connected TCP and unix sockets.
// Shared helpers: tcp_transport_test_util.h.
#include "transport/tcp_transport.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/errors.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/tcp_transport_test_util.h"
#include "transport/transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

INSTANTIATE_TEST_SUITE_P(AllNets, ConnectedTest,
                         testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix), NetName);
INSTANTIATE_TEST_SUITE_P(IpNets, IpConnectedTest, testing::Values(Net::kIpv4, Net::kIpv6), NetName);
INSTANTIATE_TEST_SUITE_P(Unix, UnixConnectedTest, testing::Values(Net::kUnix), NetName);

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
