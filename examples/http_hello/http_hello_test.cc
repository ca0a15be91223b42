#include "examples/http_hello/http_hello.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"

namespace islet::examples {
namespace {

constexpr absl::string_view kGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
std::string Hello() {
  return "HTTP/1.1 200 OK\r\nServer: islet\r\nContent-Type: text/plain\r\n"
         "Content-Length: 12\r\n\r\nHello world!";
}

const size_t kHelloSize = Hello().size();

class HttpHelloTest : public ::testing::Test {
 protected:
  ExampleServer server_{HandlerFactoryOf<HttpHelloHandler>(), HttpHelloOptions{}};
};

TEST_F(HttpHelloTest, KeepAliveServesManyRequestsOnOneConnection) {
  auto client = server_.Connect();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client->Send(kGet).ok());
    EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
  }
}

TEST_F(HttpHelloTest, PipelinedRequestsGetTheirResponsesInOrder) {
  auto client = server_.Connect();
  std::string sixteen;
  for (int i = 0; i < 16; ++i) absl::StrAppend(&sixteen, kGet);
  ASSERT_TRUE(client->Send(sixteen).ok());
  auto got = client->Recv(16 * kHelloSize, absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  std::string expected;
  for (int i = 0; i < 16; ++i) expected += Hello();
  EXPECT_EQ(*got, expected);
}

TEST_F(HttpHelloTest, RequestsSplitAnywhereAreReassembled) {
  auto client = server_.Connect();
  const std::string request =
      "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789";
  // Byte by byte: every split point of the head and the body.
  for (char c : request) ASSERT_TRUE(client->Send(absl::string_view(&c, 1)).ok());
  ASSERT_TRUE(client->Send(kGet).ok());
  auto got = client->Recv(2 * kHelloSize, absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, Hello() + Hello());
}

TEST_F(HttpHelloTest, BodyThatLooksLikeARequestIsSkippedNotServed) {
  auto client = server_.Connect();
  const std::string body(kGet);
  ASSERT_TRUE(client->Send(absl::StrCat("PUT / HTTP/1.1\r\nContent-Length: ", body.size(),
                                        "\r\n\r\n", body, kGet))
                  .ok());
  // Two requests, two responses: the GET inside the body is only body.
  EXPECT_EQ(*client->Recv(2 * kHelloSize, absl::Seconds(10)), Hello() + Hello());
  EXPECT_TRUE(absl::IsDeadlineExceeded(client->Recv(1, absl::Milliseconds(200)).status()));
}

TEST_F(HttpHelloTest, ConnectionCloseGetsTheResponseThenAnOrderlyClose) {
  auto client = server_.Connect();
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::StartsWith(got.data, "HTTP/1.1 200 OK\r\n")) << got.data;
  EXPECT_TRUE(absl::StrContains(got.data, "Connection: close\r\n")) << got.data;
  EXPECT_TRUE(absl::EndsWith(got.data, "Hello world!")) << got.data;
}

TEST_F(HttpHelloTest, Http10ClosesUnlessAskedToKeepAlive) {
  auto once = server_.Connect();
  ASSERT_TRUE(once->Send("GET / HTTP/1.0\r\n\r\n").ok());
  ReadToEnd got = ReadUntilClosed(*once);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::EndsWith(got.data, "Hello world!"));

  auto kept = server_.Connect();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(kept->Send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").ok());
    auto reply = kept->Recv(0, absl::Seconds(10));
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_TRUE(absl::StrContains(*reply, "Connection: keep-alive")) << *reply;
  }
}

// The error response must be readable although the client keeps sending: the server
// half-closes and drains rather than resetting.
void ExpectRejected(ExampleServer& server, absl::string_view request, absl::string_view status) {
  auto client = server.Connect();
  ASSERT_TRUE(client->Send(request).ok());
  client->Send(std::string(4096, 'x')).IgnoreError();  // more garbage after the error
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::StartsWith(got.data, absl::StrCat("HTTP/1.1 ", status, "\r\n"))) << got.data;
  EXPECT_TRUE(absl::StrContains(got.data, "Connection: close")) << got.data;
}

TEST_F(HttpHelloTest, MalformedRequestLinesGet400) {
  ExpectRejected(server_, "GARBAGE\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET / HTTP/9.9\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET  / HTTP/1.1\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "G(T / HTTP/1.1\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 "400 Bad Request");
  ExpectRejected(server_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 13),
                 "400 Bad Request");
}

TEST_F(HttpHelloTest, OversizedHeadIsRefusedWithoutBufferingIt) {
  ExpectRejected(server_, absl::StrCat("GET / HTTP/1.1\r\nX-Big: ", std::string(9000, 'a')),
                 "431 Request Header Fields Too Large");
}

TEST_F(HttpHelloTest, ChunkedBodiesAreRefused) {
  ExpectRejected(server_, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "501 Not Implemented");
}

}  // namespace
}  // namespace islet::examples
