// Internal to tls/: the BoringSSL callbacks that a TlsContext installs on each of its
// SSL_CTXs, run during handshakes: the ALPN choice, the switch to an SNI name's
// certificate, and the session-ticket keys. Each finds the TlsContext it serves through
// its `arg` or, for the ticket callback (which BoringSSL gives none), through the
// SSL_CTX (AttachContext).
#ifndef ISLET_TLS_HANDSHAKE_CALLBACKS_H_
#define ISLET_TLS_HANDSHAKE_CALLBACKS_H_

#include <openssl/base.h>

#include <cstdint>

namespace islet {
namespace tls_internal {

class TlsContext;

// Makes `context` reachable from every SSL made from `ctx`. The context owns `ctx`.
void AttachContext(SSL_CTX* ctx, const TlsContext* context);

// SSL_CTX_set_alpn_select_cb, `context` the TlsContext: server preference, so the
// first of its protocols the client offers. No match is not an error: the handshake
// goes on without ALPN (SSL_TLSEXT_ERR_NOACK).
int SelectAlpn(SSL* ssl, const uint8_t** out, uint8_t* out_length, const uint8_t* in,
               unsigned in_length, void* context);

// SSL_CTX_set_tlsext_servername_callback, `context` the TlsContext: moves the
// connection to the SSL_CTX of the name the client asked for; an unknown name keeps
// the default certificate.
int SelectServerName(SSL* ssl, int* out_alert, void* context);

// SSL_CTX_set_tlsext_ticket_key_cb: the attached context's TicketKeyRing.
int TicketKeyCallback(SSL* ssl, uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher,
                      HMAC_CTX* hmac, int encrypt);

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_HANDSHAKE_CALLBACKS_H_
