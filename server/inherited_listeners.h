// Socket activation: listening sockets a service manager opened and passed down, by
// systemd's protocol (sd_listen_fds(3)). systemd (or any manager speaking the protocol)
// binds the sockets of a .socket unit itself and starts the service with them as
// descriptors 3, 4, ... and three variables: LISTEN_FDS (how many), LISTEN_PID (the
// process they are for) and LISTEN_FDNAMES (their names, colon-separated, from
// FileDescriptorName=). The port is then never closed across restarts: connects wait in
// the backlog while the service restarts, instead of being refused.
//
//   absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
//   if (!inherited.ok()) { /* refuse to start: the message names the descriptor */ }
//   if (!inherited->empty()) {
//     for (const InheritedListener& l : *inherited) options.listen_fds.push_back(l.fd.get());
//     options.num_listen_sockets = inherited->size();  // and num_acceptors at least that
//   }
//   auto server = Server::Start(options);  // duplicates the descriptors it was given
//
// Why our own few lines rather than libsystemd's sd_listen_fds_with_names: the protocol
// is three variables and a descriptor range; linking libsystemd would add a dependency
// to every binary for that. And we check more: sd_listen_fds hands back any descriptor,
// while a server needs each to be a listening stream socket (of IPv4, IPv6 or unix) and
// to be the socket its options ask for, so a unit file that passes the wrong socket
// fails at start with a message instead of serving something else, or nothing.
#ifndef ISLET_SERVER_INHERITED_LISTENERS_H_
#define ISLET_SERVER_INHERITED_LISTENERS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/server_options.h"
#include "transport/socket_types.h"
#include "transport/unique_fd.h"

namespace islet {

// The first descriptor passed (SD_LISTEN_FDS_START).
inline constexpr int kFirstInheritedFd = 3;

struct InheritedListener {
  // Its name from LISTEN_FDNAMES; "unknown" without the variable, as systemd says.
  std::string name;
  UniqueFd fd;  // close-on-exec
  // Where it is bound (a unix socket: its path).
  SocketInfo local;
};

// Takes the listening sockets passed to this process. Empty when LISTEN_PID is unset or
// names another process (the variables were meant for a parent and leaked to us).
// Otherwise descriptors 3 .. 3 + LISTEN_FDS - 1, each made close-on-exec (so a program
// we start does not inherit them), checked to be a listening stream socket (IPv4,
// IPv6 or unix) and named from LISTEN_FDNAMES. InvalidArgument, naming the variable or
// the descriptor and what it is instead, for a LISTEN_FDS or LISTEN_PID that is not a
// number, a LISTEN_FDNAMES with another count of names, or a descriptor that is not a
// listening socket; the descriptors are closed then. Whatever the outcome, the three
// variables are removed from the environment (sd_listen_fds(1) does the same), so a
// child process never mistakes them for its own. Reads and changes the environment:
// call it once, from main, before any thread starts.
absl::StatusOr<std::vector<InheritedListener>> TakeInheritedListeners();

// OK when `sockets` are what a server with `options` would itself listen on:
// options.num_listen_sockets of them, each a unix socket at transport_options.unix_path,
// or else bound to transport_options.address (empty: 0.0.0.0; IPv6 literals compared
// as addresses, not text) and to options.port (0 accepts any port). Otherwise
// InvalidArgument saying what differs ("socket 1 is bound to 127.0.0.1:4001, but the
// server is asked for port 4000"). For inherited and handed-over sockets alike.
absl::Status CheckListenersMatch(absl::Span<const SocketInfo> sockets,
                                 const ServerOptions& options);

}  // namespace islet

#endif  // ISLET_SERVER_INHERITED_LISTENERS_H_
