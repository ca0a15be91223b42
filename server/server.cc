#include "server/server.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/acceptor.h"
#include "server/telemetry.h"
#include "server/worker.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// ServerOptions::output_budget, or a quarter of the machine's memory when it is 0.
size_t OutputBudgetFor(const ServerOptions& options) {
  if (options.output_budget > 0) return options.output_budget;
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return size_t{1} << 30;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size) / 4;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  absl::Status valid = ValidateServerOptions(options);
  if (!valid.ok()) return valid;
  if (options.transport == nullptr) options.transport = std::make_shared<TcpTransport>();
  if (options.num_workers == 0) {
    options.num_workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const uint16_t port = options.port;
  auto server = std::unique_ptr<Server>(new Server(std::make_unique<ServerContext>(std::move(options))));
  ServerContext& context = *server->context_;
  context.output_budget.limit = OutputBudgetFor(context.options);
  context.output_limits = {.high_water = context.options.send_queue_high_water,
                           .limit = context.options.send_queue_limit,
                           .send_timeout = context.options.send_timeout,
                           .shared_bytes = &context.output_budget.used};
  absl::MutexLock lock(&server->mu_);
  for (int fd : context.options.listen_fds) {
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) {
      return PosixError(errno, absl::StrCat("server options: listen_fds: descriptor ", fd));
    }
    server->adopted_fds_.push_back(std::move(copy));
  }
  absl::Status listening = server->Listen(port);
  if (!listening.ok()) return listening;

  const ServerOptions& o = server->context_->options;
  std::vector<Worker*> workers;
  for (int i = 0; i < o.num_workers; ++i) {
    server->workers_.push_back(std::make_unique<Worker>(*server->context_, i));
    absl::Status started = server->workers_.back()->Start();
    if (!started.ok()) {
      server->listeners_->CloseAll(ListenerSet::Then::kStop);
      return started;
    }
    workers.push_back(server->workers_.back().get());
  }
  server->event_loop_ = server->workers_.front()->loop().description();
  const bool on_loops = server->listeners_->Pollable() && !o.dedicated_acceptor_threads;
  for (int i = 0; i < o.num_acceptors; ++i) {
    server->acceptors_.push_back(
        std::make_unique<Acceptor>(*server->context_, *server->listeners_, workers, i));
    server->acceptors_.back()->Start(on_loops);
  }
  server->status_ = ServerStatus::kRunning;
  return server;
}

Server::Server(std::unique_ptr<ServerContext> context)
    : context_(std::move(context)),
      transport_(context_->options.transport),
      listeners_(std::make_unique<ListenerSet>()) {}

Server::~Server() { Stop().IgnoreError(); }

absl::Status Server::Listen(uint16_t port) {
  const ServerOptions& o = context_->options;
  ListenOptions listen_options = o.transport_options;
  if (o.num_listen_sockets > 1) listen_options.reuse_port = true;
  std::vector<std::shared_ptr<Listener>> opened;
  for (int i = 0; i < o.num_listen_sockets; ++i) {
    absl::StatusOr<std::unique_ptr<Listener>> listener;
    if (adopted_fds_.empty()) {
      listener = transport_->Listen(port, listen_options);
    } else {
      // A duplicate each time, so that Resume can adopt the socket again.
      UniqueFd copy(::fcntl(adopted_fds_[static_cast<size_t>(i)].get(), F_DUPFD_CLOEXEC, 0));
      listener = copy ? transport_->Adopt(std::move(copy), listen_options)
                      : absl::StatusOr<std::unique_ptr<Listener>>(
                            PosixError(errno, "listen: listen_fds: dup"));
    }
    if (!listener.ok()) {
      for (auto& l : opened) l->Close();
      return listener.status();
    }
    opened.push_back(*std::move(listener));
    if (i == 0) {
      absl::StatusOr<SocketInfo> local = opened[0]->LocalInfo();
      if (!local.ok()) {
        opened[0]->Close();
        return local.status();
      }
      local_ = *local;
      port = local_.port;  // the others join the port the kernel chose for the first
    }
  }
  listeners_->Install(std::move(opened));
  context_->listener_span_id = Telemetry::NewSpanId();
  listener_started_ = MonotonicNow();
  EmitListener(TelemetryEventType::kListenerStart);
  return absl::OkStatus();
}

