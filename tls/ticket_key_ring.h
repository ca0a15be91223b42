// Internal to tls/: session-ticket keys that rotate. A key encrypts tickets for one
// `rotation` period from its creation and still decrypts them (asking BoringSSL to renew
// the ticket) for one more; then it is gone. Rotation happens lazily on use, computed
// from the creation times, so an idle server never accepts a key older than two periods.
// Thread-safe: one ring serves every handshake of a transport, across credential
// reloads.
#ifndef ISLET_TLS_TICKET_KEY_RING_H_
#define ISLET_TLS_TICKET_KEY_RING_H_

#include <openssl/base.h>

#include <array>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace islet {
namespace tls_internal {

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

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_TICKET_KEY_RING_H_
