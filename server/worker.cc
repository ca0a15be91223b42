#include "server/worker.h"

#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// Each worker reads into one buffer shared by all its connections: an idle connection
// holds no read buffer at all.
constexpr size_t kReadBufferSize = 64 * 1024;

std::atomic<uint64_t> next_connection_id{1};

// How often each worker reads the server's pressure. A quarter second lets a flood be
// noticed before it fills the cap, at four wake-ups a second on an idle worker.
constexpr absl::Duration kOverloadCheckInterval = absl::Milliseconds(250);

}  // namespace

Worker::Worker(ServerContext& context, int index)
    : context_(context),
      index_(index),
      mailbox_(std::make_shared<WorkerMailbox>()),
      read_buffer_(kReadBufferSize) {}

Worker::~Worker() { Stop(); }

absl::Status Worker::Start() {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create(context_.options.event_loop);
  if (!loop.ok()) return loop.status();
  loop_ = *std::move(loop);
  mailbox_->Attach(this);
  loop_->Schedule(MonotonicNow() + kOverloadCheckInterval, [this] { CheckOverload(); });
  running_ = true;
  thread_ = std::thread([this] { loop_->Run(); });
  return absl::OkStatus();
}

void Worker::Adopt(std::unique_ptr<Socket> socket, std::shared_ptr<AcceptorSlot> acceptor,
                   PeerLimiter::Slot peer_slot) {
  // Live from the hand-over, not from when the task runs: Stop waits for the live
  // connections, and one still queued on this loop is one of them. Without this, a
  // busy worker let Stop conclude "none left" and start it after the shutdown.
  {
    absl::MutexLock lock(&context_.mu);
    ++context_.live_connections;
  }
  loop_->Post([this, socket = std::move(socket), acceptor = std::move(acceptor),
               peer_slot = std::move(peer_slot)]() mutable {
    const ServerOptions& options = context_.options;
    auto closing = [this] { return closing_.load(std::memory_order_acquire); };
    std::unique_ptr<Handler> handler;
    if (!closing()) handler = options.handler_factory(options.handler_options);
    if (handler == nullptr || closing()) {
      // No handler, or Stop's deadline passed while it waited here (CloseAll ran):
      // closed before it started, and no longer live.
      socket->Close();
      acceptor->Release();
      DropLive();
      return;
    }
    const uint64_t id = next_connection_id.fetch_add(1, std::memory_order_relaxed);
    auto connection = std::make_unique<ConnectionImpl>(*this, id, std::move(socket),
                                                       std::move(acceptor), std::move(handler));
    ConnectionImpl* c = connection.get();
    c->HoldPeerSlot(std::move(peer_slot));
    connections_.emplace(id, std::move(connection));
    c->Start();
    // Handed over before the stop reached this loop: served under the shutdown.
    if (shutting_down_) c->BeginShutdown(shutdown_deadline_);
  });
}

absl::StatusOr<ConnectionHandle> Worker::Open(OutboundOptions options,
                                              uint64_t parent_span_id) {
  if (options.handler == nullptr) return absl::InvalidArgumentError("open: no handler given");
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.connect_timeout == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("open: connect_timeout must be positive and finite");
  }
  if (closing_.load(std::memory_order_acquire) || (IsCurrentThread() && shutting_down_)) {
    return absl::FailedPreconditionError("open: the server is stopping");
  }
  absl::StatusOr<std::unique_ptr<TcpSocket>> tcp = TcpSocket::StartConnect(options.endpoint);
  if (!tcp.ok()) return tcp.status();
  const int reserve = context_.options.descriptor_reserve;
  if (InDescriptorReserve((*tcp)->fd(), reserve)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("open: descriptor ", (*tcp)->fd(), " is within descriptor_reserve (",
                     reserve, ") of RLIMIT_NOFILE"));
  }
  absl::StatusOr<std::unique_ptr<Socket>> socket = std::unique_ptr<Socket>(*std::move(tcp));
  if (options.tls != nullptr) {
    // The connection's handshake phase then finishes the connect and runs the TLS
    // client handshake, both under connect_timeout.
    socket = options.tls->WrapClient(*std::move(socket), options.endpoint);
    if (!socket.ok()) return socket.status();
  }
  const uint64_t id = next_connection_id.fetch_add(1, std::memory_order_relaxed);
  auto inbox = std::make_shared<ConnectionInbox>(mailbox_, context_.options.max_pending_messages);
  {
    absl::MutexLock lock(&context_.mu);
    ++context_.live_connections;
  }
  auto start = [this, id, inbox, parent_span_id, timeout = options.connect_timeout,
                socket = *std::move(socket), handler = std::move(options.handler)]() mutable {
    auto connection = std::make_unique<ConnectionImpl>(*this, id, std::move(socket), nullptr,
                                                       std::move(handler));
    ConnectionImpl* c = connection.get();
    c->MakeOutbound(parent_span_id, timeout, inbox);
    connections_.emplace(id, std::move(connection));
    if (closing_.load(std::memory_order_acquire)) {
      // Its handler was made: it gets its one final callback.
      c->Close(Ending::kError, CloseType::kNoFlush,
               absl::FailedPreconditionError("open: the server stopped first"));
      return;
    }
    c->Start();
    if (shutting_down_) c->BeginShutdown(shutdown_deadline_);
  };
  if (IsCurrentThread()) {
    loop_->Post(std::move(start));
  } else if (!mailbox_->PostToLoop(std::move(start))) {
    DropLive();
    return absl::FailedPreconditionError("open: the server has stopped");
  }
  return ConnectionHandle(std::move(inbox), id);
}

