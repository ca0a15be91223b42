// Handler: your protocol. The server makes one Handler per connection (through the
// factory in ServerOptions) and calls it on the connection's worker thread, one
// callback at a time. The counterpart of ThousandIsland.Handler.
//
//   class Echo : public islet::Handler {
//    public:
//     islet::HandlerResult HandleData(absl::string_view data,
//                                     islet::Connection& conn) override {
//       conn.Send(data).IgnoreError();
//       return islet::HandlerResult::Continue();
//     }
//   };
//
// The life of a connection:
//   handshake (bounded by handshake_timeout; failure -> HandleError)
//   -> HandleConnection -> (data arrives -> HandleData)* , with HandleMessage for
//      messages posted through a ConnectionHandle, and HandleContinue after ContinueThen
//   -> HandlePeerFinished when the peer half-closes (by default it closes the connection)
//   -> exactly one of: HandleClose (the peer or the handler closed), HandleError,
//      HandleTimeout (no data within the timeout), HandleShutdown (the server stops).
// Data that arrived while HandleConnection ran is delivered right after it returns; data
// that had arrived when the server stops is delivered before HandleShutdown
// (Connection::stopping() is true meanwhile, so the answers can say they are the last).
// After the final callback, queued output is flushed (bounded by send_timeout) and the
// socket is closed: if the peer has not closed its side, with a lingering close
// (half-close, then its input is drained for up to ServerOptions::linger_timeout), so
// that input it is still sending cannot make the kernel reset the connection under our
// last response.
//
// Callbacks must not block for long: a worker serves many connections. A blocking
// Connection::Recv is allowed (Thousand Island's recv contract) but stalls its worker.
#ifndef ISLET_SERVER_HANDLER_H_
#define ISLET_SERVER_HANDLER_H_

#include <any>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "transport/socket_types.h"
#include "transport/transport.h"

namespace islet {

class Connection;
class Transport;

// What a callback wants to happen next.
class HandlerResult {
 public:
  enum class Kind : uint8_t {
    kContinue,            // wait for data (the read timeout applies)
    kContinueThen,        // call HandleContinue before waiting for data
    kSwitchTransport,     // upgrade in place (STARTTLS), then wait for data
    kClose,               // flush output and close; HandleClose runs
    kError,               // HandleError(status) runs, then close
  };

  // Wait for data; the read timeout in force (read_timeout, or the last persistent one)
  // applies.
  static HandlerResult Continue() { return HandlerResult(Kind::kContinue); }
  // Wait for data for at most `timeout`, this time only; HandleTimeout when it passes.
  // absl::InfiniteDuration() waits without a timeout, this time only.
  static HandlerResult ContinueWithTimeout(absl::Duration timeout) {
    HandlerResult r(Kind::kContinue);
    r.timeout_ = timeout;
    r.has_timeout_ = true;
    return r;
  }
  // From now on `timeout` replaces read_timeout for this connection.
  static HandlerResult ContinueWithPersistentTimeout(absl::Duration timeout) {
    HandlerResult r(Kind::kContinue);
    r.timeout_ = timeout;
    r.has_timeout_ = true;
    r.persistent_ = true;
    return r;
  }
  // Call HandleContinue next, before any data or message (handle_continue).
  static HandlerResult ContinueThen() { return HandlerResult(Kind::kContinueThen); }
  // Continue over `transport` on the same socket (Transport::Upgrade), after its
  // handshake, bounded by handshake_timeout. `transport` must outlive the server.
  static HandlerResult SwitchTransport(Transport* transport) {
    HandlerResult r(Kind::kSwitchTransport);
    r.transport_ = transport;
    return r;
  }
  static HandlerResult Close() { return HandlerResult(Kind::kClose); }
  // Reported (telemetry, and HandleError) unless silent_terminate_on_error.
  static HandlerResult Error(absl::Status error) {
    HandlerResult r(Kind::kError);
    r.error_ = std::move(error);
    return r;
  }

  Kind kind() const { return kind_; }
  // Set for ContinueWithTimeout / ContinueWithPersistentTimeout.
  bool has_timeout() const { return has_timeout_; }
  absl::Duration timeout() const { return timeout_; }
  bool persistent() const { return persistent_; }
  Transport* transport() const { return transport_; }
  const absl::Status& error() const { return error_; }

 private:
  explicit HandlerResult(Kind kind) : kind_(kind) {}

