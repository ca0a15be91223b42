// ServerOptions: every knob of a server in one struct, each default with its reason.
// Server::Start validates them and fails with InvalidArgument naming the option.
#ifndef ISLET_SERVER_SERVER_OPTIONS_H_
#define ISLET_SERVER_SERVER_OPTIONS_H_

#include <any>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/event_loop_kind.h"
#include "server/handler.h"
#include "transport/transport.h"

namespace islet {

struct ServerOptions {
  // Thousand Island's default port. 0 asks the kernel for a free one; read it back
  // with Server::ListenerInfo().
  uint16_t port = 4000;

  // The transport; nullptr means plain TCP. Shared so one TLS configuration can serve
  // several servers.
  std::shared_ptr<Transport> transport;
  // Bind address or unix path, backlog, socket options (see ListenOptions).
  ListenOptions transport_options;
  // Listening sockets to serve instead of opening any: inherited from systemd
  // (server/inherited_listeners.h) or handed over by a predecessor
  // (server/listener_handoff.h). Start duplicates each (the caller keeps, and closes,
  // its own) and adopts it with Transport::Adopt; `port` and transport_options' address,
  // unix path and backlog are then unused, its socket options applied. Their number
  // must equal num_listen_sockets. Such a socket may be shared with another process, so
  // this server never shuts it down: Stop and Suspend stop accepting and close the
  // server's descriptors (Listener::Release), and connections arriving meanwhile wait
  // in the backlog for whoever holds the socket (systemd, a successor, Resume).
  std::vector<int> listen_fds;

  // Makes one Handler per connection, given handler_options. Required.
  HandlerFactory handler_factory;
  std::any handler_options;

  // Acceptors: each accepts from one listen socket and hands connections to the
  // workers in turn. For TCP and TLS they run on the workers' event loops (acceptor i
  // on worker i % num_workers); for a listener that cannot be polled, each is a thread
  // blocked in Accept. One keeps up with tens of thousands of connections per second;
  // add more with several listen sockets.
  int num_acceptors = 1;
  // Gives each acceptor a thread of its own even where it could run on a worker's loop:
  // for handlers that block their worker for long (a blocking Recv), which would also
  // hold up accepting there. Costs a thread and a cross-thread hand-over per connection.
  bool dedicated_acceptor_threads = false;
  // Listening sockets sharing the port through SO_REUSEPORT, so the kernel spreads
  // new connections; at most num_acceptors.
  int num_listen_sockets = 1;
  // Event-loop threads serving connections; 0 means one per CPU core.
  int num_workers = 0;
  // What the workers' loops wait on: epoll, io_uring, or kDefault (the ISLET_EVENT_LOOP
  // environment variable, else epoll). See server/event_loop_kind.h and
  // docs/IO_URING.md. Start fails, saying why, where the kernel refuses io_uring.
  EventLoopKind event_loop = EventLoopKind::kDefault;
  // Live connections each acceptor may have (kUnlimited for no limit): 16384 per
  // acceptor bounds memory while leaving room for real traffic.
  static constexpr int kUnlimited = -1;
  int num_connections = 16384;
  // Live connections over the whole server, every acceptor and listener together
  // (kUnlimited: none beyond each acceptor's num_connections). A connection over it is
  // treated as one over its acceptor's budget (below): the acceptor waits for room,
  // accepting nothing meanwhile, so new clients wait in the listen backlog rather than
  // being accepted and dropped; after the retries it is closed (acceptor.spawn_error).
  // Outbound connections (Connection::Open, Server::Open) are not counted: this caps
  // what clients can make us hold; what handlers open is theirs to bound (a proxy opens
  // one per client), and descriptor_reserve still guards the descriptor table.
  int max_connections = kUnlimited;
  // Live connections from one peer address (IP, whatever the port), as nginx's
  // limit_conn: one more from that address is closed at once and reported as
  // acceptor.spawn_error. 0 means no limit (the default: many clients may share an
  // address behind a NAT or a proxy).
  int max_connections_per_peer = 0;
  // Accepting never takes the last descriptors under RLIMIT_NOFILE: a connection whose
  // descriptor falls within this many of the limit is closed at once and reported as
  // acceptor.emfile (with the same back-off), so files, sendfile and logs keep working
  // when connections fill the table. 0 turns it off.
  int descriptor_reserve = 32;
  // At the limit, an acceptor waits this long for a slot, this many times, then closes
  // the new connection and reports acceptor.spawn_error (Thousand Island's defaults).
  absl::Duration max_connections_retry_wait = absl::Seconds(1);
  int max_connections_retry_count = 5;

