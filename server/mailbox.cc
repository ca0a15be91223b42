#include "server/mailbox.h"

#include "absl/strings/str_cat.h"
#include "server/connection_host.h"
#include "server/connection_impl.h"

namespace islet {

void WorkerMailbox::Attach(ConnectionHost* host) {
  absl::MutexLock lock(&mu_);
  host_ = host;
}

bool WorkerMailbox::PostToLoop(EventLoop::Task task) {
  absl::MutexLock lock(&mu_);
  if (host_ == nullptr) return false;
  host_->loop().Post(std::move(task));
  return true;
}

absl::Status WorkerMailbox::RunLater(absl::string_view what, uint64_t id,
                                     absl::AnyInvocable<void(ConnectionImpl&) &&> action) {
  absl::MutexLock lock(&mu_);
  if (host_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": the server has stopped"));
  }
  host_->RunLater(id, std::move(action));
  return absl::OkStatus();
}

PostedMessage& PostedMessage::operator=(PostedMessage&& other) noexcept {
  if (this != &other) {
    if (inbox_ != nullptr) inbox_->pending_.fetch_sub(1, std::memory_order_acq_rel);
    message_ = std::move(other.message_);
    inbox_ = std::move(other.inbox_);
  }
  return *this;
}

PostedMessage::~PostedMessage() {
  if (inbox_ != nullptr) inbox_->pending_.fetch_sub(1, std::memory_order_acq_rel);
}

absl::StatusOr<PostedMessage> ConnectionInbox::Reserve(absl::string_view what,
                                                       uint64_t connection_id,
                                                       std::any message) {
  if (pending_.fetch_add(1, std::memory_order_acq_rel) >= limit_) {
    pending_.fetch_sub(1, std::memory_order_acq_rel);
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": connection ", connection_id, " has ", limit_,
                     " messages waiting (max_pending_messages); it is not keeping up"));
  }
  // From here the message holds its place: dropped anywhere, it gives it back.
  return PostedMessage(std::move(message), shared_from_this());
}

absl::Status ConnectionInbox::Post(uint64_t connection_id, std::any message) {
  absl::StatusOr<PostedMessage> reserved = Reserve("post", connection_id, std::move(message));
  if (!reserved.ok()) return reserved.status();
  PostedMessage posted = *std::move(reserved);
  return worker_->RunLater("post", connection_id,
                           [posted = std::move(posted)](ConnectionImpl& c) mutable {
                             c.Deliver(std::move(posted));
                           });
}

absl::Status ConnectionInbox::Close(uint64_t connection_id) {
  return worker_->RunLater("close", connection_id, [](ConnectionImpl& c) {
    c.Close(Ending::kLocalClose, CloseType::kFlushWrite);
  });
}

}  // namespace islet
