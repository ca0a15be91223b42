// Internal to tls/: the BoringSSL state one TlsOptions turns into. A TlsContext is
// immutable once built and shared (std::shared_ptr) by the transport and by every socket
// it made, so a credential reload builds a new one and live connections keep theirs.
#ifndef ISLET_TLS_TLS_CONTEXT_H_
#define ISLET_TLS_TLS_CONTEXT_H_

#include <openssl/base.h>
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tls/tls_options.h"

namespace islet {
namespace tls_internal {

// Session-ticket keys that rotate: a key encrypts tickets for one `rotation` period from
// its creation and still decrypts them (asking BoringSSL to renew the ticket) for one
// more; then it is gone. Rotation happens lazily on use, computed from the creation
// times, so an idle server never accepts a key older than two periods. Thread-safe:
// one ring serves every handshake of a transport, across credential reloads.
class TicketKeyRing {
 public:
  explicit TicketKeyRing(absl::Duration rotation);

  void set_rotation(absl::Duration rotation);

  // The two modes of SSL_CTX_set_tlsext_ticket_key_cb (see ssl.h): Encrypt returns 1
  // (or -1 on error); Decrypt returns 0 for an unknown or expired key, 1 for the current
  // key, 2 for the previous one (renew the ticket).
  int Encrypt(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher, HMAC_CTX* hmac);
  int Decrypt(const uint8_t* key_name, const uint8_t* iv, EVP_CIPHER_CTX* cipher,
              HMAC_CTX* hmac);

 private:
  struct Key {
    std::array<uint8_t, 16> name;
    std::array<uint8_t, 32> hmac_key;
    std::array<uint8_t, 32> aes_key;
    absl::Duration created;  // MonotonicNow()
  };
  static Key NewKey(absl::Duration now);
  void RotateIfDue(absl::Duration now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  absl::Duration rotation_ ABSL_GUARDED_BY(mu_);
  Key current_ ABSL_GUARDED_BY(mu_);
  Key previous_ ABSL_GUARDED_BY(mu_);
  bool has_previous_ ABSL_GUARDED_BY(mu_) = false;
};

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

// Empties this thread's BoringSSL error queue and returns its first entry's reason
// ("WRONG_VERSION_NUMBER"), or "" when it was empty. Every failed BoringSSL call is
// followed by this (or by ERR_clear_error), so no stale error outlives its call:
// the queue is per thread, shared by every connection of a worker.
std::string ConsumeSslErrorReason();

// "WRONG_VERSION_NUMBER" -> "wrong version number".
std::string HumanizeReason(absl::string_view reason);

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_TLS_CONTEXT_H_
