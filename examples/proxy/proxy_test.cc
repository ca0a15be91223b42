// The proxy example over real loopback sockets: byte-exact both ways, bounded memory
// for a client that does not read, many clients at once, half-closes passed on both
// ways, a refused upstream, the idle timer, and Stop.
#include "examples/proxy/proxy.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/echo/echo.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "transport/tcp_transport.h"

namespace islet::examples {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);

// An upstream that sends `bytes` of Pattern(seed 7) as soon as a client connects, 1 MiB
// at a time as its queue drains, then closes.
size_t firehose_bytes = 0;
class FirehoseHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    data_ = Pattern(firehose_bytes, 7);
    return SendMore(conn);
  }
  HandlerResult HandleDrained(Connection& conn) override { return SendMore(conn); }

 private:
  HandlerResult SendMore(Connection& conn) {
    if (sent_ == data_.size()) return HandlerResult::Close();
    const size_t n = std::min<size_t>(1 << 20, data_.size() - sent_);
    absl::Status s = conn.Send(absl::string_view(data_).substr(sent_, n));
    if (!s.ok()) return HandlerResult::Error(s);
    sent_ += n;
    conn.NotifyWhenDrained(0);
    return HandlerResult::Continue();
  }
  std::string data_;
  size_t sent_ = 0;
};

// An upstream whose request ends with the client's half-close: it counts the bytes,
// and answers with the count once the client has finished sending.
class CountUntilFinishedHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    count_ += data.size();
    return HandlerResult::Continue();
  }
  HandlerResult HandlePeerFinished(Connection& conn) override {
    absl::Status s = conn.Send(absl::StrCat("received ", count_));
    if (!s.ok()) return HandlerResult::Error(s);
    return HandlerResult::Close();
  }

 private:
  size_t count_ = 0;
};

// An upstream that speaks first and finishes at once (a banner, then its half-close),
// and still reads: what it received is noted when the client finishes in turn.
std::atomic<int64_t> banner_heard{-1};
class BannerThenListenHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    if (!conn.Send("banner").ok() || !conn.Shutdown(ShutdownWay::kWrite).ok()) {
      return HandlerResult::Close();
    }
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    count_ += data.size();
    return HandlerResult::Continue();
  }
  HandlerResult HandlePeerFinished(Connection& conn) override {
    banner_heard = static_cast<int64_t>(count_);
    return HandlerResult::Close();
  }

 private:
  size_t count_ = 0;
};

ProxyOptions To(const SocketInfo& upstream) {
  ProxyOptions options;
  options.upstream = upstream;
  return options;
}

ServerOptions Workers(int n) {
  ServerOptions options;
  options.num_workers = n;
  return options;
}

TEST(ProxyTest, RelaysALargeTransferByteExactBothWays) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>());
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(upstream.where()), Workers(1));
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);

  const std::string sent = Pattern(ScaledForSanitizer(100 << 20), 1);
  std::string received;
  std::thread reader([&] {
    while (received.size() < sent.size()) {
      absl::StatusOr<std::string> got = client->Recv(0, kWait);
      if (!got.ok()) return;
      received += *got;
    }
  });
  for (size_t at = 0; at < sent.size(); at += 1 << 20) {
    ASSERT_TRUE(client->Send(absl::string_view(sent).substr(at, 1 << 20)).ok());
  }
  reader.join();
  ASSERT_EQ(received.size(), sent.size());
  EXPECT_TRUE(received == sent) << "the echo through the proxy differs";
}

TEST(ProxyTest, AClientThatDoesNotReadHoldsTheRelayWithinItsMarks) {
  firehose_bytes = ScaledForSanitizer(64 << 20);
  ExampleServer upstream(HandlerFactoryOf<FirehoseHandler>());
  ProxyOptions options = To(upstream.where());
  ServerOptions server_options = Workers(1);
  // Small kernel buffers toward the client, so what it does not read stays with us.
  server_options.transport_options.socket_options.push_back(SocketOption::SendBuffer(64 << 10));
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), options, server_options);
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);

  // A second of not reading while the upstream pushes as fast as it can.
  uint64_t peak = 0;
  const absl::Time until = absl::Now() + absl::Seconds(1);
  while (absl::Now() < until) {
    peak = std::max(peak, proxy.server().Info().queued_output_bytes);
    absl::SleepFor(absl::Milliseconds(5));
  }
  // The high water mark, plus one read (64 KiB) relayed before the pause.
  EXPECT_LE(peak, options.high_water + (64 << 10)) << "queued output reached " << peak;
  EXPECT_GT(peak, 0u);

  // Then everything arrives, intact, and the upstream's close ends the client's side.
  ReadToEnd all = ReadUntilClosed(*client, kWait);
  ASSERT_TRUE(all.orderly_close) << all.last;
  EXPECT_EQ(all.data.size(), firehose_bytes);
  EXPECT_TRUE(all.data == Pattern(firehose_bytes, 7));
}

