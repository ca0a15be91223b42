#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/server.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

class Echo : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    EXPECT_TRUE(conn.Send(data).ok());
    return HandlerResult::Continue();
  }
};

TEST(ServerSmoke, EchoesOverLoopback) {
  ServerOptions options;
  options.port = 0;
  options.transport_options.address = "127.0.0.1";
  options.handler_factory = HandlerFactoryOf<Echo>();
  auto server = Server::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  auto where = (*server)->ListenerInfo();
  ASSERT_TRUE(where.ok());
  for (int i = 0; i < 3; ++i) {
    auto client = TcpSocket::Connect(*where, absl::Seconds(10));
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Send("hello").ok());
    auto got = (*client)->Recv(5, absl::Seconds(10));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, "hello");
  }
  EXPECT_TRUE((*server)->Stop().ok());
}

}  // namespace
}  // namespace islet
