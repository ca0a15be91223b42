// The acceptor pool: num_acceptors acceptors, each handing new sockets to the workers in
// turn and keeping its own connection budget. Internal to the server.
//
// Where the listener can be polled (Listener::fd(), as TCP and TLS listeners can), an
// acceptor runs on a worker's event loop, as nginx accepts: no thread of its own, and a
// connection for that worker is adopted without a cross-thread wake-up. Otherwise it
// gets a thread blocked in Listener::Accept. Both behave alike: the budget's retry
// window, the EMFILE back-off and the telemetry are the same. On a loop that accepts
// itself (io_uring's multishot accept, EventLoop::AcceptChannel) and a listener that
// takes its descriptors (Listener::AdoptAccepted), the acceptor takes connections from
// the loop instead of calling accept(2); it pauses by stopping the loop's accepting.
#ifndef ISLET_SERVER_ACCEPTOR_H_
#define ISLET_SERVER_ACCEPTOR_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/event_loop.h"
#include "server/server_context.h"
#include "server/telemetry.h"
#include "server/worker.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

// The listening sockets the acceptors share, and the pool's run state. Suspend closes
// the listeners and parks the acceptors; Resume installs new ones; Stop releases them.
class ListenerSet {
 public:
  // The listener for acceptor `index`, waiting while suspended; nullptr once stopping.
  std::shared_ptr<Listener> WaitForListener(int index);
  // The same without waiting: nullptr while suspended or stopping.
  std::shared_ptr<Listener> ListenerFor(int index);
  // Whether every installed listener can be polled (Listener::fd()).
  bool Pollable();
  void Install(std::vector<std::shared_ptr<Listener>> listeners);
  // Whether `listener` is still in use (not closed by Suspend or Stop).
  bool IsInstalled(const std::shared_ptr<Listener>& listener);
  // What the acceptors do once the listeners are closed.
  enum class Then : uint8_t { kPark, kStop };
  // Closes every listener (new connections are refused at once) and wakes the
  // acceptors: they park until Install (Suspend) or return (Stop).
  void CloseAll(Then then);
  // Releases every listener (Listener::Release: no shutdown, the socket lives on in
  // the processes sharing it) and parks the acceptors.
  void ReleaseAll();
  // The listeners installed now, in order.
  std::vector<std::shared_ptr<Listener>> Installed();
  // Sleeps for `d` unless stopping; false when stopping.
  bool SleepUnlessStopping(absl::Duration d);

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

class Acceptor : private EventLoop::Watcher {
 public:
  Acceptor(ServerContext& context, ListenerSet& listeners, std::vector<Worker*> workers,
           int index);
  ~Acceptor() override;

  // Starts accepting: on the loop of worker index % workers when `on_loop`, otherwise
  // on a thread of its own.
  void Start(bool on_loop);
  // On a loop: picks up what Suspend or Resume changed in the listener set (a thread
  // finds out by itself). Thread-safe.
  void Rearm();
  // Stops accepting (the listener set must be stopping): BeginStop asks without
  // waiting, Join waits until it has.
  void BeginStop();
  void Join();
  const std::shared_ptr<AcceptorSlot>& slot() const { return slot_; }

 private:
  void Run();  // the thread
  void Emit(TelemetryEventType type, const absl::Status* error = nullptr, uint64_t count = 0,
            absl::Duration duration = absl::ZeroDuration(), const SocketInfo* remote = nullptr);
  bool WaitForBudget();  // the thread: sleeps through the retry window
  // Room in this acceptor's budget and under the server's max_connections.
  bool HasRoom() const;
  // A socket in the reserve of `limit` (a DescriptorLimit()) is closed and reported as
  // acceptor.emfile: true, with the back-off to take.
  bool RefusedForReserve(Socket& socket, absl::Duration* backoff, int64_t limit);
  // DescriptorLimit() where a check needs it (a reserve, or the loop's accepting); else
  // kNoDescriptorLimit, without asking.
  int64_t LimitForChecks() const;
  void HandOver(std::unique_ptr<Socket> socket);
  // Closes a connection it cannot take, reporting acceptor.spawn_error with `why`.
  void Refuse(std::unique_ptr<Socket> socket, const absl::Status& why,
              const SocketInfo* peer = nullptr);
  static absl::Status FullError();

  // On a loop (its thread only; asserted in debug builds).
  void Arm();
  void OnReady(uint32_t events) override;
  // An accept error: reports it; false when accepting should pause for `*backoff`.
  bool Report(const absl::Status& error, absl::Duration* backoff);
  // The next connection: from the loop's accept channel, or by TryAccept.
  absl::StatusOr<std::unique_ptr<Socket>> NextAccepted();
  // The connection held beyond the descriptor limit (see NextAccepted), once a
  // descriptor under the limit is free: true when it was placed or none is held.
  bool PlaceOverLimit();
  // Serves, or refuses, what the loop accepted and the acceptor has not taken:
  // descriptors within the reserve are closed, the rest handed over while there is room.
  void TakeAcceptedBacklog();
  bool Watching() const { return registration_.active() || accepting_; }
  void Place(std::unique_ptr<Socket> socket);
  void PlacePending();
  void PauseFor(absl::Duration d, absl::AnyInvocable<void()> then);
  void Watch();
  void StopWatching();
  void DropListener();

  ServerContext& context_;
  ListenerSet& listeners_;
  std::vector<Worker*> workers_;
  std::shared_ptr<AcceptorSlot> slot_;
  size_t next_worker_ = 0;
  uint64_t accepted_ = 0;
  absl::Duration started_;
  std::thread thread_;

  EventLoop* loop_ = nullptr;  // set when it runs on a loop
  bool stop_requested_ = false;  // the controlling thread's
  absl::Notification stop_done_;
  // Loop state (its thread only).
  std::shared_ptr<Listener> listener_;
  bool shares_listener_fd_ = false;  // another acceptor watches listener_->fd() here
  UniqueFd watch_fd_;                // then: a duplicate of it, for this one
  // Active while watching; declared after watch_fd_, so it goes first.
  EventLoop::Registration registration_;
  // The loop's accepting of listener_, where it has one (made on the first Watch).
  std::unique_ptr<EventLoop::AcceptChannel> accept_channel_;
  bool accepting_ = false;  // accept_channel_ is accepting
  // What a batch of accepts checks descriptors against: read once per batch.
  int64_t descriptor_limit_ = kNoDescriptorLimit;
  // Accepted by the loop beyond a descriptor limit lowered since its accept was armed:
  // held unserved, as accept(2) would have failed, until a descriptor is free.
  UniqueFd over_limit_;
  bool stopped_ = false;
  EventLoop::TimerId timer_ = 0;
  std::unique_ptr<Socket> pending_;  // accepted, waiting for room in the budget
  int pending_attempts_ = 0;
};

}  // namespace islet

#endif  // ISLET_SERVER_ACCEPTOR_H_