TEST(ProxyTest, ServesThreeHundredClientsAtOnce) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>());
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(upstream.where()), Workers(2));
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 300; ++i) {
    clients.push_back(proxy.Connect());
    ASSERT_NE(clients.back(), nullptr);
  }
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(clients[i]->Send(absl::StrCat("client ", i, ";")).ok());
  }
  for (int i = 0; i < 300; ++i) {
    const std::string want = absl::StrCat("client ", i, ";");
    absl::StatusOr<std::string> got = clients[i]->Recv(want.size(), kWait);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want);
  }
  EXPECT_EQ(proxy.server().active_connections(), 600);  // each client and its upstream
}

TEST(ProxyTest, AClientsHalfCloseReachesTheUpstreamWhoseAnswerStillComesBack) {
  ExampleServer upstream(HandlerFactoryOf<CountUntilFinishedHandler>());
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(upstream.where()), Workers(1));
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);
  const std::string request = Pattern(ScaledForSanitizer(4 << 20), 3);
  ASSERT_TRUE(client->Send(request).ok());
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  ReadToEnd answer = ReadUntilClosed(*client, kWait);
  EXPECT_TRUE(answer.orderly_close) << answer.last;
  EXPECT_EQ(answer.data, absl::StrCat("received ", request.size()));
  // Both sides have finished: the pair is gone from the proxy.
  const absl::Time give_up = absl::Now() + kWait;
  while (proxy.server().active_connections() > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(proxy.server().active_connections(), 0);
}

TEST(ProxyTest, AnUpstreamsHalfCloseReachesTheClientWhichCanStillSend) {
  banner_heard = -1;
  ExampleServer upstream(HandlerFactoryOf<BannerThenListenHandler>());
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(upstream.where()), Workers(1));
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);
  // The banner, then the end of the upstream's output.
  ReadToEnd banner = ReadUntilClosed(*client, kWait);
  ASSERT_TRUE(banner.orderly_close) << banner.last;
  EXPECT_EQ(banner.data, "banner");
  // The other way is still open.
  ASSERT_TRUE(client->Send(std::string(100000, 'x')).ok());
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  const absl::Time give_up = absl::Now() + kWait;
  while (banner_heard < 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(banner_heard, 100000);
}

TEST(ProxyTest, ARefusedUpstreamClosesTheClientWithNothingSent) {
  SocketInfo nowhere;
  {
    ExampleServer gone(HandlerFactoryOf<EchoHandler>());
    nowhere = gone.where();
  }
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(nowhere));
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<std::string> got = client->Recv(0, kWait);
  EXPECT_TRUE(absl::IsOutOfRange(got.status())) << (got.ok() ? *got : got.status().ToString());
}

TEST(ProxyTest, AnIdlePairIsClosedByItsTimerAndABusyOneIsNot) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>());
  ProxyOptions options = To(upstream.where());
  options.idle_timeout = absl::Milliseconds(400);
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), options);
  std::unique_ptr<TcpSocket> idle = proxy.Connect();
  std::unique_ptr<TcpSocket> busy = proxy.Connect();
  ASSERT_NE(idle, nullptr);
  ASSERT_NE(busy, nullptr);
  // The busy one relays every 100 ms for 1.2 s, three idle timeouts.
  for (int i = 0; i < 12; ++i) {
    const std::string ping = absl::StrCat("ping ", i);
    ASSERT_TRUE(busy->Send(ping).ok());
    absl::StatusOr<std::string> pong = busy->Recv(ping.size(), kWait);
    ASSERT_TRUE(pong.ok()) << "closed while busy, at " << i << ": " << pong.status();
    absl::SleepFor(absl::Milliseconds(100));
  }
  absl::StatusOr<std::string> end = idle->Recv(0, kWait);
  EXPECT_TRUE(absl::IsOutOfRange(end.status())) << "the idle pair was not closed";
}

TEST(ProxyTest, StopClosesBothSidesOfEveryPair) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>());
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), To(upstream.where()));
  std::unique_ptr<TcpSocket> client = proxy.Connect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("hi").ok());
  ASSERT_TRUE(client->Recv(2, kWait).ok());
  ASSERT_TRUE(proxy.server().Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(proxy.server().active_connections(), 0);
  absl::StatusOr<std::string> end = client->Recv(0, kWait);
  EXPECT_TRUE(absl::IsOutOfRange(end.status())) << end.status();
  // The upstream saw its side close too.
  const absl::Time give_up = absl::Now() + kWait;
  while (upstream.server().active_connections() > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(upstream.server().active_connections(), 0);
}

}  // namespace
}  // namespace islet::examples
