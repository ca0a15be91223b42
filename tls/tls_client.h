// TlsClient: the client side of TLS for outbound connections (Connection::Open,
// Server::Open). One TlsClient describes one upstream service: whom to trust, the name
// its certificate must carry, the ALPN protocols to offer, an optional client
// certificate; it is shared by every connection to that service, from any worker.
//
//   OutboundTlsOptions tls;
//   tls.ca_file = "/etc/app/upstream-ca.pem";   // neither ca_file nor ca_pem: the system store
//   tls.server_name = "api.internal";           // verified, and sent as SNI
//   tls.alpn_protocols = {"h2", "http/1.1"};
//   absl::StatusOr<std::shared_ptr<TlsClient>> client = TlsClient::Create(std::move(tls));
//
//   OutboundOptions out;
//   out.endpoint = {AddressFamily::kIpv4, "10.0.0.7", 443};
//   out.tls = *client;
//   out.handler = std::make_unique<Upstream>();
//   conn.Open(std::move(out));
//
// What a connection gets: after its TCP connect, the TLS client handshake, driven by the
// worker on readiness like every handshake; both together are bounded by
// OutboundOptions::connect_timeout (one bound for "the upstream is usable": a caller
// does not care which half was slow). HandleConnection runs once the server is verified;
// otherwise HandleError runs with:
//   Unauthenticated  the certificate did not verify: unknown CA, expired, self-signed,
//                    or not for server_name ("...: Hostname mismatch",
//                    "...: certificate has expired", "...: self signed certificate");
//   Aborted          another TLS failure (a protocol alert, no common version or cipher);
//   OutOfRange       the server closed the connection during the handshake;
//   DeadlineExceeded connect and handshake not done within connect_timeout;
//   the TCP connect's own errors (Unavailable for a refusal, ...).
// Then Connection::NegotiatedProtocol, GetConnectionInformation (session_resumed) and
// PeerInfo()->peer_certificate (the server's leaf, DER) work as on the server side.
//
// Session resumption: sessions the servers hand out (TLS 1.3 tickets, TLS 1.2 tickets or
// IDs) are kept per endpoint and server name, the latest one of each, at most
// session_cache_size of them (the least recently stored goes first), and offered on the
// next connection to the same endpoint and name. A session is only offered to the name
// it was verified for.
#ifndef ISLET_TLS_TLS_CLIENT_H_
#define ISLET_TLS_TLS_CLIENT_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tls/tls_options.h"
#include "transport/transport.h"

namespace islet {

// The Debian/Ubuntu system CA bundle, used when OutboundTlsOptions names no CA.
inline constexpr char kSystemCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

struct OutboundTlsOptions {
  // The CAs that may sign the server's chain: a PEM file or PEM text (at most one).
  // Neither: the system store (kSystemCaBundle). Verification is never optional.
  std::string ca_file;
  std::string ca_pem;

  // The name the server's certificate must carry: a DNS name (checked against its
  // subjectAltName DNS entries, wildcards allowed, and sent as SNI) or an IP literal
  // (checked against its IP entries; no SNI, as RFC 6066 forbids IP literals there).
  // Empty: the endpoint's own IP address, per connection.
  std::string server_name;

  // ALPN protocols to offer, in the client's order of preference ("h2", "http/1.1").
  // The server picks; Connection::NegotiatedProtocol tells which. Empty: no ALPN.
  std::vector<std::string> alpn_protocols;

  // A client certificate for servers that ask for one; none when both its certificate
  // fields are empty.
  TlsCredentials client_credentials;

  TlsVersion min_version = TlsVersion::kTls1_2;
  TlsVersion max_version = TlsVersion::kTls1_3;

  // Sessions kept for resumption, one per endpoint and name; 0 turns resumption off.
  size_t session_cache_size = 256;
};

class TlsClient : public ClientSecurity {
 public:
  // Validates `options` and reads the CA bundle and client credentials. InvalidArgument
  // naming the field ("ca_pem: ...", "server_name: ...", "alpn_protocols[1]: ..."),
  // NotFound / PermissionDenied for a file that cannot be read.
  static absl::StatusOr<std::shared_ptr<TlsClient>> Create(OutboundTlsOptions options);

  // ClientSecurity: a TlsSocket (tls_socket.h) in client state whose HandshakeStep
  // finishes the connect of `socket` and then the TLS handshake, offering a session
  // kept for `endpoint` and server_name when there is one.
  absl::StatusOr<std::unique_ptr<Socket>> WrapClient(std::unique_ptr<Socket> socket,
                                                     const SocketInfo& endpoint) override;

  // Sessions kept for resumption now.
  size_t cached_sessions() const;

  ~TlsClient() override;

 private:
  struct State;
  explicit TlsClient(std::shared_ptr<State> state);

  // Shared with every socket made, which may outlive the client.
  std::shared_ptr<State> state_;
};

}  // namespace islet

#endif  // ISLET_TLS_TLS_CLIENT_H_
