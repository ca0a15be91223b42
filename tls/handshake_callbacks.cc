#include "tls/handshake_callbacks.h"

#include <openssl/ssl.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "tls/ticket_key_ring.h"
#include "tls/tls_context.h"

namespace islet {
namespace tls_internal {
namespace {

// The BoringSSL ex_data slot where each SSL_CTX keeps its TlsContext.
int ContextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

const TlsContext* ContextOf(const SSL* ssl) {
  return static_cast<const TlsContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ContextIndex()));
}

}  // namespace

void AttachContext(SSL_CTX* ctx, const TlsContext* context) {
  SSL_CTX_set_ex_data(ctx, ContextIndex(), const_cast<TlsContext*>(context));
}

int SelectAlpn(SSL* ssl, const uint8_t** out, uint8_t* out_length, const uint8_t* in,
               unsigned in_length, void* context) {
  // Server preference: walk our list, and take the first the client offered.
  for (const std::string& ours : static_cast<const TlsContext*>(context)->alpn_protocols()) {
    const uint8_t* p = in;
    const uint8_t* const end = in + in_length;
    while (p < end) {
      const size_t length = *p++;
      if (length > static_cast<size_t>(end - p)) return SSL_TLSEXT_ERR_NOACK;  // malformed
      if (length == ours.size() && std::memcmp(p, ours.data(), length) == 0) {
        *out = p;
        *out_length = static_cast<uint8_t>(length);
        return SSL_TLSEXT_ERR_OK;
      }
      p += length;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int SelectServerName(SSL* ssl, int* out_alert, void* context) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  SSL_CTX* target = static_cast<const TlsContext*>(context)->ForServerName(name);
  // An unknown name gets the default certificate, and no acknowledgement.
  if (target == nullptr) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_set_SSL_CTX(ssl, target) == nullptr) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

int TicketKeyCallback(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher,
                      HMAC_CTX* hmac, int encrypt) {
  const TlsContext* context = ContextOf(ssl);
  if (context == nullptr || context->ticket_keys() == nullptr) return encrypt ? -1 : 0;
  return encrypt ? context->ticket_keys()->Encrypt(key_name, iv, cipher, hmac)
                 : context->ticket_keys()->Decrypt(key_name, iv, cipher, hmac);
}

}  // namespace tls_internal
}  // namespace islet
