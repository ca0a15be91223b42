// A handler scripted by lambdas that records every callback, and a fixture that runs a
// loopback server of them, for tests of handler semantics (handler_*_test.cc) and of the
// Connection API (connection_*_test.cc).
//
//   TEST_F(HandlerTest, HandleDataCloseSendsThenCloses) {  // HandlerTest : ScriptedServerTest
//     script_.data = SendThen("bye", HandlerResult::Close());
//     auto client = StartAndConnect();
//     ASSERT_NE(client, nullptr);
//     ASSERT_TRUE(client->Send("ping").ok());
//     ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("bye"));
//     EXPECT_THAT(Endings(1), ElementsAre("close"));
//   }
//
// Connections count from 1 in the order their handlers are made, and every callback is
// recorded as "c<n>:<what>" (see ScriptedHandler). Header-only and testonly.
#ifndef ISLET_SERVER_SCRIPTED_HANDLER_H_
#define ISLET_SERVER_SCRIPTED_HANDLER_H_

#include <any>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace testutil {

// Bounds every wait of the scripted tests for something that normally takes
// milliseconds (tighter than kWait: one callback on an idle loopback server).
inline constexpr absl::Duration kDeadline = absl::Seconds(10);

// "c<n>:<what>": how connection n's callbacks are recorded.
inline std::string ConnectionEvent(int n, absl::string_view what) {
  return absl::StrCat("c", n, ":", what);
}

// Every connection's handle, by number, for the test thread (or another connection)
// to post to.
class HandleBook {
 public:
  void Put(int n, ConnectionHandle handle) {
    absl::MutexLock lock(&mu_);
    handles_[n] = std::move(handle);
  }
  // Connection n's handle; an empty one when it has not connected.
  ConnectionHandle Get(int n) const {
    absl::MutexLock lock(&mu_);
    auto it = handles_.find(n);
    return it == handles_.end() ? ConnectionHandle() : it->second;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<int, ConnectionHandle> handles_ ABSL_GUARDED_BY(mu_);
};

// What a scripted callback knows: which connection it belongs to, and where to note
// events and find the other connections.
struct Ctx {
  int n = 0;
  EventRecorder* rec = nullptr;
  HandleBook* book = nullptr;
  void Note(absl::string_view what) const { rec->Record(ConnectionEvent(n, what)); }
};

// The text of a posted message: the string it holds, or "?" for any other type.
inline std::string MessageText(const std::any& message) {
  const std::string* text = std::any_cast<std::string>(&message);
  return text != nullptr ? *text : "?";
}

// What each callback does after it has been recorded; an empty one does nothing
// (and returns Continue).
struct Script {
  std::function<HandlerResult(const Ctx&, Connection&)> connection;
  std::function<HandlerResult(const Ctx&, absl::string_view, Connection&)> data;
  std::function<HandlerResult(const Ctx&, Connection&)> cont;
  std::function<HandlerResult(const Ctx&, std::any&, Connection&)> message;
  // When set, HandlePeerFinished is recorded ("peer_finished") and runs it; otherwise
  // the handler keeps the default (the connection closes).
  std::function<HandlerResult(const Ctx&, Connection&)> peer_finished;
  std::function<void(const Ctx&, Connection&)> close;
  std::function<void(const Ctx&, const absl::Status&, Connection&)> error;
  std::function<void(const Ctx&, Connection&)> shutdown;
  std::function<void(const Ctx&, Connection&)> timeout;
};

// Records "connection", "data:<bytes>", "continue", "message:<text>" (a string
// payload) or "message" (any other), and the endings "close", "error:<CODE>",
// "shutdown", "timeout"; "gone" when destroyed (after which no callback can run).
// HandleConnection also puts the connection's handle in the book.
class ScriptedHandler : public Handler {
 public:
  ScriptedHandler(Ctx ctx, const Script* script) : ctx_(ctx), script_(script) {}
  ~ScriptedHandler() override { ctx_.Note("gone"); }

