#include "shout.h"

#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/tcp_transport.h"

namespace consumer {
namespace {

TEST(ShoutTest, AnswersInCapitalsOverLoopback) {
  auto server = StartShoutServer(0);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = islet::TcpSocket::Connect(*(*server)->ListenerInfo(), absl::Seconds(10));
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_THAT((*client)->Send("hello islet\n"), islet::IsOk());
  EXPECT_THAT((*client)->Recv(12, absl::Seconds(10)), islet::IsOkAndHolds("HELLO ISLET\n"));
}

TEST(ShoutTest, BadTlsCredentialsFailToStart) {
  auto server = StartShoutServer(0, islet::TlsCredentials::FromFiles("/missing.pem", "/missing.key"));
  EXPECT_FALSE(server.ok());
}

}  // namespace
}  // namespace consumer