void Server::EmitListener(TelemetryEventType type) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e{type};
  e.monotonic_time = MonotonicNow();
  if (type == TelemetryEventType::kListenerStop) e.duration = e.monotonic_time - listener_started_;
  e.server = context_->options.name;
  e.span_id = context_->listener_span_id;
  e.local = &local_;
  e.detail = transport_->Name();
  Telemetry::Emit(e);
}

bool Server::OnWorkerThread() const {
  for (const auto& w : workers_) {
    if (w->IsCurrentThread()) return true;
  }
  return false;
}

absl::Status Server::Stop() { return Stop(context_->options.shutdown_timeout); }

absl::Status Server::Stop(absl::Duration timeout) {
  if (OnWorkerThread()) {
    return absl::FailedPreconditionError("stop: called from a handler; it would wait for itself");
  }
  // One Stop at a time: a second caller returns once the first has finished.
  absl::MutexLock stop_lock(&stop_mu_);
  bool was_listening;
  {
    absl::MutexLock lock(&mu_);
    if (status_ == ServerStatus::kStopped) return absl::OkStatus();
    was_listening = status_ == ServerStatus::kRunning;
    listeners_->CloseAll(ListenerSet::Then::kStop);
    adopted_fds_.clear();
    status_ = ServerStatus::kStopped;
  }
  // The rest runs without mu_: a handler may read Info(), ListenerInfo() or status()
  // from its callbacks (HandleShutdown included), and those must not wait for this
  // Stop, which waits for the handlers. (Nothing else changes the listener's state now:
  // Suspend and Resume refuse a stopped server, and stop_mu_ is held.)
  //
  // An acceptor on a worker's loop stops when that loop gets to it, before the
  // worker's shutdown posted after it; a busy callback there delays it. So the
  // acceptors are only asked here, every worker starts draining, and the waiting for
  // the acceptors comes after: one busy worker does not hold up the others.
  for (auto& a : acceptors_) a->BeginStop();
  const absl::Duration deadline = MonotonicNow() + timeout;
  for (auto& w : workers_) w->BeginShutdown(deadline);
  for (auto& a : acceptors_) a->Join();
  if (was_listening) {
    absl::MutexLock lock(&mu_);
    EmitListener(TelemetryEventType::kListenerStop);
  }
  {
    absl::MutexLock live_lock(&context_->mu);
    auto all_gone = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(context_->mu) {
      return context_->live_connections == 0;
    };
    context_->mu.AwaitWithTimeout(absl::Condition(&all_gone),
                                  std::max(deadline - MonotonicNow(), absl::ZeroDuration()));
  }
  for (auto& w : workers_) w->CloseAll();
  for (auto& w : workers_) w->Stop();
  return absl::OkStatus();
}

absl::Status Server::Suspend() {
  absl::MutexLock lock(&mu_);
  if (status_ == ServerStatus::kStopped) return absl::FailedPreconditionError("suspend: server stopped");
  if (status_ == ServerStatus::kSuspended) return absl::OkStatus();
  listeners_->CloseAll(ListenerSet::Then::kPark);
  for (auto& a : acceptors_) a->Rearm();
  EmitListener(TelemetryEventType::kListenerStop);
  status_ = ServerStatus::kSuspended;
  return absl::OkStatus();
}