  Kind kind_;
  absl::Duration timeout_ = absl::InfiniteDuration();
  bool has_timeout_ = false;  // an infinite one-shot timeout is still a timeout
  bool persistent_ = false;
  Transport* transport_ = nullptr;
  absl::Status error_;
};

class Handler {
 public:
  virtual ~Handler() = default;

  // The connection is ready (handshake done).
  virtual HandlerResult HandleConnection(Connection& conn) { return HandlerResult::Continue(); }
  // Bytes arrived. `data` is valid only during the call.
  virtual HandlerResult HandleData(absl::string_view data, Connection& conn) {
    return HandlerResult::Continue();
  }
  // After a ContinueThen result.
  virtual HandlerResult HandleContinue(Connection& conn) { return HandlerResult::Continue(); }
  // A message posted through a ConnectionHandle (handle_info). A message is not client
  // activity: a plain Continue() keeps the read deadline already running, and time
  // spent here counts against it; ContinueWithTimeout / ContinueWithPersistentTimeout
  // start a new wait.
  virtual HandlerResult HandleMessage(std::any& message, Connection& conn) {
    return HandlerResult::Continue();
  }
  // Queued output fell to the mark given to Connection::NotifyWhenDrained. Like a
  // message, it is not client activity.
  virtual HandlerResult HandleDrained(Connection& conn) { return HandlerResult::Continue(); }
  // The peer finished sending (its half-close, or a TLS close_notify): no more data will
  // come. By default the connection ends here, with HandleClose. A handler that still
  // has things to say (a proxy passing the half-close on, a server answering a request
  // ended by the client's half-close) returns Continue: the connection stays open for
  // writing, with no reading, until the handler closes it. The wait's timeout still
  // runs (HandleTimeout ends it; an infinite one waits for the handler), and a peer that
  // then resets or goes away entirely ends it with HandleClose.
  virtual HandlerResult HandlePeerFinished(Connection& conn) { return HandlerResult::Close(); }

  // Exactly one of these ends every connection whose handler was made.
  virtual void HandleClose(Connection& conn) {}
  virtual void HandleError(const absl::Status& error, Connection& conn) {}
  virtual void HandleShutdown(Connection& conn) {}
  virtual void HandleTimeout(Connection& conn) {}
};

// An outbound connection to open (Connection::Open, Server::Open).
struct OutboundOptions {
  // An IP literal and port ("127.0.0.1", 6379), or a unix path. Names are not resolved.
  SocketInfo endpoint;
  // The connect (and, with `tls`, the TLS handshake after it) must succeed within
  // this, or HandleError runs (DeadlineExceeded).
  absl::Duration connect_timeout = absl::Seconds(5);
  // When set, the connection is secured after its connect: TlsClient
  // (tls/tls_client.h) verifies the server and runs the TLS handshake before
  // HandleConnection; a failed verification or handshake runs HandleError with its
  // reason. Null: plain TCP.
  std::shared_ptr<ClientSecurity> tls;
  // Serves the connection; required.
  std::unique_ptr<Handler> handler;
};

// Makes the handler for a new connection from ServerOptions::handler_options.
using HandlerFactory = std::function<std::unique_ptr<Handler>(const std::any& options)>;

// A factory for handlers constructible from handler_options (a const std::any&), or
// from nothing. A handler with both constructors gets the options: a default one
// beside it must not silently drop what the server was given.
template <typename H>
HandlerFactory HandlerFactoryOf();

// A factory that makes each handler from `options`, typed: H(const Options&). The
// server's handler_options is then not used (leave it empty); no std::any_cast.
//   options.handler_factory = HandlerFactoryOf<ProxyHandler>(ProxyOptions{...});
template <typename H, typename Options>
HandlerFactory HandlerFactoryOf(Options options) {
  static_assert(std::is_constructible_v<H, const Options&>,
                "the handler needs a constructor taking const Options&");
  return [options = std::move(options)](const std::any&) -> std::unique_ptr<Handler> {
    return std::make_unique<H>(options);
  };
}

template <typename H>
HandlerFactory HandlerFactoryOf() {
  return [](const std::any& options) -> std::unique_ptr<Handler> {
    if constexpr (std::is_constructible_v<H, const std::any&>) {
      return std::make_unique<H>(options);
    } else {
      return std::make_unique<H>();
    }
  };
}

}  // namespace islet

#endif  // ISLET_SERVER_HANDLER_H_