  HandlerResult HandleConnection(Connection& conn) override {
    ctx_.book->Put(ctx_.n, conn.handle());
    ctx_.Note("connection");
    return script_->connection ? script_->connection(ctx_, conn) : HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    ctx_.Note(absl::StrCat("data:", data));
    return script_->data ? script_->data(ctx_, data, conn) : HandlerResult::Continue();
  }
  HandlerResult HandleContinue(Connection& conn) override {
    ctx_.Note("continue");
    return script_->cont ? script_->cont(ctx_, conn) : HandlerResult::Continue();
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    const std::string* text = std::any_cast<std::string>(&message);
    ctx_.Note(text != nullptr ? absl::StrCat("message:", *text) : "message");
    return script_->message ? script_->message(ctx_, message, conn) : HandlerResult::Continue();
  }
  HandlerResult HandlePeerFinished(Connection& conn) override {
    if (!script_->peer_finished) return Handler::HandlePeerFinished(conn);
    ctx_.Note("peer_finished");
    return script_->peer_finished(ctx_, conn);
  }
  void HandleClose(Connection& conn) override {
    ctx_.Note("close");
    if (script_->close) script_->close(ctx_, conn);
  }
  void HandleError(const absl::Status& error, Connection& conn) override {
    ctx_.Note(absl::StrCat("error:", absl::StatusCodeToString(error.code())));
    if (script_->error) script_->error(ctx_, error, conn);
  }
  void HandleShutdown(Connection& conn) override {
    ctx_.Note("shutdown");
    if (script_->shutdown) script_->shutdown(ctx_, conn);
  }
  void HandleTimeout(Connection& conn) override {
    ctx_.Note("timeout");
    if (script_->timeout) script_->timeout(ctx_, conn);
  }

 private:
  const Ctx ctx_;
  const Script* script_;
};

// The final callbacks, of which a connection gets exactly one.
inline bool IsEnding(absl::string_view what) {
  return what == "close" || what == "shutdown" || what == "timeout" ||
         absl::StartsWith(what, "error:");
}

// Blocks the callback until the client's bytes have arrived (in the socket's receive
// buffer, or received by the loop), without reading them.
inline void WaitReadable(Connection& conn) {
  EXPECT_TRUE(conn.socket().WaitReady(IoInterest::kRead, MonotonicNow() + kDeadline, "test").ok());
}

// A script step for script_.data: sends the data back, and continues.
inline HandlerResult Echo(const Ctx&, absl::string_view data, Connection& conn) {
  EXPECT_TRUE(conn.Send(data).ok());
  return HandlerResult::Continue();
}

// A script step for any callback that returns a result (connection, data, cont,
// message): sends `text` (unless empty), then returns `result`.
//   script_.connection = SendThen("HELLO", HandlerResult::Close());
class SendThen {
 public:
  SendThen(std::string text, HandlerResult result)
      : text_(std::move(text)), result_(std::move(result)) {}

  HandlerResult operator()(const Ctx&, Connection& conn) const { return Run(conn); }
  HandlerResult operator()(const Ctx&, absl::string_view, Connection& conn) const {
    return Run(conn);
  }
  HandlerResult operator()(const Ctx&, std::any&, Connection& conn) const { return Run(conn); }

 private:
  HandlerResult Run(Connection& conn) const {
    if (!text_.empty()) {
      EXPECT_TRUE(conn.Send(text_).ok());
    }
    return result_;
  }

