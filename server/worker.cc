#include "server/worker.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace islet {
namespace {

// Each worker reads into one buffer shared by all its connections: an idle connection
// holds no read buffer at all.
constexpr size_t kReadBufferSize = 64 * 1024;

std::atomic<uint64_t> next_connection_id{1};

}  // namespace

Worker::Worker(ServerContext& context, int index)
    : context_(context),
      index_(index),
      mailbox_(std::make_shared<WorkerMailbox>()),
      read_buffer_(kReadBufferSize) {}

Worker::~Worker() { Stop(); }

absl::Status Worker::Start() {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  loop_ = *std::move(loop);
  {
    absl::MutexLock lock(&mailbox_->mu);
    mailbox_->worker = this;
  }
  running_ = true;
  thread_ = std::thread([this] { loop_->Run(); });
  return absl::OkStatus();
}

void Worker::Adopt(std::unique_ptr<Socket> socket, std::shared_ptr<AcceptorSlot> acceptor) {
  loop_->Post([this, socket = std::move(socket), acceptor = std::move(acceptor)]() mutable {
    const ServerOptions& options = context_.options;
    std::unique_ptr<Handler> handler = options.handler_factory(options.handler_options);
    if (handler == nullptr) {
      socket->Close();
      acceptor->live.fetch_sub(1, std::memory_order_acq_rel);
      return;
    }
    const uint64_t id = next_connection_id.fetch_add(1, std::memory_order_relaxed);
    auto connection = std::unique_ptr<Connection>(
        new Connection(*this, id, std::move(socket), std::move(acceptor), std::move(handler)));
    Connection* c = connection.get();
    connections_.emplace(id, std::move(connection));
    {
      absl::MutexLock lock(&context_.mu);
      ++context_.live_connections;
    }
    c->Start();
    if (shutting_down_) c->BeginShutdown(shutdown_deadline_);
  });
}

void Worker::BeginShutdown(absl::Duration deadline) {
  loop_->Post([this, deadline] {
    shutting_down_ = true;
    shutdown_deadline_ = deadline;
    std::vector<Connection*> all;
    all.reserve(connections_.size());
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (Connection* c : all) c->BeginShutdown(deadline);
  });
}

void Worker::CloseAll() {
  loop_->Post([this] {
    std::vector<Connection*> all;
    all.reserve(connections_.size());
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (Connection* c : all) c->CloseNow();
  });
}

void Worker::Stop() {
  if (!running_) return;
  {
    absl::MutexLock lock(&mailbox_->mu);
    mailbox_->worker = nullptr;
  }
  loop_->Quit();
  thread_.join();
  running_ = false;
  // Whatever is left closes here, on this thread, now that the loop is gone.
  std::vector<Connection*> all;
  for (auto& [id, c] : connections_) all.push_back(c.get());
  for (Connection* c : all) c->CloseNow();
  retired_.clear();
}

std::vector<ConnectionSummary> Worker::Connections() {
  std::vector<ConnectionSummary> out;
  auto collect = [&] {
    out.reserve(connections_.size());
    for (auto& [id, c] : connections_) out.push_back(c->Summary());
  };
  if (IsCurrentThread()) {
    collect();
    return out;
  }
  absl::Notification done;
  {
    // Posted under the mailbox lock, as ConnectionHandle::Post does: Stop clears the
    // mailbox before it quits the loop, so a task posted here is still run by the
    // loop (at the latest in its final drain). Checking running_ instead raced with
    // Stop: a task posted after the loop's final drain never ran, and this waited
    // forever.
    absl::MutexLock lock(&mailbox_->mu);
    if (mailbox_->worker == nullptr) return out;  // not started, or stopped
    loop_->Post([&] {
      collect();
      done.Notify();
    });
  }
  done.WaitForNotification();
  return out;
}

void Worker::DeliverMessage(uint64_t id, std::any message) {
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second->Deliver(message);
}

void Worker::CloseConnection(uint64_t id) {
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second->RequestClose();
}

void Worker::ReadBuffered(uint64_t id) {
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second->ReadAndDispatch();
}

void Worker::Retire(Connection* connection) {
  auto it = connections_.find(connection->id());
  if (it == connections_.end()) return;
  if (retired_.empty() && running_ && IsCurrentThread()) {
    // Destroyed after the current batch: callers up the stack still hold `connection`.
    loop_->Post([this] { retired_.clear(); });
  }
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  absl::MutexLock lock(&context_.mu);
  --context_.live_connections;
}

}  // namespace islet
