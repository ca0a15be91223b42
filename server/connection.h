// Connection: what a handler holds, the counterpart of ThousandIsland.Socket.
//
// A Connection& is valid only inside its own handler's callbacks, on its worker thread
// (debug builds check the thread). To reach a connection from anywhere else (another
// connection, another thread), use its ConnectionHandle.
//
// Output never blocks the loop: Send writes what the kernel takes and queues the rest.
// Above ServerOptions::send_queue_high_water the connection stops reading until the
// queue drains (backpressure); a peer that drains nothing for send_timeout is closed;
// beyond send_queue_limit, Send fails with ResourceExhausted and the connection closes.
//
// This is an interface: the server's implementation lives in server/connection_impl.h
// (internal). A handler's unit test may pass its own Connection.
#ifndef ISLET_SERVER_CONNECTION_H_
#define ISLET_SERVER_CONNECTION_H_

#include <any>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/connection_handle.h"
#include "transport/transport.h"

namespace islet {

struct OutboundOptions;  // server/handler.h

// Whether a deadline a handler sets shrinks while the server is under pressure.
enum class TimeoutScaling : uint8_t { kFixed, kShrinkUnderPressure };

class Connection {
 public:
  virtual ~Connection() = default;

  // Blocking read of exactly n bytes (n > 0) or of what is available (n == 0), bounded
  // by `timeout` (the connection's read timeout when nullopt). Output still queued is
  // flushed first, so a request-reply exchange cannot deadlock. This stalls the worker:
  // prefer HandleData.
  virtual absl::StatusOr<std::string> Recv(size_t n, std::optional<absl::Duration> timeout) = 0;
  absl::StatusOr<std::string> Recv(size_t n) { return Recv(n, std::nullopt); }

  // Queues bytes for the peer; never blocks. OK when written or queued.
  virtual absl::Status Send(absl::string_view data) = 0;
  virtual absl::Status Send(absl::Span<const absl::string_view> buffers) = 0;
  // Queues `length` bytes of the file at `path` from `offset` (0 = to its end); sent
  // with sendfile(2) where the transport can. Returns the number of bytes queued.
  virtual absl::StatusOr<uint64_t> Sendfile(const std::string& path, uint64_t offset,
                                            uint64_t length) = 0;
  absl::StatusOr<uint64_t> Sendfile(const std::string& path, uint64_t offset = 0) {
    return Sendfile(path, offset, 0);
  }

  // kWrite (or kReadWrite) takes effect once queued output has gone out.
  virtual absl::Status Shutdown(ShutdownWay way) = 0;
  // Closes once the current callback returns (queued output is flushed first);
  // HandleClose runs, as if the callback had returned HandlerResult::Close().
  virtual void Close() = 0;

  // A total deadline, `from_now` from now: when it passes, HandleTimeout runs and the
  // connection closes, however much data arrives meanwhile. The read timeout is an idle
  // timer that every byte restarts, so a peer sending one byte a second keeps a
  // connection forever; this bounds a phase that must finish in time (a request head, a
  // login), as nginx's client_header_timeout does. Setting it again moves it;
  // ClearDeadline removes it. With kShrinkUnderPressure it shrinks, as idle timeouts do,
  // while the server nears a cap (ServerOptions::overload_scale_from): right for a
  // deadline that protects the server (a request head), wrong for one the protocol
  // promises (a session's length).
  void SetDeadline(absl::Duration from_now) { SetDeadline(from_now, TimeoutScaling::kFixed); }
  virtual void SetDeadline(absl::Duration from_now, TimeoutScaling scaling) = 0;
  virtual void ClearDeadline() = 0;

  // True once the server has begun stopping this connection's worker (Server::Stop):
  // the input that had already arrived is being handed to HandleData, HandleShutdown
  // follows, then the close. A handler answering a request now can say it is the last,
  // as an HTTP server answers with "Connection: close". Once true, it stays true.
  virtual bool stopping() const = 0;

