// ProxyProtocolTransport: the PROXY protocol (HAProxy's proxy-protocol.txt, v1 and v2)
// in front of any other transport, for servers behind an L4 balancer (HAProxy, Envoy,
// nginx stream, AWS NLB) that prepends the true client's address to each connection.
//
//   ProxyProtocolOptions proxy;
//   proxy.trusted_networks = {"10.0.0.0/8", "fd00::/8"};   // the balancers
//   auto transport = ProxyProtocolTransport::Create(*TlsTransport::Create(tls), proxy);
//   if (!transport.ok()) { /* InvalidArgument naming the bad network */ }
//   server_options.transport = *transport;
//
// Listen delegates to the inner transport and wraps each accepted socket. The wrapped
// socket's HandshakeStep first reads the header, then runs the inner socket's
// (TLS's) handshake: the header precedes the ClientHello, as balancers send it. The
// header is read from the inner socket's descriptor directly, never a byte past it (v1
// up to its LF; v2 its 16 fixed bytes, then exactly the length they announce), so the
// inner transport, which reads the descriptor itself, starts at the first byte after
// it. Requirement on an inner transport: fd() is the accepted stream socket, unread.
// TCP, TLS and transports layered on TCP's socket meet it.
//
// Reading never blocks: HandshakeStep returns kRead while the header is incomplete, and
// the server bounds the whole handshake by handshake_timeout, so a client that sends
// half a header and stalls is closed then.
//
// Trust. A header is believed only from a trusted peer (trusted_networks; unix-socket
// peers only with trust_unix_peers): anyone else could claim any address. Then:
//
//   peer       header sent       header absent
//   trusted    honoured          required: refused; optional: the peer's own address
//   untrusted  refused           the peer's own address (a direct client)
//
// A refusal or a malformed header fails the handshake: the connection closes and
// connection.stop carries the reason ("PROXY v2: CRC32C mismatch ...").
//
// Optional mode looks at the first bytes for "PROXY " or the v2 signature. A client
// that sends fewer bytes than that and waits for the server to speak first (SMTP, say)
// waits until handshake_timeout: it cannot be told apart from a header still on its
// way. Bytes so read that turn out not to be a header reach the handler as usual
// (they are kept and read first), unless the inner transport is secure: TLS never
// begins with them, and the handshake fails. Required is the recommended mode, as the
// specification says: a receiver should not guess whether a header is present.
//
// What users see: once the header is read, PeerInfo and LocalInfo are the client's
// and the address it connected to (the source and destination of the header);
// ProxyHeader's `proxy` is the balancer's address, and proxy_header() gives the TLVs.
// For a LOCAL header (a balancer's health check), v1 UNKNOWN and v2 UNSPEC they stay the
// socket's own. The server reports the client's address in telemetry (from
// connection.ready on; connection.start, before the header, has the balancer's) and
// applies max_connections_per_peer to it after the handshake (PeerKnownAtAccept).
//
// Upgrade (STARTTLS) delegates to the inner transport: a header precedes only a
// connection's first bytes. A TLS upgrade of a wrapped plain socket keeps the header's
// addresses.
#ifndef ISLET_TRANSPORT_PROXY_PROTOCOL_H_
#define ISLET_TRANSPORT_PROXY_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/transport.h"

namespace islet {

namespace proxy_protocol_internal {
struct Config;
}  // namespace proxy_protocol_internal

struct ProxyProtocolOptions {
  enum class Versions : uint8_t { kV1, kV2, kAny };
  enum class Mode : uint8_t {
    kRequired,  // a trusted peer must send a header (recommended)
    kOptional,  // a trusted peer may send one
  };

  // Which header versions are accepted; another version is refused.
  Versions versions = Versions::kAny;
  // The balancers, as CIDR ("10.0.0.0/8", "2001:db8::/32") or single addresses
  // ("192.0.2.7", "::1"). IPv4 networks also match IPv4-mapped IPv6 peers
  // (::ffff:10.0.0.5, on a dual-stack listener). Required unless trust_unix_peers.
  std::vector<std::string> trusted_networks;
  // Unix-socket peers have no network address: they are trusted only when this says
  // so (a local balancer on a socket whose permissions you control).
  bool trust_unix_peers = false;
  Mode mode = Mode::kRequired;
  // A v2 header longer than this is refused (the format allows 64 KiB + 16; real
  // ones are a few hundred bytes).
  size_t max_v2_length = 4096;
};

// InvalidArgument naming the field and value at fault ("proxy_protocol:
// trusted_networks: \"10.0.0.0/33\": prefix length above 32").
absl::Status ValidateProxyProtocolOptions(const ProxyProtocolOptions& options);

class ProxyProtocolTransport : public Transport {
 public:
  // `inner` carries the connection after the header (TCP, TLS, a user's). Errors:
  // InvalidArgument for a null `inner` or bad options.
  static absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> Create(
      std::shared_ptr<Transport> inner, ProxyProtocolOptions options);
  ~ProxyProtocolTransport() override;

  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                   const ListenOptions& options) override;
  // The same over a listening socket opened elsewhere (Transport::Adopt), as the inner
  // transport adopts it: the PROXY header still comes first on every connection.
  absl::StatusOr<std::unique_ptr<Listener>> Adopt(UniqueFd fd,
                                                  const ListenOptions& options) override;
  bool Secure() const override { return inner_->Secure(); }
  // "proxy_protocol+tcp", "proxy_protocol+tls".
  absl::string_view Name() const override { return name_; }
  // The inner transport's: no header precedes an upgrade.
  absl::StatusOr<std::unique_ptr<Socket>> Upgrade(std::unique_ptr<Socket> socket) override;
  // False: the client's address is known once the header is read.
  bool PeerKnownAtAccept() const override { return false; }

  // Wraps a socket accepted elsewhere (from the inner transport's listener), as Listen's
  // listener does. InvalidArgument for null.
  absl::StatusOr<std::unique_ptr<Socket>> Wrap(std::unique_ptr<Socket> accepted) const;

  const std::shared_ptr<Transport>& inner() const { return inner_; }

 private:
  using Config = proxy_protocol_internal::Config;
  class ProxyListener;
  ProxyProtocolTransport(std::shared_ptr<Transport> inner, std::shared_ptr<const Config> config);

  std::shared_ptr<Transport> inner_;
  std::shared_ptr<const Config> config_;  // shared with listeners and sockets
  std::string name_;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_PROXY_PROTOCOL_H_
