#include "server/connection_handle.h"

namespace islet {

absl::Status ConnectionHandle::Post(std::any message) const {
  if (!mailbox_) return absl::FailedPreconditionError("post: empty connection handle");
  return mailbox_->Post(id_, std::move(message));
}

absl::Status ConnectionHandle::Close() const {
  if (!mailbox_) return absl::FailedPreconditionError("close: empty connection handle");
  return mailbox_->Close(id_);
}

}  // namespace islet
