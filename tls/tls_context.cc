#include "tls/tls_context.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/unique_fd.h"

namespace islet {
namespace tls_internal {
namespace {

// Forward-secret AEAD suites only, for TLS 1.2. AES-GCM and ChaCha20 are in one
// equal-preference group per key type, so a client without AES hardware may pick ChaCha.
constexpr char kDefaultCipherList[] =
    "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]:"
    "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

// PEM files are small; anything bigger is a mistake (or /dev/zero).
constexpr size_t kMaxPemFile = 4 << 20;

using X509Ptr = bssl::UniquePtr<X509>;

// The BoringSSL ex_data slot where each SSL_CTX keeps its TlsContext.
int ContextIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

const TlsContext* ContextOf(const SSL* ssl) {
  return static_cast<const TlsContext*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ContextIndex()));
}

// ---- Reading PEM ----

// Where one PEM input comes from, for messages: `credentials.private_key_file /x.pem`.
struct PemInput {
  std::string text;
  std::string source;
};

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const std::string& field) {
  const std::string what = absl::StrCat(field, " ", path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return PosixError(errno, what);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return PosixError(errno, what);
  if (!S_ISREG(st.st_mode)) return absl::InvalidArgumentError(absl::StrCat(what, ": not a regular file"));
  if (static_cast<uint64_t>(st.st_size) > kMaxPemFile) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", st.st_size, " bytes is too big for a PEM file"));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + have, out.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError(errno, what);
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  out.resize(have);
  return out;
}

// Exactly one of `file` / `pem` must be set; `field` is the options path without the
// _file/_pem suffix ("credentials.certificate_chain").
absl::StatusOr<PemInput> ReadPem(const std::string& file, const std::string& pem,
                                 const std::string& field) {
  if (!file.empty() && !pem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": set ", field, "_file or ", field, "_pem, not both"));
  }
  if (file.empty() && pem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": missing (set ", field, "_file or ", field, "_pem)"));
  }
  if (!pem.empty()) return PemInput{pem, absl::StrCat(field, "_pem")};
  absl::StatusOr<std::string> text = ReadSmallFile(file, absl::StrCat(field, "_file"));
  if (!text.ok()) return text.status();
  return PemInput{*std::move(text), absl::StrCat(field, "_file ", file)};
}

bool IsEndOfPem(uint32_t error) {
  return ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
}

// Every certificate in `input`, in order. InvalidArgument for a malformed block or none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const PemInput& input) {
  bssl::UniquePtr<BIO> bio(
      BIO_new_mem_buf(input.text.data(), static_cast<int>(input.text.size())));
  if (!bio) return absl::ResourceExhaustedError("tls: out of memory");
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) {
      certs.push_back(std::move(cert));
      continue;
    }
    const uint32_t error = ERR_peek_last_error();
    if (IsEndOfPem(error)) {
      ERR_clear_error();
      break;
    }
    const std::string reason = ConsumeSslErrorReason();
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": certificate ", certs.size() + 1, " is not valid PEM/X.509 (",
        reason.empty() ? "unknown error" : reason, ")"));
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": no certificate found (expected -----BEGIN CERTIFICATE-----)"));
  }
  return certs;
}

int PasswordCallback(char* buf, int size, int rwflag, void* userdata) {
  const auto* password = static_cast<const std::string*>(userdata);
  if (password == nullptr || password->empty() || password->size() > static_cast<size_t>(size)) {
    return 0;
  }
  std::memcpy(buf, password->data(), password->size());
  return static_cast<int>(password->size());
}

absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> ParsePrivateKey(const PemInput& input,
                                                         const std::string& password,
                                                         const std::string& field) {
  // PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") and the traditional form ("Proc-Type:
  // 4,ENCRYPTED") both say so in the clear.
  const bool encrypted = absl::StrContains(input.text, "ENCRYPTED");
  if (encrypted && password.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": the private key is encrypted and no ", field,
        "_password was given"));
  }
  bssl::UniquePtr<BIO> bio(
      BIO_new_mem_buf(input.text.data(), static_cast<int>(input.text.size())));
  if (!bio) return absl::ResourceExhaustedError("tls: out of memory");
  ERR_clear_error();
  std::string pass = password;
  bssl::UniquePtr<EVP_PKEY> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, PasswordCallback, &pass));
  if (key) {
    ERR_clear_error();
    return key;
  }
  const uint32_t error = ERR_peek_last_error();
  const std::string reason = ConsumeSslErrorReason();
  if (IsEndOfPem(error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        input.source, ": no private key found (expected -----BEGIN PRIVATE KEY----- or "
                      "a traditional RSA/EC key)"));
  }
  if (encrypted) {
    return absl::InvalidArgumentError(absl::StrCat(input.source,
                                                   ": cannot decrypt the private key: wrong ",
                                                   field, "_password? (", reason, ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(input.source, ": the private key is not valid PEM (", reason, ")"));
}

std::string SubjectOf(X509* cert) {
  char buf[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

struct LoadedCredentials {
  std::vector<X509Ptr> chain;  // leaf first
  bssl::UniquePtr<EVP_PKEY> key;
};

// `field` names the credentials in messages: "credentials" or
// "sni_credentials[\"api.example.com\"]".
absl::StatusOr<LoadedCredentials> LoadCredentials(const TlsCredentials& credentials,
                                                  const std::string& field) {
  absl::StatusOr<PemInput> chain_pem =
      ReadPem(credentials.certificate_chain_file, credentials.certificate_chain_pem,
              absl::StrCat(field, ".certificate_chain"));
  if (!chain_pem.ok()) return chain_pem.status();
  absl::StatusOr<PemInput> key_pem = ReadPem(
      credentials.private_key_file, credentials.private_key_pem, absl::StrCat(field, ".private_key"));
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::vector<X509Ptr>> chain = ParseCertificates(*chain_pem);
  if (!chain.ok()) return chain.status();
  absl::StatusOr<bssl::UniquePtr<EVP_PKEY>> key =
      ParsePrivateKey(*key_pem, credentials.private_key_password, absl::StrCat(field, ".private_key"));
  if (!key.ok()) return key.status();
  X509* leaf = (*chain)[0].get();
  ERR_clear_error();
  if (X509_check_private_key(leaf, key->get()) != 1) {
    const std::string reason = ConsumeSslErrorReason();
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the private key does not match the certificate ", SubjectOf(leaf), " (",
        key_pem->source, " vs ", chain_pem->source, "; ", reason, ")"));
  }
  return LoadedCredentials{*std::move(chain), *std::move(key)};
}

// ---- Validation of what needs no file ----

absl::Status ValidateOptions(const TlsOptions& options) {
  if (options.min_version != TlsVersion::kTls1_2 && options.min_version != TlsVersion::kTls1_3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_version: 0x", absl::Hex(static_cast<uint16_t>(options.min_version)),
        " is not TLS 1.2 or 1.3 (TLS 1.0 and 1.1 are refused)"));
  }
  if (options.max_version != TlsVersion::kTls1_2 && options.max_version != TlsVersion::kTls1_3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_version: 0x", absl::Hex(static_cast<uint16_t>(options.max_version)),
        " is not TLS 1.2 or 1.3 (TLS 1.0 and 1.1 are refused)"));
  }
  if (static_cast<uint16_t>(options.min_version) > static_cast<uint16_t>(options.max_version)) {
    return absl::InvalidArgumentError("min_version: higher than max_version");
  }
  size_t alpn_wire = 0;
  for (const std::string& protocol : options.alpn_protocols) {
    if (protocol.empty() || protocol.size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alpn_protocols: \"", protocol, "\" must be 1 to 255 bytes long"));
    }
    alpn_wire += 1 + protocol.size();
  }
  if (alpn_wire > 65535) {
    return absl::InvalidArgumentError("alpn_protocols: the list is longer than 65535 bytes");
  }
  for (const auto& [name, credentials] : options.sni_credentials) {
    absl::string_view host = name;
    if (absl::StartsWith(host, "*.")) host.remove_prefix(2);
    const bool valid =
        !host.empty() && host.size() <= 253 && host.front() != '.' && host.back() != '.' &&
        std::all_of(host.begin(), host.end(), [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ||
                 c == '_';
        });
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sni_credentials: \"", name,
          "\" is not a host name (\"api.example.com\") or a one-label wildcard "
          "(\"*.example.com\")"));
    }
  }
  const bool has_ca = !options.client_ca_file.empty() || !options.client_ca_pem.empty();
  if (options.client_certificate == ClientCertificateMode::kNone && has_ca) {
    return absl::InvalidArgumentError(
        "client_ca: a CA bundle is set but client_certificate is kNone, so no client "
        "would be asked for a certificate");
  }
  if (options.client_certificate != ClientCertificateMode::kNone && !has_ca) {
    return absl::InvalidArgumentError(
        "client_ca: client certificates are requested but no CA bundle verifies them (set "
        "client_ca_file or client_ca_pem)");
  }
  if (options.session_tickets && options.ticket_key_rotation <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ticket_key_rotation: must be positive");
  }
  if (options.session_lifetime < absl::Seconds(1) ||
      options.session_lifetime > absl::Hours(24 * 7)) {
    return absl::InvalidArgumentError(
        "session_lifetime: must be between 1 second and 7 days (TLS 1.3's limit)");
  }
  if (options.session_cache_size > static_cast<size_t>(LONG_MAX)) {
    return absl::InvalidArgumentError("session_cache_size: too large");
  }
  return absl::OkStatus();
}

// ---- BoringSSL callbacks ----

int SelectAlpn(SSL* ssl, const uint8_t** out, uint8_t* out_length, const uint8_t* in,
               unsigned in_length, void* arg) {
  const auto* context = static_cast<const TlsContext*>(arg);
  // Server preference: walk our list, and take the first the client offered.
  for (const std::string& ours : context->alpn_protocols()) {
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

int SelectServerName(SSL* ssl, int* out_alert, void* arg) {
  const auto* context = static_cast<const TlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  SSL_CTX* target = context->ForServerName(name);
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
  SSL_CTX_set_ex_data(ctx.get(), ContextIndex(), const_cast<TlsContext*>(context));

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
  // turn that on (tls_transport_test checks it with openssl s_client).
  ERR_clear_error();
  return ctx;
}

}  // namespace

// ---- TicketKeyRing ----

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

// ---- TlsContext ----

TlsContext::~TlsContext() = default;

absl::StatusOr<std::shared_ptr<const TlsContext>> TlsContext::Create(
    const TlsOptions& options, std::shared_ptr<TicketKeyRing> ticket_keys) {
  absl::Status valid = ValidateOptions(options);
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

std::string ConsumeSslErrorReason() {
  const uint32_t first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "";
  const char* reason = ERR_reason_error_string(first);
  if (reason != nullptr) return reason;
  return absl::StrCat("error ", ERR_GET_LIB(first), ":", ERR_GET_REASON(first));
}

std::string HumanizeReason(absl::string_view reason) {
  return absl::AsciiStrToLower(absl::StrReplaceAll(reason, {{"_", " "}}));
}

}  // namespace tls_internal
}  // namespace islet
