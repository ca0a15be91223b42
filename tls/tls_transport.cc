#include "tls/tls_transport.h"

#include <utility>

#include "absl/synchronization/mutex.h"
#include "tls/tls_context.h"

namespace islet {

// What the transport and its listeners share: the configuration in force.
struct TlsTransport::State {
  absl::Mutex mu;
  TlsOptions options ABSL_GUARDED_BY(mu);
  std::shared_ptr<const tls_internal::TlsContext> context ABSL_GUARDED_BY(mu);
  // Kept across reloads, so tickets outlive a certificate renewal.
  std::shared_ptr<tls_internal::TicketKeyRing> ticket_keys;

  std::shared_ptr<const tls_internal::TlsContext> Current() {
    absl::MutexLock lock(&mu);
    return context;
  }

  absl::StatusOr<std::unique_ptr<TlsSocket>> Wrap(std::unique_ptr<Socket> socket) {
    return TlsSocket::Create(std::move(socket), Current());
  }
};

class TlsTransport::TlsListener : public Listener {
 public:
  TlsListener(std::unique_ptr<Listener> inner, std::shared_ptr<TlsTransport::State> state)
      : inner_(std::move(inner)), state_(std::move(state)) {}

  absl::StatusOr<std::unique_ptr<Socket>> Accept() override { return Wrap(inner_->Accept()); }
  int fd() const override { return inner_->fd(); }
  absl::StatusOr<std::unique_ptr<Socket>> TryAccept() override {
    return Wrap(inner_->TryAccept());
  }
  bool CanAdoptAccepted() const override { return inner_->CanAdoptAccepted(); }
  absl::StatusOr<std::unique_ptr<Socket>> AdoptAccepted(UniqueFd fd) override {
    return Wrap(inner_->AdoptAccepted(std::move(fd)));
  }
  void Close() override { inner_->Close(); }
  void Release() override { inner_->Release(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override { return inner_->LocalInfo(); }

 private:
  // The TLS socket over an accepted one; its handshake runs later, on the worker.
  absl::StatusOr<std::unique_ptr<Socket>> Wrap(absl::StatusOr<std::unique_ptr<Socket>> accepted);

  std::unique_ptr<Listener> inner_;
  std::shared_ptr<TlsTransport::State> state_;
};

absl::StatusOr<std::unique_ptr<Socket>> TlsTransport::TlsListener::Wrap(
    absl::StatusOr<std::unique_ptr<Socket>> accepted) {
  if (!accepted.ok()) return accepted.status();
  absl::StatusOr<std::unique_ptr<TlsSocket>> socket = state_->Wrap(*std::move(accepted));
  if (!socket.ok()) return socket.status();
  return std::unique_ptr<Socket>(*std::move(socket));
}

TlsTransport::TlsTransport(std::shared_ptr<State> state) : state_(std::move(state)) {}

TlsTransport::~TlsTransport() = default;

absl::StatusOr<std::shared_ptr<TlsTransport>> TlsTransport::Create(TlsOptions options) {
  auto state = std::make_shared<State>();
  state->ticket_keys = std::make_shared<tls_internal::TicketKeyRing>(options.ticket_key_rotation);
  absl::StatusOr<std::shared_ptr<const tls_internal::TlsContext>> context =
      tls_internal::TlsContext::Create(options, state->ticket_keys);
  if (!context.ok()) return context.status();
  {
    absl::MutexLock lock(&state->mu);
    state->options = std::move(options);
    state->context = *std::move(context);
  }
  return std::shared_ptr<TlsTransport>(new TlsTransport(std::move(state)));
}

absl::StatusOr<std::unique_ptr<Listener>> TlsTransport::Listen(uint16_t port,
                                                               const ListenOptions& options) {
  absl::StatusOr<std::unique_ptr<Listener>> inner = tcp_.Listen(port, options);
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<Listener>(std::make_unique<TlsListener>(*std::move(inner), state_));
}

absl::StatusOr<std::unique_ptr<Listener>> TlsTransport::Adopt(UniqueFd fd,
                                                              const ListenOptions& options) {
  absl::StatusOr<std::unique_ptr<Listener>> inner = tcp_.Adopt(std::move(fd), options);
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<Listener>(std::make_unique<TlsListener>(*std::move(inner), state_));
}

absl::StatusOr<std::unique_ptr<Socket>> TlsTransport::Upgrade(std::unique_ptr<Socket> socket) {
  if (socket == nullptr) return absl::InvalidArgumentError("upgrade: no socket given");
  absl::StatusOr<std::unique_ptr<TlsSocket>> upgraded = state_->Wrap(std::move(socket));
  if (!upgraded.ok()) return upgraded.status();
  return std::unique_ptr<Socket>(*std::move(upgraded));
}

absl::StatusOr<std::unique_ptr<TlsSocket>> TlsTransport::NewSocket(
    std::unique_ptr<Socket> socket) const {
  return state_->Wrap(std::move(socket));
}

absl::Status TlsTransport::ReloadCredentials(TlsOptions options) {
  // Built outside the lock: reading files and parsing keys must not stall Accept.
  absl::StatusOr<std::shared_ptr<const tls_internal::TlsContext>> context =
      tls_internal::TlsContext::Create(options, state_->ticket_keys);
  if (!context.ok()) return context.status();
  if (options.session_tickets) state_->ticket_keys->set_rotation(options.ticket_key_rotation);
  std::shared_ptr<const tls_internal::TlsContext> old;
  {
    absl::MutexLock lock(&state_->mu);
    old = std::exchange(state_->context, *std::move(context));
    state_->options = std::move(options);
  }
  return absl::OkStatus();  // `old` is freed here, outside the lock, unless sockets hold it
}

absl::Status TlsTransport::ReloadCredentials() {
  TlsOptions options;
  {
    absl::MutexLock lock(&state_->mu);
    options = state_->options;
  }
  return ReloadCredentials(std::move(options));
}

}  // namespace islet