Connection* Worker::Sibling(uint64_t id) {
  loop_->AssertInLoopThread();
  auto it = connections_.find(id);
  // One whose final callback has run is on its way out: not a sibling to send to.
  if (it == connections_.end() || it->second->ended()) return nullptr;
  return it->second.get();
}

void Worker::CheckOverload() {
  const OverloadReading reading = context_.overload.Update(context_.ReadOverloadInputs());
  const bool shorter = reading.timeout_scale < timeout_scale_;
  timeout_scale_ = reading.timeout_scale;
  // Longer timeouts need nothing: a timer that fires early re-arms for the new deadline.
  if (shorter) {
    for (auto& [id, c] : connections_) c->Retime();
  }
  loop_->Schedule(loop_->now() + kOverloadCheckInterval, [this] { CheckOverload(); });
}

void Worker::DropLive() {
  absl::MutexLock lock(&context_.mu);
  --context_.live_connections;
}

void Worker::BeginShutdown(absl::Duration deadline) {
  // Urgent: the shutdown must not wait behind a backlog of messages (Stop's deadline
  // counts from now).
  loop_->PostUrgent([this, deadline] {
    shutting_down_ = true;
    shutdown_deadline_ = deadline;
    const absl::Duration grace = context_.options.shutdown_grace;
    grace_deadline_ = grace > absl::ZeroDuration() ? std::min(deadline, MonotonicNow() + grace)
                                                   : -absl::InfiniteDuration();
    std::vector<ConnectionImpl*> all;
    all.reserve(connections_.size());
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (ConnectionImpl* c : all) c->BeginShutdown(deadline);
  });
}

void Worker::CloseAll() {
  // From now on, not when the loop gets to it: a hand-over still queued, or whose
  // handler is being made on a busy loop, closes unstarted.
  closing_.store(true, std::memory_order_release);
  loop_->PostUrgent([this] {
    std::vector<ConnectionImpl*> all;
    all.reserve(connections_.size());
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (ConnectionImpl* c : all) c->Close(Ending::kShutdown, CloseType::kNoFlush);
  });
}

void Worker::Stop() {
  if (!running_) return;
  mailbox_->Attach(nullptr);
  // Hand-overs still queued run after the loop quits (EventLoop::Run): they must close,
  // not start a connection on a loop that no longer runs.
  closing_.store(true, std::memory_order_release);
  loop_->Quit();
  thread_.join();
  running_ = false;
  // Whatever is left closes here, on this thread, now that the loop is gone.
  std::vector<ConnectionImpl*> all;
  for (auto& [id, c] : connections_) all.push_back(c.get());
  for (ConnectionImpl* c : all) c->Close(Ending::kShutdown, CloseType::kNoFlush);
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
  // Through the mailbox, as a handle posts: a loop that has stopped (or never started)
  // would never run the task, and this would wait forever.
  absl::Notification done;
  if (!mailbox_->PostToLoop([&] {
        collect();
        done.Notify();
      })) {
    return out;
  }
  done.WaitForNotification();
  return out;
}

void Worker::RunLater(uint64_t id, absl::AnyInvocable<void(ConnectionImpl&) &&> action) {
  loop_->Post([this, id, action = std::move(action)]() mutable {
    auto it = connections_.find(id);
    if (it != connections_.end()) std::move(action)(*it->second);
  });
}

void Worker::Retire(ConnectionImpl& connection) {
  loop_->AssertInLoopThread();
  auto it = connections_.find(connection.id());
  if (it == connections_.end()) return;
  if (retired_.empty() && running_ && IsCurrentThread()) {
    // Destroyed after the current batch: callers up the stack still hold `connection`.
    loop_->Post([this] { retired_.clear(); });
  }
  retired_.push_back(std::move(it->second));
  connections_.erase(it);
  DropLive();
}

}  // namespace islet