  // A connection waiting this long for data gets HandleTimeout and is closed: idle
  // clients cannot hold resources forever.
  absl::Duration read_timeout = absl::Seconds(60);
  // The transport handshake (TLS) must finish within this; a stalled client is closed.
  absl::Duration handshake_timeout = absl::Seconds(5);
  // Stop waits this long for connections to finish before closing the rest.
  absl::Duration shutdown_timeout = absl::Seconds(15);
  // When Stop begins, an open connection is not ended at once: for this long it is still
  // read, and what arrives reaches HandleData with Connection::stopping() true, so the
  // handler can answer and mark the answer the last (http_hello sends Connection: close
  // and closes). HandleShutdown ends it when the grace passes, unless the handler closed
  // it first. For request-reply protocols whose clients keep connections alive: a client
  // whose next request is already on its way when the server stops gets an answer, where
  // without a grace that request meets a closed connection (an HTTP client then retries
  // it, if it is idempotent; wrk reports an error). Zero (the default, Thousand Island's
  // behaviour) ends every connection as Stop begins, after what had already arrived.
  // A connection still in its handshake (TLS, a PROXY header) when Stop begins may
  // finish it within the grace and is then served the same way; one that has not when
  // the grace passes is closed. Bounded by Stop's timeout.
  absl::Duration shutdown_grace = absl::ZeroDuration();
  // A peer that drains none of our queued output for this long is closed.
  absl::Duration send_timeout = absl::Seconds(30);

  // A connection we close (an orderly close, its output sent) while the peer has not
  // closed its side half-closes, and reads and discards until the peer closes or this
  // passes, then closes (a lingering close, as nginx's): input unread at the close, or
  // arriving after it, makes the kernel reset the connection, and a reset can destroy
  // responses the peer has not read yet. Zero closes at once. Stop's deadline bounds
  // it too. A peer that closes when it sees our end costs nothing more.
  absl::Duration linger_timeout = absl::Seconds(2);

  // Output queued above this stops reading from the connection until it drains below
  // a quarter of it (backpressure): a peer that does not read cannot make us buffer
  // responses to requests it keeps sending.
  size_t send_queue_high_water = 1 << 20;
  // Output queued above this fails Send with ResourceExhausted and closes the
  // connection: the hard bound on memory per connection. The error is marked the
  // peer's doing (MarkPeerCaused, transport/errors.h), as is the output budget's below.
  size_t send_queue_limit = 16 << 20;
  // Output queued over every connection together: a slow reader may hold up to
  // send_queue_high_water (and one Send more), and 16,384 of them 16 GiB. While more
  // than this is queued, a connection that queues more stops reading, and one holding
  // more than its share (the budget over the live connections) is shed: its Send fails
  // with ResourceExhausted and it closes. 0 means a quarter of the machine's memory.
  size_t output_budget = 0;

  // Overload (see server/overload_state.h). As the pressure (live connections over
  // their cap or the descriptors left, queued output over output_budget) rises from
  // this fraction to 1, idle timeouts shrink toward overload_timeout_floor, which they
  // reach at the cap (Envoy's reduce_timeouts): idle and trickling connections are
  // shed to make room before a cap turns good clients away. Existing connections are
  // re-timed too. What shrinks: the read timeout (and a handler's Continue timeouts),
  // the handshake and linger timeouts, and deadlines a handler sets with
  // TimeoutScaling::kShrinkUnderPressure. In (0, 1]; 1 leaves timeouts whole until a
  // cap is reached.
  double overload_scale_from = 0.75;
  // What shrinking timeouts reach at full pressure; a timeout already shorter keeps
  // its length. Long enough for a good client to send its request; a trickler sending
  // a byte a second is shed. absl::InfiniteDuration() turns the shrinking off.
  absl::Duration overload_timeout_floor = absl::Seconds(1);

  // Messages posted to one connection (ConnectionHandle::Post) and not yet handled,
  // including those kept while its handshake runs. A post beyond it fails with
  // ResourceExhausted, so the poster learns that this connection is not keeping up and
  // decides (drop the message, or close the connection); without a bound, a fast
  // poster and a slow connection grow the worker's queue without end. What the
  // handler then Sends counts against send_queue_limit as usual.
  size_t max_pending_messages = 1024;

  // When true, a handler's Error result still runs HandleError but is not reported as
  // an error in telemetry (connection.stop carries no error).
  bool silent_terminate_on_error = false;

  // Names the server in telemetry.
  std::string name = "islet";
};

// OK, or InvalidArgument naming the first bad option.
absl::Status ValidateServerOptions(const ServerOptions& options);

}  // namespace islet

#endif  // ISLET_SERVER_SERVER_OPTIONS_H_
