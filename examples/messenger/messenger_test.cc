#include "examples/messenger/messenger.h"

#include <unistd.h>

#include <algorithm>
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

// This process's resident memory, from /proc/self/statm.
size_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &pages, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

// A flood of lines to a room whose members do not read: they are disconnected (a post
// refused, or their output over its limit) and the server's memory stays bounded; the
// room still works afterwards. Before max_pending_messages, the posts queued on the
// workers without end (the audit saw 7 MiB grow to 759 MiB after 3 MB of input).
TEST(MessengerFloodTest, MembersWhoDoNotReadAreDroppedAndMemoryStaysBounded) {
  ServerOptions options;
  options.num_workers = 2;
  options.send_queue_high_water = 64 << 10;
  options.send_queue_limit = 256 << 10;
  auto room = std::make_shared<MessengerRoom>();
  ExampleServer server(HandlerFactoryOf<MessengerHandler>(), room, std::move(options));
  auto sender = server.Connect();
  std::vector<std::unique_ptr<TcpSocket>> stalled;
  for (int i = 0; i < 8; ++i) {
    stalled.push_back(server.Connect());
    ASSERT_TRUE(stalled.back()->SetOptions({SocketOption::RecvBuffer(4096)}).ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (room->size() < 9 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_EQ(room->size(), 9u);

  const size_t before = ResidentBytes();
  size_t peak = before;
  const std::string chunk(64 << 10, '\n');  // 65,536 empty lines a write
  for (int i = 0; i < 48 && absl::Now() < deadline; ++i) {  // 3 MiB, as in the audit
    ASSERT_TRUE(sender->Send(chunk).ok());
    peak = std::max(peak, ResidentBytes());
  }
  // Every stalled member is dropped; only the sender stays.
  while (room->size() > 1 && absl::Now() < deadline) {
    peak = std::max(peak, ResidentBytes());
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(room->size(), 1u);
  EXPECT_GT(room->dropped(), 0u);
  // The rest of the flood goes to nobody; wait until every line has been broadcast.
  const uint64_t flood_lines = 48 * chunk.size();
  while (room->lines() < flood_lines && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(room->lines(), flood_lines);
  // Bounded: what 8 members may hold (max_pending_messages lines and 256 KiB of output
  // each) is a few MiB (about 2 measured); the unbounded queue grew by 70 in this test.
  EXPECT_LT(peak - before, size_t{32} << 20) << "resident memory grew from " << before
                                             << " to " << peak << " bytes";

  // The room still works for whoever joins next.
  auto late = server.Connect();
  while (room->size() < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_TRUE(sender->Send("still here\n").ok());
  std::string line;
  for (;;) {
    auto got = ReadLine(*late);
    ASSERT_TRUE(got.ok()) << got.status();
    if (absl::EndsWith(*got, ": still here\n")) break;  // flood lines may come first
  }
}

}  // namespace
}  // namespace islet::examples
