#include "examples/messenger/messenger.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"

namespace islet::examples {
namespace {

// Reads one '\n'-terminated line (bytes are kept by the socket between calls).
absl::StatusOr<std::string> ReadLine(Socket& s, absl::Duration timeout = absl::Seconds(10)) {
  std::string line;
  while (line.empty() || line.back() != '\n') {
    absl::StatusOr<std::string> c = s.Recv(1, timeout);
    if (!c.ok()) return c.status();
    line += *c;
  }
  return line;
}

class MessengerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.num_workers = 2;  // members on different workers: the post crosses threads
    room_ = std::make_shared<MessengerRoom>(log_);
    server_ = std::make_unique<ExampleServer>(HandlerFactoryOf<MessengerHandler>(), room_,
                                              std::move(options));
  }
  void TearDown() override { std::fclose(log_); }

  // Connects `n` clients and waits until the room has them all.
  std::vector<std::unique_ptr<TcpSocket>> Join(size_t n) {
    std::vector<std::unique_ptr<TcpSocket>> clients;
    for (size_t i = 0; i < n; ++i) clients.push_back(server_->Connect());
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (room_->size() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    EXPECT_EQ(room_->size(), n);
    return clients;
  }

  FILE* log_ = std::tmpfile();
  std::shared_ptr<MessengerRoom> room_;
  std::unique_ptr<ExampleServer> server_;
};

TEST_F(MessengerTest, ALineReachesEveryOtherClientButNotTheSender) {
  auto clients = Join(4);
  const std::string sender = (*clients[0]->LocalInfo()).ToString();
  ASSERT_TRUE(clients[0]->Send("hello everyone\n").ok());
  for (size_t i = 1; i < clients.size(); ++i) {
    auto line = ReadLine(*clients[i]);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_EQ(*line, absl::StrCat(sender, ": hello everyone\n"));
  }
  // The sender hears nothing back.
  EXPECT_TRUE(absl::IsDeadlineExceeded(clients[0]->Recv(1, absl::Milliseconds(200)).status()));
  // And the server printed it.
  std::fflush(log_);
  std::rewind(log_);
  char buf[256] = {};
  ASSERT_NE(std::fgets(buf, sizeof(buf), log_), nullptr);
  EXPECT_EQ(std::string(buf), absl::StrCat(sender, ": hello everyone\n"));
}

TEST_F(MessengerTest, LinesSplitAcrossWritesAndSeveralPerWriteAllArrive) {
  auto clients = Join(2);
  ASSERT_TRUE(clients[0]->Send("one\ntw").ok());
  ASSERT_TRUE(clients[0]->Send("o\r\nthree\n").ok());
  for (const char* expected : {"one\n", "two\n", "three\n"}) {
    auto line = ReadLine(*clients[1]);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_TRUE(absl::EndsWith(*line, absl::StrCat(": ", expected))) << *line;
  }
}

TEST_F(MessengerTest, ClientsThatLeaveAreForgotten) {
  auto clients = Join(3);
  clients[2]->Close();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (room_->size() != 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(room_->size(), 2u);
  ASSERT_TRUE(clients[1]->Send("still here\n").ok());
  auto line = ReadLine(*clients[0]);
  ASSERT_TRUE(line.ok());
  EXPECT_TRUE(absl::EndsWith(*line, ": still here\n"));
}

TEST_F(MessengerTest, AnEndlessLineClosesItsSender) {
  auto clients = Join(2);
  clients[0]->Send(std::string(MessengerHandler::kMaxLine + 10, 'x')).IgnoreError();
  ReadToEnd got = ReadUntilClosed(*clients[0]);
  EXPECT_FALSE(IsTimeout(got.last)) << got.last;
  EXPECT_TRUE(absl::IsDeadlineExceeded(clients[1]->Recv(1, absl::Milliseconds(100)).status()));
}

}  // namespace
}  // namespace islet::examples
