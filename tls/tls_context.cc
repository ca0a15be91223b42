#include "tls/tls_context.h"

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tls/handshake_callbacks.h"
#include "tls/pem.h"
#include "tls/ssl_errors.h"

namespace islet {
namespace tls_internal {
namespace {

// Forward-secret AEAD suites only, for TLS 1.2. AES-GCM and ChaCha20 are in one
// equal-preference group per key type, so a client without AES hardware may pick ChaCha.
constexpr char kDefaultCipherList[] =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

// A 32-byte session ID context per certificate, so a session made under one SNI name is
// never resumed under another (it would skip that name's certificate).
std::string SessionIdContext(absl::string_view server_name) {
  const std::string label = absl::StrCat("islet-tls:", server_name);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(label.data()), label.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), SSL_MAX_SID_CTX_LENGTH);
}

absl::Status SslFailure(absl::string_view what) {
  const std::string reason = ConsumeSslErrorReason();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " (", reason.empty() ? "unknown error" : reason, ")"));
}

// One SSL_CTX: the shared settings, then `credentials`.
absl::StatusOr<bssl::UniquePtr<SSL_CTX>> BuildSslCtx(
    const TlsOptions& options, const LoadedCredentials& credentials,
    const std::vector<X509Ptr>& client_cas, absl::string_view server_name,
    const TlsContext* context, const std::string& field) {
  ERR_clear_error();
  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  if (!ctx) return absl::ResourceExhaustedError("tls: out of memory for an SSL_CTX");
  AttachContext(ctx.get(), context);

  if (!SSL_CTX_set_min_proto_version(ctx.get(), static_cast<uint16_t>(options.min_version)) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), static_cast<uint16_t>(options.max_version))) {
    return SslFailure("min_version/max_version: refused by BoringSSL");
  }
  const std::string ciphers = options.cipher_list.empty() ? kDefaultCipherList : options.cipher_list;
  if (!SSL_CTX_set_strict_cipher_list(ctx.get(), ciphers.c_str())) {
    return SslFailure(absl::StrCat("cipher_list: BoringSSL refuses \"", ciphers, "\""));
  }
  // Partial writes with a moving buffer let TlsSocket write one record at a time from
  // gathered buffers and retry a blocked record from its own copy. (BoringSSL always
  // frees its record buffers when idle, so SSL_MODE_RELEASE_BUFFERS is 0 there; it is
  // named so the intent survives a port to another library.)
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);

  // Credentials.
  if (!SSL_CTX_use_certificate(ctx.get(), credentials.chain[0].get())) {
    return SslFailure(absl::StrCat(field, ": the certificate is not usable"));
  }
  for (size_t i = 1; i < credentials.chain.size(); ++i) {
    if (!SSL_CTX_add1_chain_cert(ctx.get(), credentials.chain[i].get())) {
      return SslFailure(absl::StrCat(field, ": intermediate certificate ", i, " is not usable"));
    }
  }
  if (!SSL_CTX_use_PrivateKey(ctx.get(), credentials.key.get())) {
    return SslFailure(absl::StrCat(field, ": the private key is not usable"));
  }
  if (!SSL_CTX_check_private_key(ctx.get())) {
    return SslFailure(absl::StrCat(field, ": the private key does not match the certificate"));
  }

  // Client certificates.
  if (options.client_certificate != ClientCertificateMode::kNone) {
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    bssl::UniquePtr<STACK_OF(X509_NAME)> names(sk_X509_NAME_new_null());
    if (!names) return absl::ResourceExhaustedError("tls: out of memory");
    for (const X509Ptr& ca : client_cas) {
      if (!X509_STORE_add_cert(store, ca.get())) {
        // A duplicate in the bundle is harmless.
        const uint32_t error = ERR_peek_last_error();
        if (ERR_GET_REASON(error) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          return SslFailure("client_ca: a CA certificate is not usable");
        }
        ERR_clear_error();
      }
      bssl::UniquePtr<X509_NAME> name(X509_NAME_dup(X509_get_subject_name(ca.get())));
      if (!name || !bssl::PushToStack(names.get(), std::move(name))) {
        return absl::ResourceExhaustedError("tls: out of memory");
      }
    }
    SSL_CTX_set_client_CA_list(ctx.get(), names.release());
    int mode = SSL_VERIFY_PEER;
    if (options.client_certificate == ClientCertificateMode::kRequired) {
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx.get(), mode, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }

  if (!options.alpn_protocols.empty()) {
    SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, const_cast<TlsContext*>(context));
  }
  SSL_CTX_set_tlsext_servername_callback(ctx.get(), SelectServerName);
  SSL_CTX_set_tlsext_servername_arg(ctx.get(), const_cast<TlsContext*>(context));

  // Sessions. BoringSSL keeps the cache and ticket settings of the SSL_CTX a connection
  // started on (the default one); the SNI contexts only differ by their ID context.
  const std::string sid_ctx = SessionIdContext(server_name);
  if (!SSL_CTX_set_session_id_context(ctx.get(), reinterpret_cast<const uint8_t*>(sid_ctx.data()),
                                      sid_ctx.size())) {
    return SslFailure("tls: cannot set the session ID context");
  }
  if (options.session_cache_size > 0) {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx.get(), static_cast<unsigned long>(options.session_cache_size));
  } else {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  }
  const auto lifetime = static_cast<uint32_t>(absl::ToInt64Seconds(options.session_lifetime));
  SSL_CTX_set_timeout(ctx.get(), lifetime);
  SSL_CTX_set_session_psk_dhe_timeout(ctx.get(), lifetime);
  if (options.session_tickets) {
    SSL_CTX_set_tlsext_ticket_key_cb(ctx.get(), TicketKeyCallback);
  } else {
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  }
  // Renegotiation: a BoringSSL server never renegotiates, and answers a client's
  // renegotiation attempt with a fatal no_renegotiation alert; there is no switch to
  // turn that on (tls_external_test checks it with openssl s_client).
  ERR_clear_error();
  return ctx;
}

}  // namespace

