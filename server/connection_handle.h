// ConnectionHandle: a reference to one connection that any thread may hold and use, the
// counterpart of sending to a Thousand Island connection's process. Posting through it
// runs the handler's HandleMessage on the connection's worker.
//
//   ConnectionHandle h = conn.handle();            // inside a callback
//   std::thread([h] { h.Post(std::string("hi")).IgnoreError(); }).detach();
#ifndef ISLET_SERVER_CONNECTION_HANDLE_H_
#define ISLET_SERVER_CONNECTION_HANDLE_H_

#include <any>
#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "transport/socket_types.h"

namespace islet {

// Where handles post: the worker that owns the connection. It outlives its worker, so a
// handle kept after the connection or the server is gone stays safe to use.
class ConnectionMailbox {
 public:
  virtual ~ConnectionMailbox() = default;
  // Both run their work on the connection's worker; FailedPrecondition once stopped.
  virtual absl::Status Post(uint64_t connection_id, std::any message) = 0;
  virtual absl::Status Close(uint64_t connection_id) = 0;
};

// Copyable and cheap.
class ConnectionHandle {
 public:
  ConnectionHandle() = default;
  ConnectionHandle(std::shared_ptr<ConnectionMailbox> mailbox, uint64_t id)
      : mailbox_(std::move(mailbox)), id_(id) {}

  uint64_t id() const { return id_; }
  bool valid() const { return mailbox_ != nullptr; }

  // Runs the handler's HandleMessage with `message` on the connection's worker. OK once
  // queued (a message for a connection that closes first is dropped, as a message to a
  // dead process is); ResourceExhausted when ServerOptions::max_pending_messages are
  // already waiting for this connection (it is not keeping up: drop the message or
  // close the connection); FailedPrecondition once the server has stopped.
  absl::Status Post(std::any message) const;
  // Closes the connection as if its handler had returned Close().
  absl::Status Close() const;

  bool operator==(const ConnectionHandle& other) const {
    return mailbox_ == other.mailbox_ && id_ == other.id_;
  }

 private:
  std::shared_ptr<ConnectionMailbox> mailbox_;
  uint64_t id_ = 0;
};

// One live connection as Server::Connections() lists it.
struct ConnectionSummary {
  uint64_t id = 0;
  SocketInfo remote;
  int acceptor = -1;
  int worker = -1;
  absl::Duration age;
  ConnectionHandle handle;
};

}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_HANDLE_H_
