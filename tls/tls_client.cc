#include "tls/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tls/pem.h"
#include "tls/ssl_errors.h"
#include "tls/tls_socket.h"
#include "transport/errors.h"

namespace islet {
namespace {

bool IsIpLiteral(const std::string& name) {
  in6_addr scratch;
  return inet_pton(AF_INET, name.c_str(), &scratch) == 1 ||
         inet_pton(AF_INET6, name.c_str(), &scratch) == 1;
}

absl::Status SslFailure(absl::string_view what) {
  const std::string reason = tls_internal::ConsumeSslErrorReason();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " (", reason.empty() ? "unknown error" : reason, ")"));
}

absl::Status Validate(const OutboundTlsOptions& options) {
  if (options.min_version > options.max_version) {
    return absl::InvalidArgumentError("min_version: above max_version");
  }
  if (options.server_name.find('\0') != std::string::npos ||
      options.server_name.size() > 253) {
    return absl::InvalidArgumentError(
        "server_name: not a DNS name or IP literal (a NUL byte, or over 253 bytes)");
  }
  size_t wire = 0;
  for (size_t i = 0; i < options.alpn_protocols.size(); ++i) {
    const std::string& protocol = options.alpn_protocols[i];
    if (protocol.empty() || protocol.size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat("alpn_protocols[", i, "]: \"", protocol,
                                                     "\" must be 1 to 255 bytes long"));
    }
    wire += 1 + protocol.size();
  }
  if (wire > 65535) {
    return absl::InvalidArgumentError("alpn_protocols: the list is longer than 65535 bytes");
  }
  return absl::OkStatus();
}

// The SSL ex_data slot holding a connection's session-cache key (a heap std::string the
// SSL owns: it is freed with the SSL, whenever that happens).
void FreeKey(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*index*/,
             long /*argl*/, void* /*argp*/) {
  std::unique_ptr<std::string> key(static_cast<std::string*>(ptr));
}
int KeyIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, &FreeKey);
  return index;
}
// The SSL_CTX ex_data slot holding its TlsClient::State.
int StateIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

struct TlsClient::State {
  bssl::UniquePtr<SSL_CTX> ctx;
  std::string server_name;   // empty: the endpoint's address
  bool server_name_is_ip = false;
  size_t cache_capacity = 0;

  // The session cache: the latest session per key, stamped for eviction.
  struct Entry {
    bssl::UniquePtr<SSL_SESSION> session;
    uint64_t stamp = 0;
  };
  mutable absl::Mutex mu;
  absl::flat_hash_map<std::string, Entry> sessions ABSL_GUARDED_BY(mu);
  uint64_t next_stamp ABSL_GUARDED_BY(mu) = 0;

  // BoringSSL hands over each new session (after the handshake for TLS 1.2, with a
  // NewSessionTicket in TLS 1.3, so possibly during a later read). Returning 1 takes the
  // reference.
  static int OnNewSession(SSL* ssl, SSL_SESSION* session) {
    auto* state =
        static_cast<State*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), StateIndex()));
    auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, KeyIndex()));
    if (state == nullptr || key == nullptr || state->cache_capacity == 0) return 0;
    absl::MutexLock lock(&state->mu);
    auto it = state->sessions.find(*key);
    if (it == state->sessions.end() && state->sessions.size() >= state->cache_capacity) {
      auto oldest = state->sessions.begin();
      for (auto e = state->sessions.begin(); e != state->sessions.end(); ++e) {
        if (e->second.stamp < oldest->second.stamp) oldest = e;
      }
      state->sessions.erase(oldest);
    }
    Entry& entry = state->sessions[*key];
    entry.session.reset(session);
    entry.stamp = state->next_stamp++;
    return 1;
  }
};

