// How other threads reach a worker's connections. Internal to the server.
//
// WorkerMailbox: the way onto one worker's loop while it runs; detached when the worker
// stops, after which posting fails instead of touching a worker that is gone.
// ConnectionInbox: one connection's mailbox as its ConnectionHandles see it. It counts
// the messages on their way (posted, or kept while the handshake runs) and refuses a
// post beyond ServerOptions::max_pending_messages, so a poster faster than the
// connection gets ResourceExhausted instead of growing the worker's queue without end.
#ifndef ISLET_SERVER_MAILBOX_H_
#define ISLET_SERVER_MAILBOX_H_

#include <any>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/connection_handle.h"
#include "server/event_loop.h"

namespace islet {

class ConnectionHost;
class ConnectionImpl;

class WorkerMailbox {
 public:
  // `host` receives what is posted from now on; nullptr detaches (the worker stops).
  void Attach(ConnectionHost* host);
  // Runs `task` on the worker's loop, which is sure to run it: the worker detaches
  // before it quits its loop, and a loop runs what was posted before Quit. False when
  // detached.
  bool PostToLoop(EventLoop::Task task);
  // Runs `action` on connection `id` on its worker, if it is still there then.
  // FailedPrecondition ("<what>: the server has stopped") when detached.
  absl::Status RunLater(absl::string_view what, uint64_t id,
                        absl::AnyInvocable<void(ConnectionImpl&) &&> action);

 private:
  absl::Mutex mu_;
  ConnectionHost* host_ ABSL_GUARDED_BY(mu_) = nullptr;
};

class ConnectionInbox;

// A message on its way to a connection. It holds its place in the connection's count
// until it is handled or dropped (destroyed), wherever that happens.
class PostedMessage {
 public:
  PostedMessage(std::any message, std::shared_ptr<ConnectionInbox> inbox)
      : message_(std::move(message)), inbox_(std::move(inbox)) {}
  PostedMessage(PostedMessage&&) = default;
  PostedMessage& operator=(PostedMessage&& other) noexcept;
  ~PostedMessage();

  std::any& message() { return message_; }

 private:
  std::any message_;
  std::shared_ptr<ConnectionInbox> inbox_;  // null once moved from
};

class ConnectionInbox final : public ConnectionMailbox,
                              public std::enable_shared_from_this<ConnectionInbox> {
 public:
  ConnectionInbox(std::shared_ptr<WorkerMailbox> worker, size_t limit)
      : worker_(std::move(worker)), limit_(limit) {}

  // ResourceExhausted when `limit` messages are already on their way.
  absl::Status Post(uint64_t connection_id, std::any message) override;
  // A place for `message` under the limit, held until the message is handled or
  // dropped (a connection's timer holds one while it is pending). `what` names the
  // caller in the error.
  absl::StatusOr<PostedMessage> Reserve(absl::string_view what, uint64_t connection_id,
                                        std::any message);
  absl::Status Close(uint64_t connection_id) override;
  // Messages posted and not yet handled or dropped.
  size_t pending() const { return pending_.load(std::memory_order_acquire); }

 private:
  friend class PostedMessage;

  const std::shared_ptr<WorkerMailbox> worker_;
  const size_t limit_;
  std::atomic<size_t> pending_{0};
};

}  // namespace islet

#endif  // ISLET_SERVER_MAILBOX_H_