TlsContext::~TlsContext() = default;

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Create(
    const TlsOptions& options, std::shared_ptr<TicketKeyRing> ticket_keys) {
  absl::Status valid = ValidateTlsOptions(options);
  if (!valid.ok()) return valid;

  std::vector<X509Ptr> client_cas;
  if (options.client_certificate != ClientCertificateMode::kNone) {
    absl::StatusOr<PemInput> bundle =
        ReadPem(options.client_ca_file, options.client_ca_pem, "client_ca");
    if (!bundle.ok()) return bundle.status();
    absl::StatusOr<std::vector<X509Ptr>> cas = ParseCertificates(*bundle);
    if (!cas.ok()) return cas.status();
    client_cas = *std::move(cas);
  }

  std::shared_ptr<TlsContext> context(new TlsContext());
  context->alpn_protocols_ = options.alpn_protocols;
  context->ticket_keys_ = std::move(ticket_keys);

  absl::StatusOr<LoadedCredentials> main = LoadCredentials(options.credentials, "credentials");
  if (!main.ok()) return main.status();
  absl::StatusOr<bssl::UniquePtr<SSL_CTX>> default_ctx =
      BuildSslCtx(options, *main, client_cas, "", context.get(), "credentials");
  if (!default_ctx.ok()) return default_ctx.status();
  context->default_ctx_ = *std::move(default_ctx);

  for (const auto& [name, credentials] : options.sni_credentials) {
    const std::string field = absl::StrCat("sni_credentials[\"", name, "\"]");
    const std::string key = absl::AsciiStrToLower(name);
    if (context->by_name_.contains(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": the name is listed twice (names ignore case)"));
    }
    absl::StatusOr<LoadedCredentials> loaded = LoadCredentials(credentials, field);
    if (!loaded.ok()) return loaded.status();
    absl::StatusOr<bssl::UniquePtr<SSL_CTX>> ctx =
        BuildSslCtx(options, *loaded, client_cas, key, context.get(), field);
    if (!ctx.ok()) return ctx.status();
    context->by_name_.emplace(key, *std::move(ctx));
  }
  return std::shared_ptr<const TlsContext>(std::move(context));
}

bssl::UniquePtr<SSL> TlsContext::NewSsl() const {
  return bssl::UniquePtr<SSL>(SSL_new(default_ctx_.get()));
}

SSL_CTX* TlsContext::ForServerName(absl::string_view name) const {
  if (by_name_.empty() || name.empty()) return nullptr;
  std::string key = absl::AsciiStrToLower(name);
  if (!key.empty() && key.back() == '.') key.pop_back();  // "example.com." is absolute
  if (auto it = by_name_.find(key); it != by_name_.end()) return it->second.get();
  const size_t dot = key.find('.');
  if (dot == std::string::npos || dot == 0) return nullptr;
  if (auto it = by_name_.find(absl::StrCat("*", key.substr(dot))); it != by_name_.end()) {
    return it->second.get();
  }
  return nullptr;
}

}  // namespace tls_internal
}  // namespace islet
