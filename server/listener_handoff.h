// Handing a running server's listening sockets to its successor, so that a restart
// (a deploy) loses no connection: what HAProxy's expose-fd listeners and nginx's binary
// upgrade do. The listening socket is one kernel object whichever process holds it, so
// a connection waiting in its backlog is served by whichever process accepts it; the
// old process only has to stop accepting before it lets go of its descriptors, and
// never shut the socket down (Server::ReleaseListeners).
//
//   // The running (old) process, once started:
//   auto point = HandoffPoint::Listen("/run/app/handoff.sock");
//   // ... when point->fd() polls readable:
//   absl::Status handed = (*point)->ServeOne(*server, absl::Seconds(10));
//   if (handed.ok()) server->Stop();   // drains what it accepted, within shutdown_timeout
//   else { /* logged; it still serves, and the point still listens */ }
//
//   // The new process, instead of Server::Start:
//   absl::StatusOr<TakeOverResult> taken =
//       TakeOver("/run/app/handoff.sock", options, absl::Seconds(10));
//
// The exchange, over a unix stream socket (each step bounded by the timeout):
//   1. The successor connects. The old process checks that it runs as the same user (or
//      root), then sends an offer: a versioned text message describing each listening
//      socket, with the sockets themselves attached (SCM_RIGHTS):
//        islet-handoff 1\n
//        listener ipv4 127.0.0.1 4000\n      (or ipv6 ::1 4000, or unix /run/app.sock)
//        end\n
//   2. The successor checks them against what it was asked to serve
//      (CheckListenersMatch); it answers "refuse <why>\n" and gives up when they differ,
//      or starts its server on them, accepting at once, and answers "ready\n".
//   3. The old process stops accepting (ReleaseListeners), closes the hand-off socket and
//      removes its path (so the successor may listen there for the next deploy), and
//      answers "released\n". Then it drains and exits.
// Between 1 and 3 both processes accept from the same sockets; no connection is lost
// either way. A successor that never answers, or answers anything else, leaves the old
// process serving as before.
#ifndef ISLET_SERVER_LISTENER_HANDOFF_H_
#define ISLET_SERVER_LISTENER_HANDOFF_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/server.h"
#include "server/server_options.h"
#include "transport/socket_types.h"
#include "transport/unique_fd.h"

namespace islet {

// Enough for a loaded machine to start a server; short enough that a deploy step that
// hangs is noticed.
inline constexpr absl::Duration kDefaultHandoffTimeout = absl::Seconds(10);

// The old process's side: a unix socket where a successor asks for the listeners.
class HandoffPoint {
 public:
  // Listens at `path`: a socket file readable and writable by this user only. A stale
  // file nobody answers on is replaced; AlreadyExists when a process listens there.
  static absl::StatusOr<std::unique_ptr<HandoffPoint>> Listen(const std::string& path);
  // Closes the socket and removes its file (unless a successful ServeOne already has).
  ~HandoffPoint();
  HandoffPoint(const HandoffPoint&) = delete;
  HandoffPoint& operator=(const HandoffPoint&) = delete;

  // Polls readable when a successor connects.
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

  // Serves one successor: waits up to `timeout` for it to connect (Unavailable when none
  // does), sends it `server`'s listening sockets, waits up to `timeout` for its answer,
  // and on "ready" releases them (Server::ReleaseListeners), closes this point, removes
  // its path and confirms. OK then: the server accepts no more, and the caller drains it
  // (Stop). Otherwise the server serves on and this point still listens:
  // PermissionDenied for a peer of another user, FailedPrecondition when the successor
  // refused (its reason in the message) or the server is not running, DeadlineExceeded
  // when it did not answer in time, Aborted when it hung up, InvalidArgument when it
  // answered something else, the server's error when its sockets cannot be duplicated.
  absl::Status ServeOne(Server& server, absl::Duration timeout = kDefaultHandoffTimeout);

 private:
  HandoffPoint(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::string path_;
};

// The new process's side, in steps, for a caller that builds its server itself (the
// harness does): Receive, check, start a server with ServerOptions::listen_fds = fds(),
// then Confirm; or Refuse.
class Takeover {
 public:
  // Connects to the hand-off socket at `path` and receives the old process's listening
  // sockets, within `timeout`. Unavailable when nobody listens there (NotFound: no such
  // file); InvalidArgument for an offer that is not one, or describes other sockets than
  // it carries; Unimplemented for another version of the exchange; DeadlineExceeded.
  static absl::StatusOr<std::unique_ptr<Takeover>> Receive(
      const std::string& path, absl::Duration timeout = kDefaultHandoffTimeout);

  // The sockets received, in the old server's order, as the kernel reports them.
  const std::vector<SocketInfo>& sockets() const { return sockets_; }
  // Their descriptors (close-on-exec), owned by this object: for
  // ServerOptions::listen_fds, which duplicates them.
  std::vector<int> fds() const;

  // Tells the old process that this one does not take the sockets and why (it logs the
  // reason and serves on), then closes the connection and the descriptors received.
  void Refuse(absl::string_view why);

  // Tells the old process that this one accepts now, and waits up to `timeout` for it
  // to confirm that it has stopped accepting. On an error (it did not confirm in time,
  // hung up, or answered something else) it may still be accepting too: both processes
  // serve from the same sockets, which loses nothing, until it exits.
  absl::Status Confirm(absl::Duration timeout = kDefaultHandoffTimeout);

 private:
  Takeover(UniqueFd connection, std::vector<UniqueFd> fds, std::vector<SocketInfo> sockets)
      : connection_(std::move(connection)), fds_(std::move(fds)), sockets_(std::move(sockets)) {}

  UniqueFd connection_;
  std::vector<UniqueFd> fds_;
  std::vector<SocketInfo> sockets_;
};

struct TakeOverResult {
  std::unique_ptr<Server> server;
  // OK when the old process confirmed that it stopped accepting; otherwise why not (the
  // new server runs all the same, see Takeover::Confirm).
  absl::Status predecessor;
};

// All the steps for a library user: receives the old process's sockets from `path`,
// checks them against `options` (CheckListenersMatch; a mismatch is refused, and
// returned as InvalidArgument), starts a server with `options` on them (a failure is
// refused too, and returned), and confirms. Each step is bounded by `timeout`.
absl::StatusOr<TakeOverResult> TakeOver(const std::string& path, ServerOptions options,
                                        absl::Duration timeout = kDefaultHandoffTimeout);

}  // namespace islet

#endif  // ISLET_SERVER_LISTENER_HANDOFF_H_
