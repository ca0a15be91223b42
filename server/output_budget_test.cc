// The server-wide output budget: readers that never read cannot make the server hold
// more than the budget (plus one Send) of output between them. Over the budget, the
// connections holding more than their share are shed; a reader that reads is served.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::kWait;
using testutil::WaitFor;

constexpr size_t kChunk = 256 << 10;

// Each byte received asks for a 256 KiB answer.
class BigAnswerHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    for (size_t i = 0; i < data.size(); ++i) {
      absl::Status sent = conn.Send(std::string(kChunk, 'a'));
      if (!sent.ok()) return HandlerResult::Error(sent);
    }
    return HandlerResult::Continue();
  }
};

// Before the budget, ten readers that never read held 10 x 1 MiB (each up to its own
// high water mark and more); now what is queued stays near the budget.
TEST(OutputBudgetTest, ReadersThatNeverReadCannotHoldMoreThanTheBudget) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<BigAnswerHandler>());
  options.num_workers = 1;
  options.output_budget = 1 << 20;
  options.send_queue_high_water = 4 << 20;  // the budget, not each queue, is the bound
  options.send_queue_limit = 16 << 20;
  // Small kernel buffers: what the readers do not take stays in our queues.
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;

  std::vector<UniqueFd> stalled;
  for (int i = 0; i < 10; ++i) {
    stalled.push_back(testutil::RawConnect(port, /*recv_buffer=*/4096));
    ASSERT_TRUE(stalled.back().valid());
    // Four answers each: 1 MiB per reader if nothing stopped it.
    ASSERT_TRUE(testutil::WriteAll(stalled.back().get(), "abcd", 4));
  }
  uint64_t peak = 0;
  const absl::Time until = absl::Now() + absl::Seconds(2);
  while (absl::Now() < until) {
    peak = std::max(peak, server->Info().queued_output_bytes);
    absl::SleepFor(absl::Milliseconds(5));
  }
  // The budget, plus what a few Sends may add before the checks shed their senders (a
  // connection within its share may queue one Send more and pause; under a loaded
  // sanitizer run three were seen at once). Without the budget: ten times 1 MiB.
  EXPECT_LE(peak, uint64_t{1 << 20} + 4 * kChunk) << "queued output reached " << peak;
  EXPECT_GT(peak, 0u);
  EXPECT_EQ(server->Info().output_budget, uint64_t{1} << 20);
  // Some were shed: fewer than ten remain.
  EXPECT_TRUE(WaitFor([&] { return server->active_connections() < 10; }));

  // A reader that reads is still served, whole.
  UniqueFd good = testutil::RawConnect(port);
  ASSERT_TRUE(good.valid());
  ASSERT_TRUE(testutil::WriteAll(good.get(), "x", 1));
  std::string answer(kChunk, '\0');
  ASSERT_TRUE(testutil::ReadAll(good.get(), answer.data(), answer.size(), kWait));
  EXPECT_EQ(answer, std::string(kChunk, 'a'));
}

}  // namespace
}  // namespace islet
