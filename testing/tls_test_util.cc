#include "testing/tls_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace islet {
namespace {

int ClientIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::string ErrorReason() {
  const uint32_t e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no BoringSSL error";
  const char* reason = ERR_reason_error_string(e);
  return reason != nullptr ? reason : absl::StrCat("error ", e);
}

}  // namespace

// ---- TestTlsClient ----

absl::StatusOr<std::unique_ptr<TestTlsClient>> TestTlsClient::Connect(uint16_t port,
                                                                     absl::Duration io_timeout) {
  std::unique_ptr<TestTlsClient> client(new TestTlsClient());
  client->fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client->fd_) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const timeval tv = absl::ToTimeval(io_timeout);
  ::setsockopt(client->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(client->fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  ::setsockopt(client->fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(client->fd(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return absl::UnavailableError(absl::StrCat("connect: ", std::strerror(errno)));
  }
  return client;
}

TestTlsClient::~TestTlsClient() = default;

absl::Status TestTlsClient::WritePlain(absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::AbortedError(absl::StrCat("write: ", std::strerror(errno)));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TestTlsClient::ReadPlainLine() {
  std::string line;
  for (;;) {
    char c;
    const ssize_t n = ::recv(fd(), &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::DeadlineExceededError(absl::StrCat("read: ", std::strerror(errno)));
    if (n == 0) return absl::OutOfRangeError(absl::StrCat("read: EOF after \"", line, "\""));
    line.push_back(c);
    if (c == '\n') return line;
  }
}

int TestTlsClient::NewSessionCallback(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TestTlsClient*>(SSL_get_ex_data(ssl, ClientIndex()));
  if (self == nullptr) return 0;
  self->latest_session_.reset(session);  // takes the reference
  return 1;
}

absl::Status TestTlsClient::StartTls(const TlsClientOptions& options) {
  ERR_clear_error();
  ctx_.reset(SSL_CTX_new(TLS_method()));
  if (!ctx_) return absl::InternalError("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx_.get(), options.min_version);
  SSL_CTX_set_max_proto_version(ctx_.get(), options.max_version);
  if (options.max_version < TLS1_2_VERSION) {
    // Old versions need old (CBC) suites offered; BoringSSL's defaults include them.
    SSL_CTX_set_cipher_list(ctx_.get(), "ALL");
  }
  if (!options.session_tickets) SSL_CTX_set_options(ctx_.get(), SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx_.get(), &TestTlsClient::NewSessionCallback);
  if (!options.ca_pem.empty()) {
    bssl::UniquePtr<BIO> bio(
        BIO_new_mem_buf(options.ca_pem.data(), static_cast<int>(options.ca_pem.size())));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx_.get());
    for (;;) {
      bssl::UniquePtr<X509> ca(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
      if (!ca) break;
      X509_STORE_add_cert(store, ca.get());
    }
    ERR_clear_error();
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (!options.cert_pem.empty()) {
    bssl::UniquePtr<BIO> cert_bio(
        BIO_new_mem_buf(options.cert_pem.data(), static_cast<int>(options.cert_pem.size())));
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    bssl::UniquePtr<BIO> key_bio(
        BIO_new_mem_buf(options.key_pem.data(), static_cast<int>(options.key_pem.size())));
    bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (!cert || !key || !SSL_CTX_use_certificate(ctx_.get(), cert.get()) ||
        !SSL_CTX_use_PrivateKey(ctx_.get(), key.get())) {
      return absl::InvalidArgumentError(absl::StrCat("client certificate: ", ErrorReason()));
    }
  }
  ssl_.reset(SSL_new(ctx_.get()));
  if (!ssl_) return absl::InternalError("SSL_new");
  SSL_set_ex_data(ssl_.get(), ClientIndex(), this);
  if (!options.server_name.empty()) SSL_set_tlsext_host_name(ssl_.get(), options.server_name.c_str());
  if (!options.ca_pem.empty() && !options.verify_host.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
    in_addr ip;
    if (inet_pton(AF_INET, options.verify_host.c_str(), &ip) == 1) {
      X509_VERIFY_PARAM_set1_ip_asc(param, options.verify_host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, options.verify_host.data(), options.verify_host.size());
    }
  }
  if (!options.alpn.empty()) {
    std::string wire;
    for (const std::string& p : options.alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    // Note: SSL_set_alpn_protos returns 0 on success.
    SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const uint8_t*>(wire.data()), wire.size());
  }
  if (options.session != nullptr) SSL_set_session(ssl_.get(), options.session);
  if (options.hold_final_flight) {
    // Everything written after the server's first flight arrived waits in held_.
    hold_ = Hold::kAfterFirstRead;
    holding_bio_ = true;
    BIO* bio = NewHoldingBio();
    if (bio == nullptr) return absl::InternalError("BIO_new");
    SSL_set_bio(ssl_.get(), bio, bio);  // one reference, owned by the SSL
  } else if (!SSL_set_fd(ssl_.get(), fd())) {
    return absl::InternalError("SSL_set_fd");
  }
  const int result = SSL_connect(ssl_.get());
  if (result != 1) return SslError("handshake", result);
  return absl::OkStatus();
}

absl::Status TestTlsClient::SslError(const char* op, int result) {
  const int error = SSL_get_error(ssl_.get(), result);
  const int saved_errno = errno;
  std::string reason = ErrorReason();
  if (error == SSL_ERROR_SYSCALL) reason = absl::StrCat("syscall: ", std::strerror(saved_errno));
  if (error == SSL_ERROR_ZERO_RETURN) return absl::OutOfRangeError(absl::StrCat(op, ": close_notify"));
  if (error == SSL_ERROR_SYSCALL && result == 0) return absl::OutOfRangeError(absl::StrCat(op, ": eof"));
  return absl::AbortedError(absl::StrCat(op, ": ", reason, " (SSL_get_error ", error, ")"));
}

absl::Status TestTlsClient::Write(absl::string_view data) {
  while (!data.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size()));
    if (n <= 0) return SslError("write", n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TestTlsClient::ReadOnce(size_t n) {
  std::string out(n, '\0');
  ERR_clear_error();
  const int got = SSL_read(ssl_.get(), out.data(), static_cast<int>(n));
  if (got <= 0) return SslError("read", got);
  out.resize(static_cast<size_t>(got));
  return out;
}

absl::StatusOr<std::string> TestTlsClient::Read(size_t n) {
  std::string out;
  while (out.size() < n) {
    absl::StatusOr<std::string> got = ReadOnce(std::min<size_t>(n - out.size(), 1 << 16));
    if (!got.ok()) {
      return absl::Status(got.status().code(),
                          absl::StrCat(got.status().message(), " after ", out.size(), " of ", n,
                                       " bytes"));
    }
    out += *got;
  }
  return out;
}

absl::StatusOr<std::string> TestTlsClient::ReadToEnd() {
  std::string out;
  for (;;) {
    absl::StatusOr<std::string> got = ReadOnce(1 << 16);
    if (!got.ok()) {
      // Only a close_notify ends the stream cleanly; a bare EOF could be a truncation.
      if (absl::IsOutOfRange(got.status()) &&
          got.status().message().find("close_notify") != absl::string_view::npos) {
        return out;
      }
      return got.status();
    }
    out += *got;
  }
}

std::string TestTlsClient::PeerCertificateDer() const {
  bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(ssl_.get()));
  if (!cert) return "";
  uint8_t* der = nullptr;
  const int length = i2d_X509(cert.get(), &der);
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(std::max(length, 0)));
  OPENSSL_free(der);
  return out;
}

std::string TestTlsClient::PeerCommonName() const {
  bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(ssl_.get()));
  if (!cert) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof(cn));
  return cn;
}

std::string TestTlsClient::Alpn() const {
  const uint8_t* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_.get(), &data, &length);
  return std::string(reinterpret_cast<const char*>(data), length);
}

std::string TestTlsClient::Version() const { return SSL_get_version(ssl_.get()); }

std::string TestTlsClient::Cipher() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
  return cipher != nullptr ? SSL_CIPHER_standard_name(cipher) : "";
}

bool TestTlsClient::Resumed() const { return SSL_session_reused(ssl_.get()) == 1; }

bssl::UniquePtr<SSL_SESSION> TestTlsClient::LatestSession() const {
  if (!latest_session_) return nullptr;
  SSL_SESSION_up_ref(latest_session_.get());
  return bssl::UniquePtr<SSL_SESSION>(latest_session_.get());
}

BIO_METHOD* TestTlsClient::HoldingBioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(0, "test holding socket");
    BIO_meth_set_read(m, &TestTlsClient::HoldingBioRead);
    BIO_meth_set_write(m, &TestTlsClient::HoldingBioWrite);
    BIO_meth_set_ctrl(m, &TestTlsClient::HoldingBioCtrl);
    return m;
  }();
  return method;
}

