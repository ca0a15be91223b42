// TlsOptions: everything the TLS transport (tls/tls_transport.h) is configured with, in
// one struct, each default with its reason. TlsTransport::Create validates them and
// fails with InvalidArgument naming the field (NotFound for a missing file).
//
//   TlsOptions options;
//   options.credentials = TlsCredentials::FromFiles("/etc/app/chain.pem", "/etc/app/key.pem");
//   options.sni_credentials["api.example.com"] = TlsCredentials::FromFiles(...);
//   options.alpn_protocols = {"h2", "http/1.1"};
//   auto tls = TlsTransport::Create(std::move(options));
#ifndef ISLET_TLS_TLS_OPTIONS_H_
#define ISLET_TLS_TLS_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace islet {

// A certificate chain and its private key, each from a PEM file or from PEM text in
// memory (exactly one of the two). RSA, ECDSA and Ed25519 keys; PKCS#8 or the
// traditional OpenSSL forms; encrypted keys need `private_key_password`.
struct TlsCredentials {
  // The leaf certificate first, then the intermediates to send with it (not the root).
  std::string certificate_chain_file;
  std::string certificate_chain_pem;
  std::string private_key_file;
  std::string private_key_pem;
  // The passphrase of an encrypted key; ignored for a key that is not encrypted.
  std::string private_key_password;

  static TlsCredentials FromFiles(std::string chain_file, std::string key_file,
                                  std::string password = "") {
    TlsCredentials c;
    c.certificate_chain_file = std::move(chain_file);
    c.private_key_file = std::move(key_file);
    c.private_key_password = std::move(password);
    return c;
  }
  static TlsCredentials FromPem(std::string chain_pem, std::string key_pem,
                                std::string password = "") {
    TlsCredentials c;
    c.certificate_chain_pem = std::move(chain_pem);
    c.private_key_pem = std::move(key_pem);
    c.private_key_password = std::move(password);
    return c;
  }
};

// The protocol versions a server may speak. TLS 1.0 and 1.1 are deliberately absent:
// they are deprecated (RFC 8996) and a client offering nothing newer is refused with a
// protocol_version alert.
enum class TlsVersion : uint16_t { kTls1_2 = 0x0303, kTls1_3 = 0x0304 };

// Whether the server asks the client for a certificate.
enum class ClientCertificateMode : uint8_t {
  kNone,      // never asks
  kOptional,  // asks; a client may send none, but one it sends must verify
  kRequired,  // asks; the handshake fails without a certificate that verifies
};

struct TlsOptions {
  // The certificate for clients that send no server name (SNI), or one not listed in
  // sni_credentials. Required.
  TlsCredentials credentials;

  // Certificates chosen by the server name the client asks for. Keys are host names
  // ("api.example.com") or a wildcard for one label ("*.example.com"), compared
  // without regard to case; an exact name wins over a wildcard.
  std::map<std::string, TlsCredentials> sni_credentials;

  // TLS 1.2 and 1.3 by default: every client of the last decade speaks one of them.
  TlsVersion min_version = TlsVersion::kTls1_2;
  TlsVersion max_version = TlsVersion::kTls1_3;

  // TLS 1.2 cipher suites in BoringSSL's syntax (an unknown name is an error). Empty
  // means forward-secret AEAD suites only: ECDHE with AES-GCM or ChaCha20-Poly1305.
  // TLS 1.3 suites are not configurable in BoringSSL (all three are safe).
  std::string cipher_list;

  // ALPN protocols in the server's order of preference ("h2", "http/1.1"): the first
  // of them the client also offers is chosen. Empty: no ALPN. A client whose offer
  // shares nothing with the list proceeds without a protocol (NegotiatedProtocol is
  // NotFound), as most servers do, rather than being refused.
  std::vector<std::string> alpn_protocols;

  // Client certificates, verified against the CA bundle below (exactly one of file
  // or PEM when the mode is not kNone; setting a bundle with kNone is an error, as it
  // would silently authenticate nobody).
  ClientCertificateMode client_certificate = ClientCertificateMode::kNone;
  std::string client_ca_file;
  std::string client_ca_pem;

  // Session resumption skips the public-key work of a full handshake.
  // Tickets (TLS 1.2 and 1.3): the session travels encrypted with a server key that
  // rotates every ticket_key_rotation; the previous key still decrypts (and the ticket
  // is renewed) for one more period, so a ticket works for up to two periods and no
  // key lives longer than that: forward secrecy for old traffic.
  bool session_tickets = true;
  absl::Duration ticket_key_rotation = absl::Hours(1);
  // The server-side cache of TLS 1.2 sessions by ID, for clients without tickets;
  // this many entries at most (0 turns the cache off).
  size_t session_cache_size = 20480;
  // How long a session may be resumed, by ticket or by ID.
  absl::Duration session_lifetime = absl::Hours(2);
};

// Checks what needs no file: versions, ALPN names, SNI names, the client certificate
// mode against the CA bundle, the session settings. InvalidArgument naming the field.
// TlsTransport::Create calls it before it reads any file.
absl::Status ValidateTlsOptions(const TlsOptions& options);

}  // namespace islet

#endif  // ISLET_TLS_TLS_OPTIONS_H_
