// The TLS transport: BoringSSL over the TCP transport, the counterpart of Thousand
// Island's ThousandIsland.Transports.SSL.
//
//   TlsOptions options;
//   options.credentials = TlsCredentials::FromFiles("chain.pem", "key.pem");
//   options.alpn_protocols = {"h2", "http/1.1"};
//   absl::StatusOr<std::shared_ptr<TlsTransport>> tls = TlsTransport::Create(options);
//   if (!tls.ok()) { /* InvalidArgument / NotFound naming the field at fault */ }
//   server_options.transport = *tls;                 // a TLS server, or:
//   return HandlerResult::SwitchTransport(tls->get());  // STARTTLS on a plain one
//
// Listen listens with TcpTransport (IP or unix socket) and Accept returns a TlsSocket
// (tls/tls_socket.h) whose handshake has not started: the server drives HandshakeStep
// on its worker, bounded by its handshake_timeout, so a slow client never holds up
// Accept. Upgrade wraps a connected plain socket the same way (STARTTLS).
//
// What a connection gets: TLS 1.2 or 1.3 (1.0 and 1.1 are refused), SNI certificate
// selection, ALPN by server preference, optional or required client certificates,
// session resumption by ticket (keys rotating every hour by default) and by a server
// cache, and never renegotiation (a BoringSSL server refuses it).
//
// Credentials can be replaced while serving (ReloadCredentials): handshakes of
// connections accepted afterwards use the new ones; live connections keep theirs.
#ifndef ISLET_TLS_TLS_TRANSPORT_H_
#define ISLET_TLS_TLS_TRANSPORT_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tls/tls_options.h"
#include "tls/tls_socket.h"
#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace islet {

class TlsTransport : public Transport {
 public:
  // Validates `options`, reads every certificate, key and CA file, and builds the TLS
  // configuration. InvalidArgument for a bad option, bad PEM, a key that does not match
  // its certificate, an encrypted key without (or with the wrong) password, or a bad CA
  // bundle; NotFound / PermissionDenied for a file that cannot be read. Every message
  // names the field ("credentials.private_key_file /etc/app/key.pem: ...").
  static absl::StatusOr<std::shared_ptr<TlsTransport>> Create(TlsOptions options);

  // Listens with the TCP transport; the listener's Accept returns TlsSockets.
  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                   const ListenOptions& options) override;
  // The same over a listening socket opened elsewhere (Transport::Adopt): TLS on a
  // socket inherited from systemd or handed over by a predecessor.
  absl::StatusOr<std::unique_ptr<Listener>> Adopt(UniqueFd fd,
                                                  const ListenOptions& options) override;
  bool Secure() const override { return true; }
  absl::string_view Name() const override { return "tls"; }

  // Continues on `socket`, a connected socket of any transport, as the server side of
  // TLS (STARTTLS). The socket is read and written through its own ReadSome/WriteSome,
  // so bytes it already holds (from a Recv that timed out) feed the handshake. The
  // result still needs its Handshake. InvalidArgument for null, FailedPrecondition for
  // a closed socket.
  absl::StatusOr<std::unique_ptr<Socket>> Upgrade(std::unique_ptr<Socket> socket) override;

  // Rebuilds the configuration from `options` (every field is re-read; typically the
  // same options with renewed certificate, key or CA files) and swaps it in for new
  // connections: those accepted or upgraded afterwards. Live connections keep the
  // configuration they started with. Session-ticket keys carry over, so tickets issued
  // before stay valid; the TLS 1.2 session-ID cache starts empty. On error nothing
  // changes. Thread-safe, also against concurrent Accept.
  absl::Status ReloadCredentials(TlsOptions options);
  // The same, re-reading the files named by the options in force (after a renewal on
  // disk, say on SIGHUP).
  absl::Status ReloadCredentials();

  // Wraps a connected socket as Upgrade does, with the TlsSocket type.
  absl::StatusOr<std::unique_ptr<TlsSocket>> NewSocket(std::unique_ptr<Socket> socket) const;

  ~TlsTransport() override;

 private:
  struct State;
  class TlsListener;
  explicit TlsTransport(std::shared_ptr<State> state);

  // Shared with every listener, which may outlive the transport.
  std::shared_ptr<State> state_;
  TcpTransport tcp_;
};

}  // namespace islet

#endif  // ISLET_TLS_TLS_TRANSPORT_H_
