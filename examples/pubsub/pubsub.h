// Pub/sub over lines: SUB <topic>, UNSUB <topic>, PUB <topic> <text>. A subscriber gets
// "MSG <topic> <text>" for each publication to its topics, whichever worker the
// publisher is on, and "PING" every heartbeat_interval (a handler timer, SendAfter).
//
// Fan-out is bounded at every step. A publication reaches each subscriber's worker as a
// posted message: a subscriber whose inbox is full (max_pending_messages) misses it,
// and the publisher's "OK <n>" says how many it reached. A subscriber that reads slower
// than the topic is published keeps at most subscriber_high_water bytes queued: beyond
// that its messages are dropped and counted, and once its queue has drained
// (NotifyWhenDrained) it is told "DROPPED <count>". A publisher never waits.
//
//   auto broker = std::make_shared<islet::examples::Broker>();
//   options.handler_factory = islet::HandlerFactoryOf<islet::examples::PubSubHandler>(
//       islet::examples::PubSubOptions{.broker = broker});
#ifndef ISLET_EXAMPLES_PUBSUB_PUBSUB_H_
#define ISLET_EXAMPLES_PUBSUB_PUBSUB_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/connection.h"
#include "server/handler.h"

namespace islet::examples {

// Who is subscribed to what. Thread-safe: handlers on every worker share one.
class Broker {
 public:
  void Subscribe(const std::string& topic, const ConnectionHandle& subscriber);
  void Unsubscribe(const std::string& topic, uint64_t subscriber);
  void UnsubscribeAll(uint64_t subscriber);
  // Posts `text` to the topic's subscribers (outside the lock); how many took it.
  size_t Publish(const std::string& topic, absl::string_view text);
  size_t subscribers(const std::string& topic) const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint64_t, ConnectionHandle>> topics_
      ABSL_GUARDED_BY(mu_);
};

struct PubSubOptions {
  std::shared_ptr<Broker> broker;  // required
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // A longer line ends the connection ("ERR line too long").
  size_t max_line = 4096;
  size_t max_topics = 64;  // per connection
  // Output a subscriber may have queued before its messages are dropped.
  size_t subscriber_high_water = 256 << 10;
};

class PubSubHandler : public Handler {
 public:
  explicit PubSubHandler(const PubSubOptions& options) : options_(options) {}

  HandlerResult HandleConnection(Connection& conn) override;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override;
  HandlerResult HandleMessage(std::any& message, Connection& conn) override;
  HandlerResult HandleDrained(Connection& conn) override;
  void HandleClose(Connection& conn) override { Leave(conn); }
  void HandleError(const absl::Status& error, Connection& conn) override { Leave(conn); }
  void HandleShutdown(Connection& conn) override { Leave(conn); }
  void HandleTimeout(Connection& conn) override { Leave(conn); }

 private:
  // The reply to one command line (without its '\n'); false ends the connection.
  bool Command(absl::string_view line, Connection& conn, std::string& reply);
  void Leave(Connection& conn);
  // Sets the next heartbeat, if the connection's inbox has room for it.
  void ArmHeartbeat(Connection& conn);

  PubSubOptions options_;
  std::string partial_;  // a line not yet complete
  absl::flat_hash_set<std::string> topics_;
  uint64_t dropped_ = 0;     // messages dropped since the last DROPPED notice
  bool drain_armed_ = false;
  bool heartbeat_armed_ = false;  // false: refused for a full inbox, to be retried
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_PUBSUB_PUBSUB_H_