  std::string text_;
  HandlerResult result_;
};

// A script step for any callback that returns a result: returns `result`, and does
// nothing else.
//   script_.connection = Returns(HandlerResult::ContinueThen());
inline SendThen Returns(HandlerResult result) { return SendThen("", std::move(result)); }

// A script step for script_.connection: waits until the client's first bytes are in
// (WaitReadable), then returns `result`.
inline std::function<HandlerResult(const Ctx&, Connection&)> WaitReadableThen(
    HandlerResult result) {
  return [result](const Ctx&, Connection& conn) {
    WaitReadable(conn);
    return result;
  };
}

// A loopback server of ScriptedHandlers running script_, with its telemetry recorded
// (ServerFixture), and ways to wait for and read what each connection went through.
class ScriptedServerTest : public ServerFixture {
 protected:
  // The handlers use the members below: the server stops before they go.
  ~ScriptedServerTest() override { server_.reset(); }

  // Loopback options whose handlers run script_ (which must be complete by Start).
  ServerOptions Options() {
    return LoopbackOptions([this](const std::any&) -> std::unique_ptr<Handler> {
      return MakeHandler();
    });
  }
  // The next connection's handler, for factories of the test's own.
  std::unique_ptr<Handler> MakeHandler() {
    return std::make_unique<ScriptedHandler>(Ctx{++made_, &rec_, &book_}, &script_);
  }

  // A client of the server, or nullptr with the failure reported.
  std::unique_ptr<TcpSocket> Connect() {
    if (server_ == nullptr) {
      ADD_FAILURE() << "no server";
      return nullptr;
    }
    return MustConnect(*server_, kDeadline);
  }
  // Starts the server (Start) and connects a client: the client, or nullptr with the
  // failure reported.
  std::unique_ptr<TcpSocket> StartAndConnect(ServerOptions options) {
    if (!Start(std::move(options))) return nullptr;
    return Connect();
  }
  std::unique_ptr<TcpSocket> StartAndConnect() { return StartAndConnect(Options()); }
  // Connects and waits until connection `n`'s HandleConnection has started.
  std::unique_ptr<TcpSocket> ConnectAs(int n) {
    std::unique_ptr<TcpSocket> client = Connect();
    EXPECT_TRUE(WaitFor(n, "connection"));
    return client;
  }

  bool Saw(int n, absl::string_view what) const {
    return rec_.Contains(ConnectionEvent(n, what));
  }
  bool WaitFor(int n, absl::string_view what, int count = 1) const {
    return rec_.WaitFor(ConnectionEvent(n, what), kDeadline, count);
  }

  // Connection n's events, without the "c<n>:" prefix.
  std::vector<std::string> EventsOf(int n) const {
    const std::string prefix = ConnectionEvent(n, "");
    std::vector<std::string> out;
    for (const std::string& e : rec_.Events()) {
      if (absl::StartsWith(e, prefix)) out.push_back(e.substr(prefix.size()));
    }
    return out;
  }

  // Waits for connection n's handler to be destroyed, then returns the final callbacks
  // it got: exactly one is the contract.
  std::vector<std::string> Endings(int n) const {
    EXPECT_TRUE(WaitFor(n, "gone")) << "connection " << n << " never finished";
    std::vector<std::string> out;
    for (const std::string& e : EventsOf(n)) {
      if (IsEnding(e)) out.push_back(e);
    }
    return out;
  }

  // Connection n's handle (set as its HandleConnection starts).
  ConnectionHandle HandleOf(int n) const {
    ConnectionHandle handle = book_.Get(n);
    EXPECT_TRUE(handle.valid()) << "no handle for connection " << n;
    return handle;
  }

  // Waits for the one connection.stop and returns it.
  RecordedEvent StopEvent() const {
    EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop, 1, kDeadline));
    std::vector<RecordedEvent> stops = telemetry_->Events(TelemetryEventType::kConnectionStop);
    EXPECT_EQ(stops.size(), 1u);
    return stops.empty() ? RecordedEvent{TelemetryEventType::kConnectionStop} : stops[0];
  }

  EventRecorder rec_;
  HandleBook book_;
  Script script_;
  std::atomic<int> made_{0};
};

}  // namespace testutil
}  // namespace islet

#endif  // ISLET_SERVER_SCRIPTED_HANDLER_H_
