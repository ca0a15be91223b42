// The acceptor pool: num_acceptors threads blocked in Listener::Accept, each handing new
// sockets to the workers in turn and keeping its own connection budget. Internal to the
// server.
#ifndef ISLET_SERVER_ACCEPTOR_H_
#define ISLET_SERVER_ACCEPTOR_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/worker.h"
#include "transport/transport.h"

namespace islet {

// The listening sockets the acceptors share, and the pool's run state. Suspend closes
// the listeners and parks the acceptors; Resume installs new ones; Stop releases them.
class ListenerSet {
 public:
  // The listener for acceptor `index`, waiting while suspended; nullptr once stopping.
  std::shared_ptr<Listener> WaitForListener(int index);
  void Install(std::vector<std::shared_ptr<Listener>> listeners);
  // Whether `listener` is still in use (not closed by Suspend or Stop).
  bool IsInstalled(const std::shared_ptr<Listener>& listener);
  // Closes every listener (new connections are refused at once) and wakes the
  // acceptors: they park (suspend) or return (stop).
  void CloseAll(bool stopping);
  // Sleeps for `d` unless stopping; false when stopping.
  bool SleepUnlessStopping(absl::Duration d);

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Listener>> listeners_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

class Acceptor {
 public:
  Acceptor(ServerContext& context, ListenerSet& listeners, std::vector<Worker*> workers,
           int index);
  ~Acceptor();

  void Start();
  void Join();
  const std::shared_ptr<AcceptorSlot>& slot() const { return slot_; }

 private:
  void Run();
  void Emit(TelemetryEventType type, const absl::Status* error = nullptr, uint64_t count = 0,
            absl::Duration duration = absl::ZeroDuration());
  bool WaitForBudget();

  ServerContext& context_;
  ListenerSet& listeners_;
  std::vector<Worker*> workers_;
  std::shared_ptr<AcceptorSlot> slot_;
  std::thread thread_;
};

}  // namespace islet

#endif  // ISLET_SERVER_ACCEPTOR_H_
