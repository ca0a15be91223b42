#include "examples/http_hello/http_hello.h"

#include <algorithm>
#include <any>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"
#include "server/telemetry.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

namespace islet::examples {
namespace {

constexpr absl::string_view kGet = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
constexpr absl::string_view kGet10KeepAlive = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
std::string Hello() {
  return "HTTP/1.1 200 OK\r\nServer: islet\r\nContent-Type: text/plain\r\n"
         "Content-Length: 12\r\n\r\nHello world!";
}
std::string HelloKeepAlive10() {
  return "HTTP/1.1 200 OK\r\nServer: islet\r\nContent-Type: text/plain\r\n"
         "Content-Length: 12\r\nConnection: keep-alive\r\n\r\nHello world!";
}
std::string HelloClose() {
  return "HTTP/1.1 200 OK\r\nServer: islet\r\nContent-Type: text/plain\r\n"
         "Content-Length: 12\r\nConnection: close\r\n\r\nHello world!";
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

// More requests in one read than one response view or one Send carries: the handler
// batches its responses, and the batches must come out whole and in order.
TEST_F(HttpHelloTest, ManyPipelinedRequestsInOneRead) {
  auto client = server_.Connect();
  std::string requests;
  std::string expected;
  for (int i = 0; i < 300; ++i) {
    absl::StrAppend(&requests, kGet);
    expected += Hello();
  }
  ASSERT_TRUE(client->Send(requests).ok());
  auto got = client->Recv(expected.size(), absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, expected);
  EXPECT_TRUE(absl::IsDeadlineExceeded(client->Recv(1, absl::Milliseconds(200)).status()));
}

TEST_F(HttpHelloTest, AlternatingResponsesInOneReadKeepTheirOrder) {
  auto client = server_.Connect();
  std::string requests;
  std::string expected;
  // Runs of every length, so that no two neighbouring responses are alike at times.
  for (int run = 1; run <= 40; ++run) {
    for (int i = 0; i < run; ++i) {
      absl::StrAppend(&requests, (run % 2 == 0) ? kGet : kGet10KeepAlive);
      expected += (run % 2 == 0) ? Hello() : HelloKeepAlive10();
    }
  }
  ASSERT_TRUE(client->Send(requests).ok());
  auto got = client->Recv(expected.size(), absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, expected);
}

TEST_F(HttpHelloTest, CloseInsideABatchEndsIt) {
  auto client = server_.Connect();
  ASSERT_TRUE(client
                  ->Send(absl::StrCat(kGet, kGet10KeepAlive, kGet,
                                      "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", kGet, kGet))
                  .ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  // Nothing after the close: the requests behind it are not served.
  EXPECT_EQ(got.data, Hello() + HelloKeepAlive10() + Hello() + HelloClose());
}

TEST_F(HttpHelloTest, ErrorInsideABatchFollowsTheResponsesBeforeIt) {
  auto client = server_.Connect();
  ASSERT_TRUE(client->Send(absl::StrCat(kGet, kGet, "G(T / HTTP/1.1\r\n\r\n", kGet)).ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::StartsWith(got.data, Hello() + Hello() + "HTTP/1.1 400 Bad Request\r\n"))
      << got.data;
  EXPECT_TRUE(absl::EndsWith(got.data, "\r\n\r\nBad Request\n")) << got.data;
}

// A bad line ends the batch as soon as it is complete: the good requests before it in
// the same read are answered first, in order, and nothing waits for a blank line.
TEST_F(HttpHelloTest, BadLineAfterPipelinedRequestsIsAnsweredAfterThemAtOnce) {
  for (absl::string_view bad : {absl::string_view("GET / HTTP/9.9\r\n"),
                                absl::string_view("GET / HTTP/1.1\r\nNo colon here\r\n")}) {
    SCOPED_TRACE(absl::CEscape(bad));
    auto client = server_.Connect();
    ASSERT_TRUE(client->Send(absl::StrCat(kGet, kGet10KeepAlive, kGet, bad)).ok());
    ReadToEnd got = ReadUntilClosed(*client);
    EXPECT_TRUE(got.orderly_close) << got.last;
    const std::string before = Hello() + HelloKeepAlive10() + Hello();
    EXPECT_TRUE(absl::StartsWith(got.data, before + "HTTP/1.1 ")) << absl::CEscape(got.data);
    EXPECT_EQ(got.data.find("HTTP/1.1 ", before.size() + 1), std::string::npos)
        << "one error response only: " << absl::CEscape(got.data);
  }
}

// Each split point gets its own read: the pause lets the server take the first part
// alone (were it to take both at once, the test would only be weaker, not wrong).
TEST_F(HttpHelloTest, RequestSplitAtEveryByteBoundary) {
  const std::string requests = absl::StrCat(
      "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", kGet10KeepAlive, kGet);
  const std::string expected = Hello() + HelloKeepAlive10() + Hello();
  auto client = server_.Connect();
  for (size_t cut = 1; cut < requests.size(); ++cut) {
    ASSERT_TRUE(client->Send(absl::string_view(requests).substr(0, cut)).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(client->Send(absl::string_view(requests).substr(cut)).ok());
    auto got = client->Recv(expected.size(), absl::Seconds(10));
    ASSERT_TRUE(got.ok()) << "cut at " << cut << ": " << got.status();
    ASSERT_EQ(*got, expected) << "cut at " << cut;
  }
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
  ExpectRejected(server_, "GET / HTTP/1.1x\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET / HTTP/1.10\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET / http/1.1\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET /\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET  / HTTP/1.1\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "G(T / HTTP/1.1\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", "400 Bad Request");
  ExpectRejected(server_, "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 "400 Bad Request");
  ExpectRejected(server_, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n", 13),
                 "400 Bad Request");
}

// A well-formed version other than HTTP/1.x is refused as unsupported, not malformed.
TEST_F(HttpHelloTest, UnsupportedVersionsGet505) {
  ExpectRejected(server_, "GET / HTTP/9.9\r\n\r\n", "505 HTTP Version Not Supported");
  ExpectRejected(server_, "GET / HTTP/2.0\r\n\r\n", "505 HTTP Version Not Supported");
  ExpectRejected(server_, "GET / HTTP/0.9\r\n\r\n", "505 HTTP Version Not Supported");
}

// A later minor version of HTTP/1 is served as HTTP/1.1 (RFC 9110, section 2.5).
TEST_F(HttpHelloTest, LaterHttp1MinorVersionIsServedAsHttp11) {
  auto client = server_.Connect();
  ASSERT_TRUE(client->Send("GET / HTTP/1.2\r\nHost: x\r\n\r\n").ok());
  EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
}

TEST_F(HttpHelloTest, OversizedHeadIsRefusedWithoutBufferingIt) {
  ExpectRejected(server_, absl::StrCat("GET / HTTP/1.1\r\nX-Big: ", std::string(9000, 'a')),
                 "431 Request Header Fields Too Large");
}

// Whichever comes first in the head decides: a bad line complete within the size
// limit, or the limit.
TEST_F(HttpHelloTest, FirstFaultInTheHeadDecides) {
  ExpectRejected(server_, absl::StrCat("G(T / HTTP/1.1\r\nX-Big: ", std::string(9000, 'a')),
                 "400 Bad Request");
  ExpectRejected(server_,
                 absl::StrCat("GET / HTTP/1.1\r\nX-Big: ", std::string(9000, 'a'),
                              "\r\nNo colon\r\n\r\n"),
                 "431 Request Header Fields Too Large");
}

// A bad line is answered as soon as its line end arrives: the client gets the status
// line and the close without sending anything more (no blank line). The clients run
// side by side, so that a server that waits costs the test one timeout, not one each.
TEST_F(HttpHelloTest, BadLineIsAnsweredAsSoonAsItIsComplete) {
  struct Case {
    absl::string_view sent;
    absl::string_view status;
  };
  const Case cases[] = {
      {absl::string_view("\x01\x02 garbage\r\n"), "400 Bad Request"},
      {"GET / HTTP/9.9\r\n", "505 HTTP Version Not Supported"},
      {"GET / HTTP/2.0\r\n", "505 HTTP Version Not Supported"},
      {"GET / HTTP/1.1\r\nNo colon here\r\n", "400 Bad Request"},
      {"GET / HTTP/1.1\r\nHost: x\r\nHost : x\r\n", "400 Bad Request"},  // space before ':'
      {"GET / HTTP/1.1\r\n folded: x\r\n", "400 Bad Request"},            // obs-fold
      {" / HTTP/1.1\r\n", "400 Bad Request"},                               // no method
      {"GET  HTTP/1.1\r\n", "400 Bad Request"},                             // no target
      {"GET / HTTP/1.1\r\nHo\x01st: x\r\n", "400 Bad Request"},             // a control
      {"GET / HTTP/1.1\nHost: x\n", "400 Bad Request"},                      // bare LF
      {"GET / HTTP/1.1\r\nHost: x\n", "400 Bad Request"},                    // bare LF
      {"\n", "400 Bad Request"},                                             // bare LF
      {"POST / HTTP/1.1\r\nContent-Length: 5x\r\n", "400 Bad Request"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", "501 Not Implemented"},
  };
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (const Case& c : cases) {
    clients.push_back(server_.Connect());
    ASSERT_NE(clients.back(), nullptr);
    ASSERT_TRUE(clients.back()->Send(c.sent).ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (size_t i = 0; i < clients.size(); ++i) {
    SCOPED_TRACE(absl::CEscape(cases[i].sent));
    ReadToEnd got = ReadUntilClosed(
        *clients[i], std::max(deadline - absl::Now(), absl::Milliseconds(100)));
    EXPECT_TRUE(got.orderly_close) << got.last;
    EXPECT_TRUE(absl::StartsWith(got.data, absl::StrCat("HTTP/1.1 ", cases[i].status, "\r\n")))
        << absl::CEscape(got.data);
  }
}

// The byte that completes a bad line, and not one before it, brings the answer.
TEST_F(HttpHelloTest, BadLineIsAnsweredWhenItsLineEndArrives) {
  auto client = server_.Connect();
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nHost: x\r\nNo colon\r").ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(client->Recv(1, absl::Milliseconds(200)).status()));
  ASSERT_TRUE(client->Send("\n").ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::StartsWith(got.data, "HTTP/1.1 400 Bad Request\r\n")) << got.data;
}

// Where the reads are cut does not change the answer to a bad line behind good
// requests: the good ones are served, then the bad line is refused once complete.
TEST_F(HttpHelloTest, BadLineSplitAtEveryByteBoundary) {
  const std::string requests = absl::StrCat(
      kGet, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "GET / HTTP/1.1\r\nBad\r\n");
  const std::string served = Hello() + Hello();
  for (size_t cut = 1; cut < requests.size(); ++cut) {
    auto client = server_.Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Send(absl::string_view(requests).substr(0, cut)).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(client->Send(absl::string_view(requests).substr(cut)).ok());
    ReadToEnd got = ReadUntilClosed(*client);
    ASSERT_TRUE(got.orderly_close) << "cut at " << cut << ": " << got.last;
    ASSERT_TRUE(absl::StartsWith(got.data, served + "HTTP/1.1 400 Bad Request\r\n"))
        << "cut at " << cut << ": " << absl::CEscape(got.data);
  }
}

// After an error response the server drains input for at most linger_timeout in all
// (the lingering close), however the client trickles: then it closes. The client read
// the half-close (EOF) with the response already; the full close shows as a reset once
// its bytes reach a socket that is gone. Were each byte to restart the wait (the read
// timeout is 60 s), all ten would go through.
TEST(HttpHelloLingerTest, TricklingClientCannotProlongTheLinger) {
  ServerOptions server_options;
  server_options.linger_timeout = absl::Milliseconds(500);
  ExampleServer server(HandlerFactoryOf<HttpHelloHandler>(), HttpHelloOptions{},
                       std::move(server_options));
  auto client = server.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("GARBAGE\r\n\r\n").ok());
  ReadToEnd got = ReadUntilClosed(*client);
  ASSERT_TRUE(got.orderly_close) << got.last;
  ASSERT_TRUE(absl::StartsWith(got.data, "HTTP/1.1 400 Bad Request\r\n")) << got.data;
  // A byte every 300 ms, ten at most (3 s, six times the linger). The first byte to
  // reach the closed socket draws a reset, and the Send after it fails.
  int sent = 0;
  absl::Status lost;
  for (; sent < 10; ++sent) {
    absl::SleepFor(absl::Milliseconds(300));
    lost = client->Send("x");
    if (!lost.ok()) break;
  }
  EXPECT_TRUE(IsConnectionLost(lost)) << "the server still takes bytes after " << sent
                                      << " sent over " << sent * 300 << " ms: " << lost;
}

TEST_F(HttpHelloTest, HeaderNamesMatchWithoutRegardToCase) {
  ExpectRejected(server_, "POST / HTTP/1.1\r\ntRANSFER-eNCODING: chunked\r\n\r\n",
                 "501 Not Implemented");
  ExpectRejected(server_, "POST / HTTP/1.1\r\nCONTENT-LENGTH: 99999999999\r\n\r\n",
                 "413 Content Too Large");
  auto client = server_.Connect();
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nCONNECTION: Keep-Alive, CLOSE\r\n\r\n").ok());
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_EQ(got.data, HelloClose());
}

TEST_F(HttpHelloTest, ChunkedBodiesAreRefused) {
  ExpectRejected(server_, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "501 Not Implemented");
}

// A head trickled in, a byte every 50 ms: each byte restarts the read timeout, but not
// the head's deadline. The client gets a 408 and the close, long before its trickle
// would end. Before, only the 60 s read timeout applied, and it never fired.
TEST(HttpHelloHeadTimeoutTest, ATrickledHeadGets408AtItsDeadline) {
  HttpHelloOptions options;
  options.head_timeout = absl::Milliseconds(300);
  ExampleServer server(HandlerFactoryOf<HttpHelloHandler>(), options);
  auto client = server.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nX-Slow: ").ok());
  std::string got;
  int sent = 0;
  for (; sent < 200; ++sent) {  // 10 s at most
    if (!client->Send("a").ok()) break;
    absl::StatusOr<std::string> some = client->Recv(0, absl::Milliseconds(50));
    if (some.ok()) {
      got += *some;
    } else if (!absl::IsDeadlineExceeded(some.status())) {
      break;  // closed
    }
  }
  EXPECT_LT(sent, 200) << "the trickle kept the head open";
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 408 Request Timeout\r\n")) << got;
}

// The deadline is the head's only: a complete request clears it, and a connection
// waiting between requests is bounded by the read timeout alone.
TEST(HttpHelloHeadTimeoutTest, TheDeadlineEndsWithTheHead) {
  HttpHelloOptions options;
  options.head_timeout = absl::Milliseconds(200);
  ExampleServer server(HandlerFactoryOf<HttpHelloHandler>(), options);
  auto client = server.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nHo").ok());
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(client->Send("st: x\r\n\r\n").ok());
  EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
  absl::SleepFor(absl::Milliseconds(400));  // twice the head timeout, idle
  ASSERT_TRUE(client->Send(kGet).ok());
  EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
}

// A complete request and the first bytes of the next head in one read, then nothing:
// the next head has a deadline of its own at once, so a 408 comes within head_timeout
// (the read timeout is 60 s).
TEST(HttpHelloHeadTimeoutTest, APipelinedHeadLeftIncompleteGets408) {
  HttpHelloOptions options;
  options.head_timeout = absl::Milliseconds(300);
  ExampleServer server(HandlerFactoryOf<HttpHelloHandler>(), options);
  auto client = server.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send(absl::StrCat(kGet, "GET / HTTP/1.1\r\nHo")).ok());
  ReadToEnd got = ReadUntilClosed(*client, absl::Seconds(10));
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_TRUE(absl::StartsWith(got.data, Hello())) << got.data;
  EXPECT_TRUE(absl::StrContains(got.data.substr(kHelloSize), "HTTP/1.1 408 Request Timeout\r\n"))
      << got.data;
}

// The pipelined head's deadline is its own, not what was left of the head before it:
// the first head was trickled (its deadline running), and the read that completed it
// also began the next. That next head then had only the remainder (here 400 of 1000 ms)
// and got a 408 early.
TEST(HttpHelloHeadTimeoutTest, APipelinedHeadGetsItsOwnDeadline) {
  HttpHelloOptions options;
  options.head_timeout = absl::Seconds(1);
  ExampleServer server(HandlerFactoryOf<HttpHelloHandler>(), options);
  auto client = server.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("GET / HTTP/1.1\r\nHo").ok());
  absl::SleepFor(absl::Milliseconds(600));
  const absl::Time second_head_sent = absl::Now();
  ASSERT_TRUE(client->Send("st: x\r\n\r\nGET / HTTP/1.1\r\nHo").ok());
  EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
  ReadToEnd got = ReadUntilClosed(*client, absl::Seconds(10));
  const absl::Duration waited = absl::Now() - second_head_sent;
  EXPECT_TRUE(absl::StartsWith(got.data, "HTTP/1.1 408 Request Timeout\r\n")) << got.data;
  // Not before its own head_timeout (a lower bound: no machine makes it come early).
  EXPECT_GE(waited, options.head_timeout);
}

// Wraps the HTTP handler factory: the first handler is made only when the test says,
// so that the worker making it is busy meanwhile.
struct HeldFactory {
  absl::Notification entered;
  absl::Notification release;
  std::atomic<int> calls{0};

  HandlerFactory Wrap(HandlerFactory inner) {
    return [this, inner = std::move(inner)](const std::any& options) {
      if (calls.fetch_add(1) == 1) {
        entered.Notify();
        release.WaitForNotification();
      }
      return inner(options);
    };
  }
};

// A request that arrived before Stop and is answered during it (Stop hands input that
// had arrived to HandleData before HandleShutdown) says Connection: close, and the
// connection then closes in order. Before, it answered keep-alive and then closed.
// `requests` sent while the only worker is held, then Stop: what the client reads to
// its end.
ReadToEnd AnsweredWhileStopping(absl::string_view requests) {
  HeldFactory held;
  // Stop posts the workers' shutdown, then waits for the acceptors, then reports
  // listener.stop: once that is seen, the shutdown is queued on the held worker.
  absl::Notification listener_stopped;
  const uint64_t sink = Telemetry::Attach(
      [&](const TelemetryEvent& e) {
        if (e.server == "http-hello-stop" && !listener_stopped.HasBeenNotified()) {
          listener_stopped.Notify();
        }
      },
      TelemetryBit(TelemetryEventType::kListenerStop));
  ServerOptions server_options;
  server_options.name = "http-hello-stop";
  server_options.num_workers = 1;
  server_options.dedicated_acceptor_threads = true;  // the acceptor is not the held worker
  ExampleServer server(held.Wrap(HandlerFactoryOf<HttpHelloHandler>()), HttpHelloOptions{},
                       std::move(server_options));
  auto client = server.Connect();
  EXPECT_NE(client, nullptr);
  if (client == nullptr) return {};
  EXPECT_TRUE(client->Send(kGet).ok());
  EXPECT_EQ(*client->Recv(kHelloSize, absl::Seconds(10)), Hello());
  // A second connection holds the only worker busy, making its handler; the requests
  // sent meanwhile wait, unread, until Stop hands them over.
  auto holder = server.Connect();
  EXPECT_NE(holder, nullptr);
  EXPECT_TRUE(held.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(client->Send(requests).ok());

  std::thread stopper([&] { EXPECT_TRUE(server.server().Stop(absl::Seconds(10)).ok()); });
  const bool shutdown_queued = listener_stopped.WaitForNotificationWithTimeout(absl::Seconds(10));
  held.release.Notify();
  ReadToEnd got = ReadUntilClosed(*client);
  ReadToEnd holder_got = ReadUntilClosed(*holder);
  client->Close();  // ends the server's lingering close at once
  holder->Close();
  stopper.join();
  Telemetry::Detach(sink);
  EXPECT_TRUE(shutdown_queued);
  EXPECT_TRUE(holder_got.orderly_close) << holder_got.last;
  EXPECT_EQ(holder_got.data, "");
  return got;
}

TEST(HttpHelloStopTest, ARequestAnsweredWhileStoppingSaysConnectionClose) {
  ReadToEnd got = AnsweredWhileStopping(kGet);
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_EQ(got.data, HelloClose());
}

// Every request that had arrived is answered, and only the last says Connection: close.
// Before, the first answered while stopping said it, and the others were dropped.
TEST(HttpHelloStopTest, PipelinedRequestsWaitingAtTheStopAreAllAnswered) {
  ReadToEnd got = AnsweredWhileStopping(absl::StrCat(kGet, kGet, kGet));
  EXPECT_TRUE(got.orderly_close) << got.last;
  EXPECT_EQ(got.data, absl::StrCat(Hello(), Hello(), HelloClose()));
}

}  // namespace
}  // namespace islet::examples