absl::StatusOr<std::shared_ptr<TlsClient>> TlsClient::Create(OutboundTlsOptions options) {
  if (absl::Status valid = Validate(options); !valid.ok()) return valid;
  auto state = std::make_shared<State>();
  state->server_name = options.server_name;
  state->server_name_is_ip = !options.server_name.empty() && IsIpLiteral(options.server_name);
  state->cache_capacity = options.session_cache_size;

  // Whom to trust.
  absl::StatusOr<tls_internal::PemInput> ca_input =
      options.ca_file.empty() && options.ca_pem.empty()
          ? tls_internal::ReadPem(kSystemCaBundle, "", "ca (the system store)")
          : tls_internal::ReadPem(options.ca_file, options.ca_pem, "ca");
  if (!ca_input.ok()) return ca_input.status();
  absl::StatusOr<std::vector<tls_internal::X509Ptr>> cas =
      tls_internal::ParseCertificates(*ca_input);
  if (!cas.ok()) return cas.status();

  ERR_clear_error();
  state->ctx.reset(SSL_CTX_new(TLS_method()));
  SSL_CTX* ctx = state->ctx.get();
  if (ctx == nullptr) return absl::ResourceExhaustedError("tls: out of memory for an SSL_CTX");
  SSL_CTX_set_ex_data(ctx, StateIndex(), state.get());
  if (!SSL_CTX_set_min_proto_version(ctx, static_cast<uint16_t>(options.min_version)) ||
      !SSL_CTX_set_max_proto_version(ctx, static_cast<uint16_t>(options.max_version))) {
    return SslFailure("min_version/max_version: refused by BoringSSL");
  }
  // As on the server side (tls_context.cc): TlsSocket writes one record at a time and
  // retries a blocked one from its own copy.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const tls_internal::X509Ptr& ca : *cas) {
    if (!X509_STORE_add_cert(store, ca.get())) {
      // The system bundle may list a certificate twice; that is not an error.
      const uint32_t error = ERR_peek_last_error();
      if (ERR_GET_LIB(error) == ERR_LIB_X509 &&
          ERR_GET_REASON(error) == X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        ERR_clear_error();
        continue;
      }
      return SslFailure(absl::StrCat(ca_input->source, ": a CA certificate is not usable"));
    }
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!state->server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
    const int named =
        state->server_name_is_ip
            ? X509_VERIFY_PARAM_set1_ip_asc(param, state->server_name.c_str())
            : X509_VERIFY_PARAM_set1_host(param, state->server_name.data(),
                                          state->server_name.size());
    if (!named) {
      return SslFailure(absl::StrCat("server_name: \"", state->server_name, "\" is not usable"));
    }
  }

  // What to offer.
  if (!options.alpn_protocols.empty()) {
    std::string wire;
    for (const std::string& protocol : options.alpn_protocols) {
      wire.push_back(static_cast<char>(protocol.size()));
      wire += protocol;
    }
    // SSL_CTX_set_alpn_protos returns 0 on success.
    if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const uint8_t*>(wire.data()),
                                wire.size()) != 0) {
      return SslFailure("alpn_protocols: refused by BoringSSL");
    }
  }
  const TlsCredentials& creds = options.client_credentials;
  if (!creds.certificate_chain_file.empty() || !creds.certificate_chain_pem.empty() ||
      !creds.private_key_file.empty() || !creds.private_key_pem.empty()) {
    absl::StatusOr<tls_internal::LoadedCredentials> loaded =
        tls_internal::LoadCredentials(creds, "client_credentials");
    if (!loaded.ok()) return loaded.status();
    if (!SSL_CTX_use_certificate(ctx, loaded->chain[0].get())) {
      return SslFailure("client_credentials: the certificate is not usable");
    }
    for (size_t i = 1; i < loaded->chain.size(); ++i) {
      if (!SSL_CTX_add1_chain_cert(ctx, loaded->chain[i].get())) {
        return SslFailure(
            absl::StrCat("client_credentials: intermediate certificate ", i, " is not usable"));
      }
    }
    if (!SSL_CTX_use_PrivateKey(ctx, loaded->key.get()) || !SSL_CTX_check_private_key(ctx)) {
      return SslFailure("client_credentials: the private key is not usable");
    }
  }

  // Resumption through our own cache only: BoringSSL keeps no client sessions itself.
  if (state->cache_capacity > 0) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, &State::OnNewSession);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  }
  ERR_clear_error();
  return std::shared_ptr<TlsClient>(new TlsClient(std::move(state)));
}

TlsClient::TlsClient(std::shared_ptr<State> state) : state_(std::move(state)) {}
TlsClient::~TlsClient() = default;

absl::StatusOr<std::unique_ptr<Socket>> TlsClient::WrapClient(std::unique_ptr<Socket> socket,
                                                              const SocketInfo& endpoint) {
  if (socket == nullptr) return absl::InvalidArgumentError("tls: no socket to wrap");
  if (socket->IsClosed()) return ClosedError("tls");
  ERR_clear_error();
  bssl::UniquePtr<SSL> ssl(SSL_new(state_->ctx.get()));
  if (!ssl) {
    tls_internal::ConsumeSslErrorReason();
    return absl::ResourceExhaustedError("tls: out of memory for a connection");
  }
  const std::string& name = state_->server_name;
  if (name.empty()) {
    // The endpoint's address is the name (a unix path has none, and fails to verify).
    if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), endpoint.address.c_str())) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "tls: no server_name given, and the endpoint ", endpoint.ToString(),
          " has no IP address to verify"));
    }
  } else if (!state_->server_name_is_ip && !SSL_set_tlsext_host_name(ssl.get(), name.c_str())) {
    tls_internal::ConsumeSslErrorReason();
    return absl::ResourceExhaustedError("tls: out of memory for a connection");
  }
  if (state_->cache_capacity > 0) {
    auto key = std::make_unique<std::string>(absl::StrCat(endpoint.ToString(), " ", name));
    {
      absl::MutexLock lock(&state_->mu);
      auto it = state_->sessions.find(*key);
      // SSL_set_session takes its own reference.
      if (it != state_->sessions.end()) SSL_set_session(ssl.get(), it->second.session.get());
    }
    SSL_set_ex_data(ssl.get(), KeyIndex(), key.release());  // freed by FreeKey
  }
  absl::StatusOr<std::unique_ptr<TlsSocket>> tls =
      TlsSocket::CreateClient(std::move(socket), std::move(ssl), state_);
  if (!tls.ok()) return tls.status();
  return std::unique_ptr<Socket>(*std::move(tls));
}

size_t TlsClient::cached_sessions() const {
  absl::MutexLock lock(&state_->mu);
  return state_->sessions.size();
}

}  // namespace islet