BIO* TestTlsClient::NewHoldingBio() {
  BIO* bio = BIO_new(HoldingBioMethod());
  if (bio == nullptr) return nullptr;
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  return bio;
}

int TestTlsClient::HoldingBioRead(BIO* bio, char* out, int length) {
  auto* self = static_cast<TestTlsClient*>(BIO_get_data(bio));
  ssize_t n;
  do {
    n = ::recv(self->fd(), out, static_cast<size_t>(length), 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) self->read_any_ = true;
  return static_cast<int>(n);
}

int TestTlsClient::HoldingBioWrite(BIO* bio, const char* in, int length) {
  auto* self = static_cast<TestTlsClient*>(BIO_get_data(bio));
  if (self->hold_ == Hold::kYes || (self->hold_ == Hold::kAfterFirstRead && self->read_any_)) {
    self->held_.append(in, static_cast<size_t>(length));
    return length;
  }
  ssize_t n;
  do {
    n = ::send(self->fd(), in, static_cast<size_t>(length), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return static_cast<int>(n);
}

long TestTlsClient::HoldingBioCtrl(BIO* bio, int command, long larg, void* parg) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

void TestTlsClient::HoldOutput() {
  if (!holding_bio_) {
    SSL_set0_wbio(ssl_.get(), NewHoldingBio());  // the read side keeps the socket BIO
    holding_bio_ = true;
  }
  hold_ = Hold::kYes;
}

absl::StatusOr<size_t> TestTlsClient::ReleaseOutput() {
  const std::string held = std::move(held_);
  held_.clear();
  hold_ = Hold::kNo;
  if (absl::Status s = WritePlain(held); !s.ok()) return s;
  return held.size();
}

absl::Status TestTlsClient::ShutdownTls() {
  ERR_clear_error();
  const int result = SSL_shutdown(ssl_.get());
  if (result < 0) return SslError("shutdown", result);
  return absl::OkStatus();
}

// ---- AcceptWithin ----

absl::StatusOr<std::unique_ptr<Socket>> AcceptWithin(Listener& listener, absl::Duration timeout) {
  absl::Notification accepted;
  bool timed_out = false;
  std::thread watchdog([&] {
    if (!accepted.WaitForNotificationWithTimeout(timeout)) {
      timed_out = true;
      listener.Close();
    }
  });
  absl::StatusOr<std::unique_ptr<Socket>> socket = listener.Accept();
  accepted.Notify();
  watchdog.join();
  if (timed_out && !socket.ok()) {
    return absl::DeadlineExceededError("accept: no connection in time (listener closed)");
  }
  return socket;
}

// ---- The server side ----

TlsOptions OptionsFor(const TestCertificate& cert) {
  TlsOptions options;
  options.credentials = TlsCredentials::FromPem(cert.chain_pem(), cert.key_pem);
  return options;
}

absl::Status TlsListenerTest::Listen(TlsOptions options) {
  absl::StatusOr<std::shared_ptr<TlsTransport>> transport =
      TlsTransport::Create(std::move(options));
  if (!transport.ok()) return transport.status();
  transport_ = *transport;
  ListenOptions listen;
  listen.address = "127.0.0.1";
  absl::StatusOr<std::unique_ptr<Listener>> listener = transport_->Listen(0, listen);
  if (!listener.ok()) return listener.status();
  listener_ = *std::move(listener);
  absl::StatusOr<SocketInfo> info = listener_->LocalInfo();
  if (!info.ok()) return info.status();
  port_ = info->port;
  return absl::OkStatus();
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

}  // namespace islet
