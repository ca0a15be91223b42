// Internal to tls/: the BoringSSL state one TlsOptions turns into. A TlsContext is
// immutable once built and shared (std::shared_ptr) by the transport and by every socket
// it made, so a credential reload builds a new one and live connections keep theirs.
//
// Building one: ValidateTlsOptions (tls_options.h), then the certificates and keys
// (pem.h), then one SSL_CTX per certificate with the handshake callbacks
// (handshake_callbacks.h) and the transport's session-ticket keys (ticket_key_ring.h).
#ifndef ISLET_TLS_TLS_CONTEXT_H_
#define ISLET_TLS_TLS_CONTEXT_H_

#include <openssl/base.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tls/ticket_key_ring.h"
#include "tls/tls_options.h"

namespace islet {
namespace tls_internal {

// The SSL_CTXs of one configuration: one for the default credentials (which also holds
// the session cache and ticket settings for every connection) and one per SNI name,
// identical but for the certificate, switched to by the servername callback.
class TlsContext {
 public:
  // Validates `options`, reads every file it names and builds the contexts.
  // InvalidArgument / NotFound / PermissionDenied naming the field at fault.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> Create(
      const TlsOptions& options, std::shared_ptr<TicketKeyRing> ticket_keys);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ~TlsContext();

  // A server-side SSL for one new connection, or null when out of memory.
  bssl::UniquePtr<SSL> NewSsl() const;

  // The context for an SNI name: exact match, then a one-label wildcard; null when
  // neither is configured (the default context serves it).
  SSL_CTX* ForServerName(absl::string_view name) const;

  const std::vector<std::string>& alpn_protocols() const { return alpn_protocols_; }
  TicketKeyRing* ticket_keys() const { return ticket_keys_.get(); }

 private:
  TlsContext() = default;

  bssl::UniquePtr<SSL_CTX> default_ctx_;
  absl::flat_hash_map<std::string, bssl::UniquePtr<SSL_CTX>> by_name_;  // lower case
  std::vector<std::string> alpn_protocols_;
  std::shared_ptr<TicketKeyRing> ticket_keys_;
};

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_TLS_CONTEXT_H_
