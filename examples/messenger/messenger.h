// Messenger: a chat room. Each line a client sends goes to every other connected
// client, prefixed with the sender's address, and is printed by the server. It shows
// the cross-thread post: the room holds a ConnectionHandle per client and posts each
// line to the others' workers, where HandleMessage writes it out.
//
//   auto room = std::make_shared<islet::examples::MessengerRoom>(stdout);
//   options.handler_factory = islet::HandlerFactoryOf<islet::examples::MessengerHandler>();
//   options.handler_options = room;
#ifndef ISLET_EXAMPLES_MESSENGER_MESSENGER_H_
#define ISLET_EXAMPLES_MESSENGER_MESSENGER_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/connection.h"
#include "server/handler.h"

namespace islet::examples {

// Who is connected. Thread-safe: handlers on every worker share one room.
class MessengerRoom {
 public:
  // Lines are also printed to `log` (nullptr: not printed).
  explicit MessengerRoom(FILE* log = nullptr) : log_(log) {}

  void Join(const ConnectionHandle& member);
  void Leave(uint64_t id);
  // Posts `line` (ending in '\n') to every member but `from`. A member that cannot
  // keep up (its connection refuses the post) is disconnected.
  void Broadcast(uint64_t from, const std::string& line);
  size_t size() const;
  // Lines broadcast so far, and members disconnected for not keeping up.
  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  FILE* log_;
  absl::Mutex log_mu_;  // lines are written whole, never interleaved
  std::atomic<uint64_t> lines_{0};
  std::atomic<uint64_t> dropped_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, ConnectionHandle> members_ ABSL_GUARDED_BY(mu_);
};

class MessengerHandler : public Handler {
 public:
  // A line longer than this closes the sender's connection with an error.
  static constexpr size_t kMaxLine = 64 * 1024;

  // handler_options must hold a std::shared_ptr<MessengerRoom>.
  explicit MessengerHandler(const std::any& options);

  HandlerResult HandleConnection(Connection& conn) override;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override;
  HandlerResult HandleMessage(std::any& message, Connection& conn) override;
  void HandleClose(Connection& conn) override { Leave(conn); }
  void HandleError(const absl::Status&, Connection& conn) override { Leave(conn); }
  void HandleShutdown(Connection& conn) override { Leave(conn); }
  void HandleTimeout(Connection& conn) override { Leave(conn); }

 private:
  void Leave(Connection& conn);

  std::shared_ptr<MessengerRoom> room_;
  std::string name_;     // "127.0.0.1:50312"
  std::string partial_;  // an unfinished line
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_MESSENGER_MESSENGER_H_
