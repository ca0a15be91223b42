// The pub/sub example over loopback: topics reach only their subscribers, across
// workers; heartbeats come from a timer; a subscriber that does not read holds a
// bounded queue and hears how much it missed; bad input gets a clear answer.
#include "examples/pubsub/pubsub.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/tcp_transport.h"

namespace islet::examples {
namespace {

constexpr absl::Duration kWait = absl::Seconds(20);

// Reads one line (up to '\n', without it) within kWait.
absl::StatusOr<std::string> ReadLine(TcpSocket& socket, std::string& buffer) {
  const absl::Time give_up = absl::Now() + kWait;
  for (;;) {
    const size_t end = buffer.find('\n');
    if (end != std::string::npos) {
      std::string line = buffer.substr(0, end);
      buffer.erase(0, end + 1);
      return line;
    }
    const absl::Duration left = give_up - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("no line");
    absl::StatusOr<std::string> got = socket.Recv(0, left);
    if (!got.ok()) return got.status();
    buffer += *got;
  }
}

struct Client {
  std::unique_ptr<TcpSocket> socket;
  std::string buffer;
  // Sends `command` and returns the next line that is not a PING.
  absl::StatusOr<std::string> Ask(absl::string_view command) {
    absl::Status sent = socket->Send(absl::StrCat(command, "\n"));
    if (!sent.ok()) return sent;
    return Next();
  }
  absl::StatusOr<std::string> Next() {
    for (;;) {
      absl::StatusOr<std::string> line = ReadLine(*socket, buffer);
      if (!line.ok() || *line != "PING") return line;
    }
  }
};

PubSubOptions Options(std::shared_ptr<Broker> broker) {
  PubSubOptions options;
  options.broker = std::move(broker);
  return options;
}

ServerOptions TwoWorkers() {
  ServerOptions options;
  options.num_workers = 2;
  return options;
}

TEST(PubSubTest, APublicationReachesTheTopicsSubscribersOnly) {
  auto broker = std::make_shared<Broker>();
  ExampleServer server(HandlerFactoryOf<PubSubHandler>(Options(broker)), {}, TwoWorkers());
  Client news{server.Connect()}, sports{server.Connect()}, publisher{server.Connect()};
  EXPECT_THAT(news.Ask("SUB news"), IsOkAndHolds("OK"));
  EXPECT_THAT(sports.Ask("SUB sports"), IsOkAndHolds("OK"));
  EXPECT_THAT(publisher.Ask("PUB news rain tomorrow"), IsOkAndHolds("OK 1"));
  EXPECT_THAT(news.Next(), IsOkAndHolds("MSG news rain tomorrow"));
  EXPECT_THAT(publisher.Ask("PUB sports 2-1"), IsOkAndHolds("OK 1"));
  EXPECT_THAT(sports.Next(), IsOkAndHolds("MSG sports 2-1"));
  // Had news seen the sports line, it would come before this one.
  EXPECT_THAT(publisher.Ask("PUB news sun"), IsOkAndHolds("OK 1"));
  EXPECT_THAT(news.Next(), IsOkAndHolds("MSG news sun"));

  EXPECT_THAT(news.Ask("UNSUB news"), IsOkAndHolds("OK"));
  EXPECT_THAT(publisher.Ask("PUB news nobody"), IsOkAndHolds("OK 0"));
  // A subscriber that leaves is forgotten.
  sports.socket.reset();
  const absl::Time give_up = absl::Now() + kWait;
  while (broker->subscribers("sports") > 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(broker->subscribers("sports"), 0u);
}

TEST(PubSubTest, SubscribersHearAHeartbeatFromATimer) {
  PubSubOptions options = Options(std::make_shared<Broker>());
  options.heartbeat_interval = absl::Milliseconds(50);
  ExampleServer server(HandlerFactoryOf<PubSubHandler>(options));
  Client idle{server.Connect()};
  for (int i = 0; i < 3; ++i) EXPECT_THAT(ReadLine(*idle.socket, idle.buffer), IsOkAndHolds("PING"));
}

TEST(PubSubTest, ASubscriberThatDoesNotReadHoldsABoundedQueueAndHearsWhatItMissed) {
  auto broker = std::make_shared<Broker>();
  PubSubOptions options = Options(broker);
  options.subscriber_high_water = 64 << 10;
  ServerOptions server_options;
  server_options.num_workers = 1;
  server_options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  ExampleServer server(HandlerFactoryOf<PubSubHandler>(options), {}, server_options);
  Client slow{server.Connect()}, fast{server.Connect()}, publisher{server.Connect()};
  ASSERT_THAT(slow.Ask("SUB feed"), IsOkAndHolds("OK"));
  ASSERT_THAT(fast.Ask("SUB feed"), IsOkAndHolds("OK"));

  // 2,000 publications of 1 KiB (2 MiB); `slow` reads none of them meanwhile.
  const std::string text(1024, 'x');
  uint64_t peak = 0;
  for (int i = 0; i < 2000; ++i) {
    absl::StatusOr<std::string> ok = publisher.Ask(absl::StrCat("PUB feed ", text));
    ASSERT_TRUE(ok.ok()) << ok.status();
    absl::StatusOr<std::string> got = fast.Next();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 9 + text.size());  // "MSG feed " + text: the fast one gets all
    peak = std::max(peak, server.server().Info().queued_output_bytes);
  }
  // The mark, plus the one message that crossed it.
  EXPECT_LE(peak, options.subscriber_high_water + 2048) << "queued output reached " << peak;

  // Catching up, `slow` gets what was kept, and after each run of drops, how many it
  // missed: together, every publication.
  uint64_t kept = 0;
  uint64_t missed = 0;
  while (kept + missed < 2000) {
    absl::StatusOr<std::string> line = slow.Next();
    ASSERT_TRUE(line.ok()) << line.status() << " after " << kept << " kept, " << missed
                           << " missed";
    if (absl::StartsWith(*line, "MSG feed ")) {
      ++kept;
      continue;
    }
    uint64_t n = 0;
    ASSERT_TRUE(absl::StartsWith(*line, "DROPPED ") && absl::SimpleAtoi(line->substr(8), &n))
        << *line;
    missed += n;
  }
  EXPECT_GT(missed, 0u);
  EXPECT_EQ(kept + missed, 2000u);
}

TEST(PubSubTest, BadInputGetsAClearAnswer) {
  PubSubOptions options = Options(std::make_shared<Broker>());
  options.max_line = 100;
  options.max_topics = 2;
  ExampleServer server(HandlerFactoryOf<PubSubHandler>(options));
  Client c{server.Connect()};
  EXPECT_THAT(c.Ask("HELLO"), IsOkAndHolds("ERR unknown command"));
  EXPECT_THAT(c.Ask("SUB"), IsOkAndHolds("ERR usage: SUB <topic>"));
  EXPECT_THAT(c.Ask("PUB"), IsOkAndHolds("ERR usage: PUB <topic> <text>"));
  EXPECT_THAT(c.Ask("SUB a"), IsOkAndHolds("OK"));
  EXPECT_THAT(c.Ask("SUB b"), IsOkAndHolds("OK"));
  EXPECT_THAT(c.Ask("SUB c"), IsOkAndHolds("ERR too many topics"));
  EXPECT_THAT(c.Ask(std::string(200, 'z')), IsOkAndHolds("ERR line too long"));
  absl::StatusOr<std::string> end = c.socket->Recv(0, kWait);
  EXPECT_TRUE(absl::IsOutOfRange(end.status())) << "still open after a line too long";
}

TEST(PubSubTest, AHeartbeatDueDuringABurstDoesNotDisconnectTheSubscriber) {
  auto broker = std::make_shared<Broker>();
  PubSubOptions options = Options(broker);
  // Due on almost every turn of the loop while the burst lasts.
  options.heartbeat_interval = absl::Milliseconds(1);
  ServerOptions server_options;
  server_options.num_workers = 1;  // the publisher's posts land on the subscriber's loop
  server_options.max_pending_messages = 64;
  ExampleServer server(HandlerFactoryOf<PubSubHandler>(options), {}, server_options);
  Client subscriber{server.Connect()}, publisher{server.Connect()};
  ASSERT_THAT(subscriber.Ask("SUB feed"), IsOkAndHolds("OK"));

  // One read of the burst publishes thousands of times: the subscriber's inbox is full
  // when its heartbeat comes due in that turn. It should miss publications (they are
  // refused: "OK 0"), not be disconnected because its heartbeat found no room.
  constexpr int kPublications = 50000;
  std::string burst;
  for (int i = 0; i < kPublications; ++i) burst += "PUB feed x\n";
  std::thread writer([&] { ASSERT_TRUE(publisher.socket->Send(burst).ok()); });
  for (int i = 0; i < kPublications; ++i) {
    absl::StatusOr<std::string> answer = publisher.Next();
    ASSERT_TRUE(answer.ok()) << answer.status() << " after " << i << " answers";
  }
  writer.join();

  // Still subscribed and served: a command is answered (after what was delivered).
  ASSERT_TRUE(subscriber.socket->Send("UNSUB feed\n").ok());
  for (;;) {
    absl::StatusOr<std::string> line = subscriber.Next();
    ASSERT_TRUE(line.ok()) << "the subscriber was disconnected: " << line.status();
    if (*line == "OK") break;
  }
}

}  // namespace
}  // namespace islet::examples
