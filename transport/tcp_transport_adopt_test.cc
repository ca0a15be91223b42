// TcpTransport::Adopt and Listener::Release: a listening socket opened elsewhere, and
// letting go of one that another holder keeps. Over IPv4, IPv6 and unix sockets.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/tcp_transport.h"
#include "transport/tcp_transport_test_util.h"

namespace islet {
namespace {


class AdoptTest : public ::testing::TestWithParam<Net> {
 protected:
  // A listener opened the ordinary way, and a second one adopting a duplicate of its
  // socket, as a successor process would.
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    absl::StatusOr<std::unique_ptr<Listener>> own = ListenOn(GetParam(), dir_);
    if (GetParam() == Net::kIpv6 && !own.ok()) GTEST_SKIP() << "no IPv6: " << own.status();
    ASSERT_THAT(own, IsOk());
    own_ = *std::move(own);
    UniqueFd copy(::fcntl(own_->fd(), F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(copy.valid());
    absl::StatusOr<std::unique_ptr<Listener>> adopted = tcp_.Adopt(std::move(copy), {});
    ASSERT_THAT(adopted, IsOk());
    adopted_ = *std::move(adopted);
  }

  TempDir dir_;
  TcpTransport tcp_;
  std::shared_ptr<Listener> own_;
  std::shared_ptr<Listener> adopted_;
};

INSTANTIATE_TEST_SUITE_P(Nets, AdoptTest,
                         ::testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix),
                         NetName);

TEST_P(AdoptTest, TheAdoptedListenerAcceptsFromTheSameSocket) {
  EXPECT_THAT(adopted_->LocalInfo(), IsOkAndHolds(*own_->LocalInfo()));
  EXPECT_NE(::fcntl(adopted_->fd(), F_GETFD) & FD_CLOEXEC, 0);
  EXPECT_NE(::fcntl(adopted_->fd(), F_GETFL) & O_NONBLOCK, 0);
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = ConnectTo(*own_);
  ASSERT_THAT(client, IsOk());
  absl::StatusOr<std::unique_ptr<Socket>> served = AcceptWithin(adopted_);
  ASSERT_THAT(served, IsOk());
  ASSERT_THAT((*client)->Send("x"), IsOk());
  EXPECT_THAT((*served)->Recv(1, kGenerous), IsOkAndHolds("x"));
}

TEST_P(AdoptTest, ReleaseLeavesTheSocketListeningForTheOtherHolder) {
  const SocketInfo where = *own_->LocalInfo();
  own_->Release();
  EXPECT_THAT(own_->TryAccept(), StatusIs(absl::StatusCode::kFailedPrecondition));
  own_.reset();  // our descriptor closes
  if (GetParam() == Net::kUnix) {
    EXPECT_TRUE(Exists(where.address));
  }
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(where, kGenerous);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT(AcceptWithin(adopted_), IsOk());
}

TEST_P(AdoptTest, AnAdoptedListenerClosesAsItReleases) {
  const SocketInfo where = *own_->LocalInfo();
  adopted_->Close();
  EXPECT_THAT(adopted_->TryAccept(), StatusIs(absl::StatusCode::kFailedPrecondition));
  adopted_.reset();
  if (GetParam() == Net::kUnix) {
    EXPECT_TRUE(Exists(where.address));
  }
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(where, kGenerous);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT(AcceptWithin(own_), IsOk());
}

TEST_P(AdoptTest, CloseOfTheOwnListenerStopsTheSocketForEveryHolder) {
  // Why Release exists: shutdown(2) acts on the socket, not on one descriptor.
  own_->Close();
  EXPECT_THAT(adopted_->TryAccept(), testing::Not(IsOk()));
}

TEST(AdoptRefusalTest, WhatIsNotAListeningStreamSocketIsRefusedByName) {
  TcpTransport tcp;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ::close(pipe_fds[1]);
  EXPECT_THAT(tcp.Adopt(UniqueFd(pipe_fds[0]), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a socket"));
  EXPECT_THAT(tcp.Adopt(UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not a stream socket"));
  EXPECT_THAT(tcp.Adopt(UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "not listening"));
  EXPECT_THAT(tcp.Adopt(UniqueFd(), {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace islet
