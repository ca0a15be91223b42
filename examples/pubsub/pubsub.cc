#include "examples/pubsub/pubsub.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace islet::examples {
namespace {

// What a subscriber's worker receives: one publication, or its heartbeat.
struct Delivery {
  // "MSG <topic> <text>\n", built once per publication and shared by its subscribers.
  std::shared_ptr<const std::string> line;
};
struct Heartbeat {};

// "<word> <rest>": the word, and the rest after one space.
std::pair<absl::string_view, absl::string_view> SplitWord(absl::string_view line) {
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos) return {line, {}};
  return {line.substr(0, space), line.substr(space + 1)};
}

HandlerResult SentOrError(const absl::Status& sent) {
  return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
}

}  // namespace

void Broker::Subscribe(const std::string& topic, const ConnectionHandle& subscriber) {
  absl::MutexLock lock(&mu_);
  topics_[topic].emplace(subscriber.id(), subscriber);
}

void Broker::Unsubscribe(const std::string& topic, uint64_t subscriber) {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  if (it == topics_.end()) return;
  it->second.erase(subscriber);
  if (it->second.empty()) topics_.erase(it);
}

void Broker::UnsubscribeAll(uint64_t subscriber) {
  absl::MutexLock lock(&mu_);
  for (auto it = topics_.begin(); it != topics_.end();) {
    it->second.erase(subscriber);
    if (it->second.empty()) {
      topics_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t Broker::Publish(const std::string& topic, absl::string_view text) {
  std::vector<ConnectionHandle> to;
  {
    absl::MutexLock lock(&mu_);
    auto it = topics_.find(topic);
    if (it == topics_.end()) return 0;
    to.reserve(it->second.size());
    for (const auto& [id, handle] : it->second) to.push_back(handle);
  }
  auto line = std::make_shared<const std::string>(absl::StrCat("MSG ", topic, " ", text, "\n"));
  size_t reached = 0;
  // A full inbox (a subscriber far behind) or a closed one: it misses this one.
  for (const ConnectionHandle& h : to) reached += h.Post(Delivery{line}).ok() ? 1 : 0;
  return reached;
}

size_t Broker::subscribers(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  return it == topics_.end() ? 0 : it->second.size();
}

HandlerResult PubSubHandler::HandleConnection(Connection& conn) {
  absl::StatusOr<Connection::TimerId> timer =
      conn.SendAfter(options_.heartbeat_interval, Heartbeat{});
  if (!timer.ok()) return HandlerResult::Error(timer.status());
  heartbeat_armed_ = true;
  return HandlerResult::Continue();
}

void PubSubHandler::ArmHeartbeat(Connection& conn) {
  // Refused when the inbox is full of publications (the timer takes a place there too):
  // the subscriber is behind, not broken. It is tried again with the next message.
  heartbeat_armed_ = conn.SendAfter(options_.heartbeat_interval, Heartbeat{}).ok();
}

HandlerResult PubSubHandler::HandleData(absl::string_view data, Connection& conn) {
  std::string replies;
  while (!data.empty()) {
    const size_t end = data.find('\n');
    if (end == absl::string_view::npos) {
      if (partial_.size() + data.size() > options_.max_line) {
        conn.Send(absl::StrCat(replies, "ERR line too long\n")).IgnoreError();
        return HandlerResult::Close();
      }
      partial_.append(data.data(), data.size());
      break;
    }
    absl::string_view line = data.substr(0, end);
    data.remove_prefix(end + 1);
    if (!partial_.empty()) {
      partial_.append(line.data(), line.size());
      line = partial_;
    }
    if (line.size() > options_.max_line) {
      conn.Send(absl::StrCat(replies, "ERR line too long\n")).IgnoreError();
      return HandlerResult::Close();
    }
    const bool keep = Command(absl::StripSuffix(line, "\r"), conn, replies);
    partial_.clear();
    if (!keep) {
      conn.Send(replies).IgnoreError();
      return HandlerResult::Close();
    }
  }
  return SentOrError(replies.empty() ? absl::OkStatus() : conn.Send(replies));
}

bool PubSubHandler::Command(absl::string_view line, Connection& conn, std::string& reply) {
  auto [verb, rest] = SplitWord(line);
  if (verb == "SUB" || verb == "UNSUB") {
    if (rest.empty() || rest.find(' ') != absl::string_view::npos) {
      absl::StrAppend(&reply, "ERR usage: ", verb, " <topic>\n");
      return true;
    }
    const std::string topic(rest);
    if (verb == "SUB") {
      if (!topics_.contains(topic) && topics_.size() >= options_.max_topics) {
        absl::StrAppend(&reply, "ERR too many topics\n");
        return true;
      }
      topics_.insert(topic);
      options_.broker->Subscribe(topic, conn.handle());
    } else {
      topics_.erase(topic);
      options_.broker->Unsubscribe(topic, conn.id());
    }
    absl::StrAppend(&reply, "OK\n");
    return true;
  }
  if (verb == "PUB") {
    auto [topic, text] = SplitWord(rest);
    if (topic.empty()) {
      absl::StrAppend(&reply, "ERR usage: PUB <topic> <text>\n");
      return true;
    }
    const size_t reached = options_.broker->Publish(std::string(topic), text);
    absl::StrAppend(&reply, "OK ", reached, "\n");
    return true;
  }
  if (verb == "QUIT") {
    absl::StrAppend(&reply, "BYE\n");
    return false;
  }
  absl::StrAppend(&reply, "ERR unknown command\n");
  return true;
}

HandlerResult PubSubHandler::HandleMessage(std::any& message, Connection& conn) {
  if (std::any_cast<Heartbeat>(&message) != nullptr) {
    ArmHeartbeat(conn);
    return SentOrError(conn.Send("PING\n"));
  }
  const Delivery* delivery = std::any_cast<Delivery>(&message);
  if (delivery == nullptr) return HandlerResult::Continue();
  if (!heartbeat_armed_) ArmHeartbeat(conn);
  if (conn.queued_bytes() > options_.subscriber_high_water) {
    // Slower than the topic: this one is dropped; it hears how many once it catches up.
    ++dropped_;
    if (!drain_armed_) {
      drain_armed_ = true;
      conn.NotifyWhenDrained(options_.subscriber_high_water / 4);
    }
    return HandlerResult::Continue();
  }
  return SentOrError(conn.Send(*delivery->line));
}

HandlerResult PubSubHandler::HandleDrained(Connection& conn) {
  drain_armed_ = false;
  if (dropped_ == 0) return HandlerResult::Continue();
  const uint64_t n = std::exchange(dropped_, 0);
  return SentOrError(conn.Send(absl::StrCat("DROPPED ", n, "\n")));
}

void PubSubHandler::Leave(Connection& conn) {
  if (!topics_.empty()) options_.broker->UnsubscribeAll(conn.id());
  topics_.clear();
}

}  // namespace islet::examples
