// What the TLS load tools share: BoringSSL's error text and the client's ALPN offer.
// Apart from load_target.h so the plain tools do not link BoringSSL.
#ifndef ISLET_TOOLS_BENCH_TLS_LOAD_H_
#define ISLET_TOOLS_BENCH_TLS_LOAD_H_

#include <cstdint>
#include <string>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace islet::bench {

// The oldest queued BoringSSL error, and the queue emptied.
inline std::string SslErrorString() {
  const uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no BoringSSL error queued";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// Offers one ALPN protocol (none when `alpn` is empty).
inline void OfferAlpn(SSL_CTX* ctx, const std::string& alpn) {
  if (alpn.empty()) return;
  std::string wire(1, static_cast<char>(alpn.size()));
  wire += alpn;
  SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const uint8_t*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
}

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_TLS_LOAD_H_