absl::Status Server::Resume() {
  absl::MutexLock lock(&mu_);
  if (status_ == ServerStatus::kStopped) return absl::FailedPreconditionError("resume: server stopped");
  if (status_ == ServerStatus::kRunning) return absl::OkStatus();
  if (released_) {
    return absl::FailedPreconditionError(
        "resume: the listening sockets were released to another process");
  }
  // The same port as before, even when the server first asked for port 0.
  absl::Status listening = Listen(local_.port);
  if (!listening.ok()) return listening;
  for (auto& a : acceptors_) a->Rearm();
  status_ = ServerStatus::kRunning;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ListeningSocket>> Server::DuplicateListeners() const {
  absl::MutexLock lock(&mu_);
  if (status_ != ServerStatus::kRunning) {
    return absl::FailedPreconditionError("duplicate listeners: the server is not listening");
  }
  std::vector<ListeningSocket> copies;
  for (const std::shared_ptr<Listener>& listener : listeners_->Installed()) {
    if (listener->fd() < 0) {
      return absl::UnimplementedError(absl::StrCat(
          "duplicate listeners: the ", transport_->Name(), " transport's listeners have no descriptor"));
    }
    absl::StatusOr<SocketInfo> local = listener->LocalInfo();
    if (!local.ok()) return local.status();
    UniqueFd copy(::fcntl(listener->fd(), F_DUPFD_CLOEXEC, 0));
    if (!copy) return PosixError(errno, "duplicate listeners: dup");
    copies.push_back({std::move(copy), *std::move(local)});
  }
  return copies;
}

absl::Status Server::ReleaseListeners() {
  absl::MutexLock lock(&mu_);
  if (status_ == ServerStatus::kStopped) {
    return absl::FailedPreconditionError("release listeners: server stopped");
  }
  const bool was_listening = status_ == ServerStatus::kRunning;
  // Release, never Close: shutdown(2) would stop the socket listening for the
  // successor too. The acceptors drop their listener when their loop gets to the
  // Rearm; the descriptors close when the last of them has.
  listeners_->ReleaseAll();
  for (auto& a : acceptors_) a->Rearm();
  adopted_fds_.clear();
  released_ = true;
  if (was_listening) EmitListener(TelemetryEventType::kListenerStop);
  status_ = ServerStatus::kSuspended;
  return absl::OkStatus();
}

ServerStatus Server::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::StatusOr<SocketInfo> Server::ListenerInfo() const {
  absl::MutexLock lock(&mu_);
  if (status_ != ServerStatus::kRunning) {
    return absl::FailedPreconditionError("listener_info: the server is not listening");
  }
  return local_;
}

int64_t Server::active_connections() const {
  absl::MutexLock lock(&context_->mu);
  return context_->live_connections;
}

ServerInfo Server::Info() const {
  ServerInfo info;
  {
    absl::MutexLock lock(&mu_);
    info.status = status_;
    if (status_ == ServerStatus::kRunning) info.local = local_;
  }
  info.active_connections = active_connections();
  info.queued_output_bytes =
      std::max<int64_t>(context_->output_budget.used.load(std::memory_order_relaxed), 0);
  info.output_budget = context_->output_budget.limit;
  info.overload = context_->overload.Current();
  info.event_loop = event_loop_;
  return info;
}

absl::StatusOr<ConnectionHandle> Server::Open(OutboundOptions options) {
  {
    absl::MutexLock lock(&mu_);
    if (status_ == ServerStatus::kStopped) {
      return absl::FailedPreconditionError("open: the server has stopped");
    }
  }
  Worker& worker =
      *workers_[next_open_worker_.fetch_add(1, std::memory_order_relaxed) % workers_.size()];
  return worker.Open(std::move(options), context_->listener_span_id.load());
}

std::vector<ConnectionSummary> Server::Connections() const {
  std::vector<ConnectionSummary> all;
  for (const auto& w : workers_) {
    std::vector<ConnectionSummary> some = w->Connections();
    all.insert(all.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
  }
  return all;
}

}  // namespace islet
