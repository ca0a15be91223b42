// Server: a listening socket (or several), an acceptor pool, and worker event loops
// serving connections through your Handler. The counterpart of ThousandIsland's
// start_link / stop / suspend / resume / listener_info / info / connection_pids.
//
//   islet::ServerOptions options;
//   options.port = 0;
//   options.handler_factory = islet::HandlerFactoryOf<Echo>();
//   absl::StatusOr<std::unique_ptr<islet::Server>> server =
//       islet::Server::Start(std::move(options));
//   if (!server.ok()) { /* InvalidArgument names the option; listen errors as is */ }
//   std::cout << (*server)->ListenerInfo()->ToString();
//   (*server)->Stop();
//
// Threads: num_workers event loops, where the acceptors also run (TCP, TLS, any listener
// with a descriptor to poll; otherwise one thread per acceptor); never one per connection.
// Control calls (Stop, Suspend, Resume, Connections) are thread-safe but must not be
// made from a handler callback (they wait for the workers).
#ifndef ISLET_SERVER_SERVER_H_
#define ISLET_SERVER_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/connection.h"
#include "server/overload_state.h"
#include "server/server_options.h"
#include "server/telemetry.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

class Acceptor;
class ListenerSet;
class Worker;
struct ServerContext;

enum class ServerStatus : uint8_t { kRunning, kSuspended, kStopped };

// A duplicate of one of a server's listening sockets and the address it is bound to
// (Server::DuplicateListeners).
struct ListeningSocket {
  UniqueFd fd;
  SocketInfo local;
};

struct ServerInfo {
  ServerStatus status = ServerStatus::kStopped;
  std::optional<SocketInfo> local;  // the listening address; none unless running
  int64_t active_connections = 0;
  // Output queued for peers over every connection, and the budget it is held to.
  uint64_t queued_output_bytes = 0;
  uint64_t output_budget = 0;
  // The overload state as the workers last read it (every quarter second).
  OverloadReading overload;
  // What the workers' loops wait on, and what the kernel granted: "epoll", or e.g.
  // "io_uring (SINGLE_ISSUER|DEFER_TASKRUN)" (ServerOptions::event_loop).
  std::string event_loop;
};

class Server {
 public:
  // Validates the options, listens, and starts the threads; returns once listening.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  // Stops with the shutdown_timeout if still running.
  ~Server();

  // Stops accepting at once (new connects are refused), gives every connection its
  // HandleShutdown and lets queued output drain, waits up to `timeout` (default:
  // shutdown_timeout) for connections to finish, closes the rest, and joins every
  // thread. A callback still running finishes first. Idempotent.
  absl::Status Stop();
  absl::Status Stop(absl::Duration timeout);

  // Suspend closes the listeners (new connects are refused) and keeps the connections;
  // Resume listens again on the same address and port. A server on sockets it did not
  // open (ServerOptions::listen_fds) cannot refuse connects without breaking the socket
  // for the other processes holding it: Suspend stops accepting, connects wait in the
  // backlog, and Resume accepts them.
  absl::Status Suspend();
  absl::Status Resume();

  // ---- Handing the listening sockets to another process (server/listener_handoff.h) ----

  // Duplicates (close-on-exec) of the listening sockets, in order, each with its bound
  // address. FailedPrecondition unless running; Unimplemented when the transport's
  // listeners have no descriptor (Listener::fd()), which must be the listening socket
  // itself, as TCP's and TLS's are.
  absl::StatusOr<std::vector<ListeningSocket>> DuplicateListeners() const;

  // Stops accepting and lets go of the listening sockets without shutting them down
  // (Listener::Release): a process that holds them too, the successor they were handed
  // to, goes on accepting from them, and the connections waiting in their backlog are
  // its. The live connections are served as before; Stop then drains them. The status
  // becomes kSuspended, and Resume fails with FailedPrecondition from then on: the
  // sockets belong to another process. (Suspend is no substitute: for a socket the
  // server opened it shuts the socket down, for every process that holds it.)
  // FailedPrecondition once stopped.
  absl::Status ReleaseListeners();

  ServerStatus status() const;
  // The bound address (port 0 resolved); FailedPrecondition unless running.
  absl::StatusOr<SocketInfo> ListenerInfo() const;
  ServerInfo Info() const;
  int64_t active_connections() const;
  // The live connections, each with a handle to post to or close it.
  std::vector<ConnectionSummary> Connections() const;

  // Opens an outbound connection served by `options.handler`, on the workers in turn:
  // for a client not tied to an accepted connection (a handler opens its own with
  // Connection::Open, on its worker). As Connection::Open; its span's parent is the
  // listener's. Thread-safe, also from a handler.
  absl::StatusOr<ConnectionHandle> Open(OutboundOptions options);

 private:
  explicit Server(std::unique_ptr<ServerContext> context);
  absl::Status Listen(uint16_t port) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // kListenerStart or kListenerStop.
  void EmitListener(TelemetryEventType type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool OnWorkerThread() const;

  std::unique_ptr<ServerContext> context_;
  std::shared_ptr<Transport> transport_;
  std::unique_ptr<ListenerSet> listeners_;
  // ServerOptions::listen_fds, duplicated at Start: Listen (Resume too) adopts a
  // duplicate of each. Dropped by Stop and ReleaseListeners.
  std::vector<UniqueFd> adopted_fds_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;  // ReleaseListeners ran
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::atomic<uint64_t> next_open_worker_{0};

  // Serializes Stop calls; held while the connections drain, when mu_ is not.
  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;  // serializes control calls
  ServerStatus status_ ABSL_GUARDED_BY(mu_) = ServerStatus::kStopped;
  std::string event_loop_;  // set once by Start
  SocketInfo local_ ABSL_GUARDED_BY(mu_);
  absl::Duration listener_started_ ABSL_GUARDED_BY(mu_);
};

}  // namespace islet

#endif  // ISLET_SERVER_SERVER_H_