  // ---- Flow control ----
  // Stops reading from the peer until ResumeReading: no HandleData meanwhile, and no
  // read timeout runs (waiting on us is not the peer's idleness). For a handler whose
  // work waits on something else: a proxy whose other side is not draining, or a burst
  // of pipelined requests answered a few at a time. It stays paused across callbacks.
  virtual void PauseReading() = 0;
  virtual void ResumeReading() = 0;
  // HandleDrained runs once, when this connection's queued output is at or below
  // `low_water` bytes: on a later turn of the loop, even if it already is. Calling it
  // again replaces the mark; a connection that closes first never calls it.
  virtual void NotifyWhenDrained(size_t low_water) = 0;

  // ---- Beyond this connection ----
  // Opens an outbound connection on this connection's worker, served by
  // `options.handler`: a proxy's two sides share one loop, and reach each other with
  // Sibling, without a cross-thread hand-off. Returns its handle at once; the connect
  // never blocks the worker. HandleConnection runs once connected (on a later turn of
  // the loop) and, with options.tls, once the TLS handshake has verified the server;
  // HandleError with the reason on a refusal, a failed verification or handshake, or
  // when connect_timeout passes (it bounds connect and handshake together).
  // It has the Connection API, limits, telemetry (its span's parent is this
  // connection's) and Stop's drain of any other connection. FailedPrecondition while the
  // server stops; InvalidArgument for a bad endpoint, a missing handler or timeout.
  virtual absl::StatusOr<ConnectionHandle> Open(OutboundOptions options) = 0;
  // The connection behind `handle` when it lives on this worker and has not ended (its
  // final callback has not run), else nullptr. Use it within the current callback
  // only; never keep the pointer.
  virtual Connection* Sibling(const ConnectionHandle& handle) = 0;

  // ---- Timers ----
  using TimerId = uint64_t;
  // Delivers `message` to HandleMessage after `delay`, on this connection's worker
  // (Erlang's send_after), unless cancelled first or the connection has closed. A
  // pending timer holds a place under max_pending_messages, as a posted message does:
  // ResourceExhausted beyond it. A timer's message keeps its place until HandleMessage
  // returns, so a timer that re-arms itself there needs a second free place: a periodic
  // timer must handle ResourceExhausted (retry later) when its inbox can fill.
  virtual absl::StatusOr<TimerId> SendAfter(absl::Duration delay, std::any message) = 0;
  // True when the timer was pending: it will not fire.
  virtual bool CancelTimer(TimerId id) = 0;

  virtual absl::Status SetOptions(absl::Span<const SocketOption> options) = 0;
  virtual absl::StatusOr<std::vector<SocketOption>> GetOptions(
      absl::Span<const SocketOptionName> names) = 0;
  // Thousand Island's sockname and peername.
  virtual absl::StatusOr<SocketInfo> LocalInfo() const = 0;
  virtual absl::StatusOr<SocketInfo> PeerInfo() const = 0;
  // The peer's verified certificate (DER), if the transport is secure and got one.
  virtual std::optional<std::string> PeerCertificate() const = 0;
  virtual bool Secure() const = 0;
  virtual absl::StatusOr<SocketStats> GetStat() const = 0;
  virtual absl::StatusOr<std::string> NegotiatedProtocol() const = 0;
  virtual absl::StatusOr<ConnectionInformation> GetConnectionInformation() const = 0;
  // The PROXY protocol header the connection began with (ProxyProtocolTransport,
  // transport/proxy_protocol.h): the balancer's address, the TLVs. PeerInfo and
  // LocalInfo already give its client and destination. NotFound when there was none.
  virtual absl::StatusOr<ProxyHeader> GetProxyHeader() const = 0;

  virtual uint64_t id() const = 0;
  // The connection's telemetry span, and its parent (the acceptor's span).
  virtual uint64_t span_id() const = 0;
  virtual uint64_t parent_span_id() const = 0;
  virtual ConnectionHandle handle() const = 0;
  // Bytes queued for the peer and not yet taken by the kernel.
  virtual size_t queued_bytes() const = 0;
  // The transport socket, for what this API does not cover. Do not close it.
  virtual Socket& socket() = 0;
};

}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_H_
