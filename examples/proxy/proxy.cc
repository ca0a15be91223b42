#include "examples/proxy/proxy.h"

#include <utility>

#include "transport/io_wait.h"

namespace islet::examples {

struct ProxyPair {
  ProxyOptions options;
  ConnectionHandle client;
  ConnectionHandle upstream;
  absl::Duration last_relayed;  // MonotonicNow() when a byte last went either way
  bool client_finished = false;    // the client half-closed
  bool upstream_finished = false;  // the upstream half-closed
};

namespace {

// The timer message that checks the pair for idleness.
struct IdleCheck {};

// Relays `data` read on `from` to `to`; past the high water mark of `to`'s queue,
// `from` stops reading until `to` has drained (its HandleDrained resumes `from`).
HandlerResult Relay(ProxyPair& pair, absl::string_view data, Connection& from, Connection* to) {
  if (to == nullptr) return HandlerResult::Close();  // the other side is gone
  absl::Status sent = to->Send(data);
  if (!sent.ok()) return HandlerResult::Error(sent);
  pair.last_relayed = MonotonicNow();
  if (to->queued_bytes() > pair.options.high_water) {
    from.PauseReading();
    to->NotifyWhenDrained(pair.options.low_water);
  }
  return HandlerResult::Continue();
}

// The other side ends after what it has queued is sent.
void CloseOther(Connection& conn, const ConnectionHandle& other) {
  if (Connection* c = conn.Sibling(other)) c->Close();
}

// The peer of `conn` finished sending: the other side's peer is told the same (a
// half-close, after what is queued for it) and may still answer. Once both have
// finished, nothing more can come either way: both close once their output is sent.
HandlerResult PassHalfClose(bool& finished, bool other_finished, Connection& conn,
                            const ConnectionHandle& other) {
  finished = true;
  Connection* to = conn.Sibling(other);
  if (to == nullptr) return HandlerResult::Close();
  if (other_finished) {
    to->Close();
    return HandlerResult::Close();
  }
  absl::Status shut = to->Shutdown(ShutdownWay::kWrite);
  if (!shut.ok()) return HandlerResult::Error(shut);
  return HandlerResult::Continue();
}

// What each side waits for: no read timeout of its own (see the header's "Idle").
HandlerResult WaitWithoutReadTimeout() {
  return HandlerResult::ContinueWithPersistentTimeout(absl::InfiniteDuration());
}

class UpstreamHandler : public Handler {
 public:
  explicit UpstreamHandler(std::shared_ptr<ProxyPair> pair) : pair_(std::move(pair)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    if (Connection* client = conn.Sibling(pair_->client)) client->ResumeReading();
    return WaitWithoutReadTimeout();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    return Relay(*pair_, data, conn, conn.Sibling(pair_->client));
  }
  HandlerResult HandleDrained(Connection& conn) override {
    if (Connection* client = conn.Sibling(pair_->client)) client->ResumeReading();
    return HandlerResult::Continue();
  }
  HandlerResult HandlePeerFinished(Connection& conn) override {
    return PassHalfClose(pair_->upstream_finished, pair_->client_finished, conn,
                         pair_->client);
  }
  void HandleClose(Connection& conn) override { CloseOther(conn, pair_->client); }
  // A refused or timed-out connect too: the client is closed, having been sent nothing.
  void HandleError(const absl::Status& error, Connection& conn) override {
    CloseOther(conn, pair_->client);
  }
  void HandleShutdown(Connection& conn) override { CloseOther(conn, pair_->client); }
  void HandleTimeout(Connection& conn) override { CloseOther(conn, pair_->client); }

 private:
  std::shared_ptr<ProxyPair> pair_;
};

}  // namespace

ProxyHandler::ProxyHandler(const std::any& options) : pair_(std::make_shared<ProxyPair>()) {
  pair_->options = std::any_cast<ProxyOptions>(options);
}

ProxyHandler::~ProxyHandler() = default;

HandlerResult ProxyHandler::HandleConnection(Connection& conn) {
  pair_->client = conn.handle();
  pair_->last_relayed = MonotonicNow();
  absl::StatusOr<ConnectionHandle> upstream =
      conn.Open({.endpoint = pair_->options.upstream,
                 .connect_timeout = pair_->options.connect_timeout,
                 .tls = pair_->options.upstream_tls,
                 .handler = std::make_unique<UpstreamHandler>(pair_)});
  if (!upstream.ok()) return HandlerResult::Error(upstream.status());
  pair_->upstream = *upstream;
  // The client's bytes wait in the kernel until the upstream is there.
  conn.PauseReading();
  absl::StatusOr<Connection::TimerId> timer =
      conn.SendAfter(pair_->options.idle_timeout, IdleCheck{});
  if (!timer.ok()) return HandlerResult::Error(timer.status());
  return WaitWithoutReadTimeout();
}

HandlerResult ProxyHandler::HandleData(absl::string_view data, Connection& conn) {
  return Relay(*pair_, data, conn, conn.Sibling(pair_->upstream));
}

HandlerResult ProxyHandler::HandleDrained(Connection& conn) {
  if (Connection* upstream = conn.Sibling(pair_->upstream)) upstream->ResumeReading();
  return HandlerResult::Continue();
}

HandlerResult ProxyHandler::HandlePeerFinished(Connection& conn) {
  return PassHalfClose(pair_->client_finished, pair_->upstream_finished, conn,
                       pair_->upstream);
}

HandlerResult ProxyHandler::HandleMessage(std::any& message, Connection& conn) {
  if (std::any_cast<IdleCheck>(&message) == nullptr) return HandlerResult::Continue();
  const absl::Duration idle = MonotonicNow() - pair_->last_relayed;
  if (idle >= pair_->options.idle_timeout) {
    CloseOther(conn, pair_->upstream);
    return HandlerResult::Close();
  }
  absl::StatusOr<Connection::TimerId> timer =
      conn.SendAfter(pair_->options.idle_timeout - idle, IdleCheck{});
  if (!timer.ok()) return HandlerResult::Error(timer.status());
  return HandlerResult::Continue();
}

void ProxyHandler::HandleClose(Connection& conn) { CloseOther(conn, pair_->upstream); }
void ProxyHandler::HandleError(const absl::Status& error, Connection& conn) {
  CloseOther(conn, pair_->upstream);
}
void ProxyHandler::HandleShutdown(Connection& conn) { CloseOther(conn, pair_->upstream); }
void ProxyHandler::HandleTimeout(Connection& conn) { CloseOther(conn, pair_->upstream); }

}  // namespace islet::examples
