#include "tls/ticket_key_ring.h"

#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>

#include "transport/io_wait.h"

namespace islet {
namespace tls_internal {

TicketKeyRing::TicketKeyRing(absl::Duration rotation)
    : rotation_(rotation), current_(NewKey(MonotonicNow())) {}

void TicketKeyRing::set_rotation(absl::Duration rotation) {
  absl::MutexLock lock(&mu_);
  rotation_ = rotation;
}

TicketKeyRing::Key TicketKeyRing::NewKey(absl::Duration now) {
  Key key;
  RAND_bytes(key.name.data(), key.name.size());
  RAND_bytes(key.hmac_key.data(), key.hmac_key.size());
  RAND_bytes(key.aes_key.data(), key.aes_key.size());
  key.created = now;
  return key;
}

void TicketKeyRing::RotateIfDue(absl::Duration now) {
  if (now - current_.created >= rotation_) {
    // A key that went unused past its second period is not promoted to "previous".
    has_previous_ = now - current_.created < 2 * rotation_;
    previous_ = current_;
    current_ = NewKey(now);
  }
  if (has_previous_ && now - previous_.created >= 2 * rotation_) has_previous_ = false;
}

int TicketKeyRing::Encrypt(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher,
                           HMAC_CTX* hmac) {
  Key key;
  {
    absl::MutexLock lock(&mu_);
    RotateIfDue(MonotonicNow());
    key = current_;
  }
  std::memcpy(key_name, key.name.data(), key.name.size());
  RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc()));
  if (!EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) ||
      !HMAC_Init_ex(hmac, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr)) {
    return -1;
  }
  return 1;
}

int TicketKeyRing::Decrypt(const uint8_t* key_name, const uint8_t* iv, EVP_CIPHER_CTX* cipher,
                           HMAC_CTX* hmac) {
  Key key;
  bool renew = false;
  {
    absl::MutexLock lock(&mu_);
    RotateIfDue(MonotonicNow());
    if (std::memcmp(key_name, current_.name.data(), current_.name.size()) == 0) {
      key = current_;
    } else if (has_previous_ &&
               std::memcmp(key_name, previous_.name.data(), previous_.name.size()) == 0) {
      key = previous_;
      renew = true;
    } else {
      return 0;  // unknown or expired: a full handshake, and a fresh ticket
    }
  }
  if (!HMAC_Init_ex(hmac, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr) ||
      !EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv)) {
    return -1;
  }
  return renew ? 2 : 1;
}

}  // namespace tls_internal
}  // namespace islet
