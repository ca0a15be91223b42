#include "examples/messenger/messenger.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace islet::examples {

void MessengerRoom::Join(const ConnectionHandle& member) {
  absl::MutexLock lock(&mu_);
  members_[member.id()] = member;
}

void MessengerRoom::Leave(uint64_t id) {
  absl::MutexLock lock(&mu_);
  members_.erase(id);
}

size_t MessengerRoom::size() const {
  absl::MutexLock lock(&mu_);
  return members_.size();
}

void MessengerRoom::Broadcast(uint64_t from, const std::string& line) {
  std::vector<ConnectionHandle> others;
  {
    absl::MutexLock lock(&mu_);
    others.reserve(members_.size());
    for (const auto& [id, handle] : members_) {
      if (id != from) others.push_back(handle);
    }
  }
  lines_.fetch_add(1, std::memory_order_relaxed);
  // Outside the lock, both: a slow log or a slow worker never holds up the room.
  if (log_ != nullptr) {
    absl::MutexLock lock(&log_mu_);
    std::fwrite(line.data(), 1, line.size(), log_);
    std::fflush(log_);
  }
  std::vector<ConnectionHandle> behind;
  for (const ConnectionHandle& h : others) {
    if (absl::IsResourceExhausted(h.Post(line))) behind.push_back(h);
  }
  if (behind.empty()) return;
  // A member max_pending_messages behind is not keeping up: it leaves the room now (so
  // no later line is posted to it, nor a second close) and is disconnected, rather
  // than left to fall further behind.
  {
    absl::MutexLock lock(&mu_);
    for (const ConnectionHandle& h : behind) members_.erase(h.id());
  }
  for (const ConnectionHandle& h : behind) {
    h.Close().IgnoreError();
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

MessengerHandler::MessengerHandler(const std::any& options) {
  if (const auto* room = std::any_cast<std::shared_ptr<MessengerRoom>>(&options)) room_ = *room;
}

HandlerResult MessengerHandler::HandleConnection(Connection& conn) {
  if (room_ == nullptr) {
    return HandlerResult::Error(
        absl::FailedPreconditionError("messenger: handler_options holds no MessengerRoom"));
  }
  absl::StatusOr<SocketInfo> peer = conn.PeerInfo();
  name_ = peer.ok() ? peer->ToString() : absl::StrCat("#", conn.id());
  room_->Join(conn.handle());
  return HandlerResult::Continue();
}

HandlerResult MessengerHandler::HandleData(absl::string_view data, Connection& conn) {
  partial_.append(data.data(), data.size());
  size_t start = 0;
  for (size_t end; (end = partial_.find('\n', start)) != std::string::npos; start = end + 1) {
    absl::string_view text(partial_.data() + start, end - start);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    room_->Broadcast(conn.id(), absl::StrCat(name_, ": ", text, "\n"));
  }
  partial_.erase(0, start);
  if (partial_.size() > kMaxLine) {
    return HandlerResult::Error(absl::ResourceExhaustedError(
        absl::StrCat("messenger: a line longer than ", kMaxLine, " bytes")));
  }
  return HandlerResult::Continue();
}

HandlerResult MessengerHandler::HandleMessage(std::any& message, Connection& conn) {
  if (const auto* line = std::any_cast<std::string>(&message)) {
    absl::Status sent = conn.Send(*line);
    if (!sent.ok()) return HandlerResult::Error(sent);
  }
  return HandlerResult::Continue();
}

void MessengerHandler::Leave(Connection& conn) {
  if (room_ != nullptr) room_->Leave(conn.id());
}

}  // namespace islet::examples
