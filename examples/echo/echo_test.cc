#include "examples/echo/echo.h"

#include <string>

#include "examples/example_test_util.h"
#include "gtest/gtest.h"

namespace islet::examples {
namespace {

TEST(EchoTest, EchoesEveryByteInOrderOnManyConnections) {
  ExampleServer server(HandlerFactoryOf<EchoHandler>());
  std::string big(300 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  for (int c = 0; c < 3; ++c) {
    auto client = server.Connect();
    ASSERT_TRUE(client->Send("hello\n").ok());
    EXPECT_EQ(*client->Recv(6, absl::Seconds(10)), "hello\n");
    // Larger than any socket buffer: the server must queue and keep order.
    ASSERT_TRUE(client->Send(big).ok());
    auto back = client->Recv(big.size(), absl::Seconds(30));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(*back == big);
  }
}

}  // namespace
}  // namespace islet::examples
