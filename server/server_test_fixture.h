// The ground of the server tests (server_lifecycle_test, server_info_test,
// server_stop_test): ServerTest runs one loopback server of ServerTestHandlers at a time
// and records its telemetry. A ServerTestHandler echoes, records every callback in the
// ServerTestShared it is given, answers posted strings, and says GOODBYE from
// HandleShutdown; the knobs in ServerTestShared make it slow, send large replies, or
// queue bytes for a peer that does not read. Header-only and testonly.
#ifndef ISLET_SERVER_SERVER_TEST_FIXTURE_H_
#define ISLET_SERVER_SERVER_TEST_FIXTURE_H_

#include <any>
#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace testutil {

// What the test handlers share with the test.
struct ServerTestShared {
  testutil::EventRecorder events;
  std::atomic<int> handlers_made{0};
  // HandleData sleeps this long before it replies ("work in flight").
  absl::Duration data_delay = absl::ZeroDuration();
  // When non-zero, HandleData replies with this many pattern bytes instead of echoing.
  size_t reply_size = 0;
  // HandleConnection queues this many bytes (for a peer that does not read).
  size_t send_on_connect = 0;
  std::atomic<size_t> queued_after_connect{0};
};

class ServerTestHandler : public Handler {
 public:
  explicit ServerTestHandler(std::shared_ptr<ServerTestShared> shared)
      : shared_(std::move(shared)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    shared_->events.Record("connection");
    if (shared_->send_on_connect > 0) {
      EXPECT_TRUE(conn.Send(Pattern(shared_->send_on_connect)).ok());
      shared_->queued_after_connect = conn.queued_bytes();
      shared_->events.Record("sent-on-connect");
    }
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    shared_->events.Record("data");
    if (shared_->data_delay > absl::ZeroDuration()) absl::SleepFor(shared_->data_delay);
    if (shared_->reply_size > 0) {
      EXPECT_TRUE(conn.Send(Pattern(shared_->reply_size)).ok());
    } else {
      EXPECT_TRUE(conn.Send(data).ok());
    }
    shared_->events.Record("replied");
    return HandlerResult::Continue();
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    if (const std::string* text = std::any_cast<std::string>(&message)) {
      shared_->events.Record(absl::StrCat("message:", *text));
      EXPECT_TRUE(conn.Send(*text).ok());
    }
    return HandlerResult::Continue();
  }
  void HandleClose(Connection& conn) override { shared_->events.Record("close"); }
  void HandleError(const absl::Status& error, Connection& conn) override {
    shared_->events.Record("error");
  }
  void HandleShutdown(Connection& conn) override {
    shared_->events.Record("shutdown");
    // The socket is still open: say goodbye (server_test.exs does the same).
    conn.Send("GOODBYE").IgnoreError();
  }
  void HandleTimeout(Connection& conn) override { shared_->events.Record("timeout"); }

 private:
  std::shared_ptr<ServerTestShared> shared_;
};

inline HandlerFactory FactoryFor(std::shared_ptr<ServerTestShared> shared) {
  return [shared](const std::any&) -> std::unique_ptr<Handler> {
    shared->handlers_made.fetch_add(1);
    return std::make_unique<ServerTestHandler>(shared);
  };
}

// Servers of ServerTestHandlers (one at a time, through Start), their telemetry recorded.
class ServerTest : public testutil::ServerFixture {
 protected:
  ServerOptions Options() { return testutil::LoopbackOptions(FactoryFor(shared_)); }

  std::shared_ptr<ServerTestShared> shared_ = std::make_shared<ServerTestShared>();
};

}  // namespace testutil
}  // namespace islet

#endif  // ISLET_SERVER_SERVER_TEST_FIXTURE_H_
