#include "tls/tls_socket.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "tls/ssl_errors.h"
#include "tls/tls_context.h"
#include "transport/buffer_views.h"
#include "transport/errors.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

// The largest plaintext one TLS record carries.
constexpr size_t kMaxRecord = SSL3_RT_MAX_PLAIN_LENGTH;
// How much of a file SendfileSome reads at once, and at most per call (so one call
// costs bounded time even when the peer drains as fast as we write).
constexpr size_t kSendfileChunk = 64 * 1024;
constexpr size_t kMaxSendfilePerCall = 16 * kSendfileChunk;
// Shutdown waits at most this long for room to send close_notify when no send_timeout
// is set: a peer that will not take 30 bytes is gone.
constexpr absl::Duration kMaxShutdownWait = absl::Seconds(5);

// The ex_data slot where an SSL keeps its TlsSocket.
int SocketIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Scratch space for gathering small buffers into one record and for file chunks: per
// thread, so an idle connection holds none of it.
char* GatherBuffer() {
  thread_local char buffer[kMaxRecord];
  return buffer;
}
char* FileBuffer() {
  thread_local char buffer[kSendfileChunk];
  return buffer;
}

// True when the byte stream `views` holds starts with `prefix`.
bool StreamStartsWith(absl::Span<const absl::string_view> views, absl::string_view prefix) {
  for (absl::string_view piece : views) {
    if (prefix.empty()) break;
    const size_t n = std::min(piece.size(), prefix.size());
    if (n == 0) continue;
    if (std::memcmp(piece.data(), prefix.data(), n) != 0) return false;
    prefix.remove_prefix(n);
  }
  return prefix.empty();
}

// The stream's first `n` bytes (n at most its total, and views.front() not empty):
// pointing into the caller's buffer when they lie in its first view, else copied to
// `scratch`.
absl::string_view StreamFront(absl::Span<const absl::string_view> views, size_t n,
                              char* scratch) {
  if (views.front().size() >= n) return views.front().substr(0, n);
  size_t have = 0;
  for (absl::string_view piece : views) {
    if (have == n) break;
    const size_t take = std::min(piece.size(), n - have);
    if (take == 0) continue;
    std::memcpy(scratch + have, piece.data(), take);
    have += take;
  }
  return absl::string_view(scratch, n);
}

absl::Status RetryMismatch(const char* op) {
  return absl::FailedPreconditionError(absl::StrCat(
      op, ": after a write that would block, the next write must start with the same "
          "bytes (TLS already encrypted them)"));
}

}  // namespace

// ---- Alerts ----

void TlsSocket::InfoCallback(const SSL* ssl, int type, int value) {
  if ((type & SSL_CB_ALERT) == 0) return;
  auto* self = static_cast<TlsSocket*>(SSL_get_ex_data(ssl, SocketIndex()));
  const int description = value & 0xff;
  if (self == nullptr || description == SSL_AD_CLOSE_NOTIFY) return;
  if ((type & SSL_CB_READ) != 0) self->alert_received_ = description;
  if ((type & SSL_CB_WRITE) != 0) self->alert_sent_ = description;
}

// ---- Life cycle ----

absl::StatusOr<std::unique_ptr<TlsSocket>> TlsSocket::Create(
    std::unique_ptr<Socket> inner, std::shared_ptr<const tls_internal::TlsContext> context) {
  if (inner == nullptr) return absl::InvalidArgumentError("tls: no socket to wrap");
  if (inner->IsClosed()) return ClosedError("tls");
  bssl::UniquePtr<SSL> ssl = context->NewSsl();
  return Wrap(std::move(inner), std::move(ssl), std::move(context), /*client=*/false);
}

absl::StatusOr<std::unique_ptr<TlsSocket>> TlsSocket::CreateClient(
    std::unique_ptr<Socket> inner, bssl::UniquePtr<SSL> ssl, std::shared_ptr<const void> owner) {
  if (inner == nullptr) return absl::InvalidArgumentError("tls: no socket to wrap");
  if (inner->IsClosed()) return ClosedError("tls");
  return Wrap(std::move(inner), std::move(ssl), std::move(owner), /*client=*/true);
}

absl::StatusOr<std::unique_ptr<TlsSocket>> TlsSocket::Wrap(std::unique_ptr<Socket> inner,
                                                           bssl::UniquePtr<SSL> ssl,
                                                           std::shared_ptr<const void> owner,
                                                           bool client) {
  if (!ssl) {
    tls_internal::ConsumeSslErrorReason();
    return absl::ResourceExhaustedError("tls: out of memory for a connection");
  }
  std::unique_ptr<TlsSocket> socket(
      new TlsSocket(std::move(inner), std::move(owner), std::move(ssl)));
  BIO* bio = BIO_new(BioMethod());
  if (bio == nullptr) {
    tls_internal::ConsumeSslErrorReason();
    socket->inner_->Close();
    socket->closed_ = true;
    return absl::ResourceExhaustedError("tls: out of memory for a connection");
  }
  BIO_set_data(bio, socket.get());
  BIO_set_init(bio, 1);
  SSL* s = socket->ssl_.get();
  SSL_set_bio(s, bio, bio);  // one reference, owned by the SSL
  SSL_set_ex_data(s, SocketIndex(), socket.get());
  SSL_set_info_callback(s, &TlsSocket::InfoCallback);
  if (client) {
    SSL_set_connect_state(s);
    socket->inner_connecting_ = true;
  } else {
    SSL_set_accept_state(s);
  }
  return socket;
}

TlsSocket::TlsSocket(std::unique_ptr<Socket> inner, std::shared_ptr<const void> owner,
                     bssl::UniquePtr<SSL> ssl)
    : inner_(std::move(inner)), owner_(std::move(owner)), ssl_(std::move(ssl)) {}

TlsSocket::~TlsSocket() { Close(); }

void TlsSocket::Close() {
  if (closed_) return;
  closed_ = true;
  if (ssl_ != nullptr && !SSL_in_init(ssl_.get()) && handshake_failure_.ok() &&
      !close_notify_sent_ && pending_write_.empty() && transport_error_.ok()) {
    // Best effort and never waiting: the alert is tiny and the send buffer usually
    // has room. It tells the peer the data ended here rather than was cut, and answers
    // a peer's own close_notify, as RFC 8446 (6.1) and RFC 5246 (7.2.1) ask. (nginx
    // skips the answer to save a write; a client waiting for it would see a truncation.)
    SslCall call(this);
    ERR_clear_error();
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }
  inner_->Close();
  ssl_.reset();  // frees the TLS state and its buffers now, not when the owner lets go
  std::string().swap(pending_write_);
  read_ahead_.reset();
  read_ahead_begin_ = read_ahead_end_ = 0;
}

// ---- Errors ----

absl::Status TlsSocket::Failure(int result, const char* op) {
  const int error = SSL_get_error(ssl_.get(), result);
  switch (error) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      return WouldBlockError(op);
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return absl::OutOfRangeError(
          absl::StrCat(op, ": peer closed the connection (close_notify)"));
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (!transport_error_.ok()) {
        return absl::Status(transport_error_.code(),
                            absl::StrCat(op, ": ", transport_error_.message()));
      }
      if (transport_eof_) {
        if (SSL_in_init(ssl_.get())) {
          return absl::OutOfRangeError(
              absl::StrCat(op, ": peer closed the connection during the TLS handshake"));
        }
        if (received_.AtBoundary()) {
          return absl::OutOfRangeError(
              absl::StrCat(op, ": peer closed the connection (without close_notify)"));
        }
        return absl::AbortedError(absl::StrCat(
            op, ": connection truncated: the peer closed it in the middle of a TLS record"));
      }
      return absl::AbortedError(absl::StrCat(op, ": the TLS connection failed"));
    case SSL_ERROR_SSL:
      return ProtocolError(op);
    default:
      tls_internal::ConsumeSslErrorReason();
      return absl::InternalError(
          absl::StrCat(op, ": unexpected BoringSSL result (SSL_get_error ", error, ")"));
  }
}

absl::Status TlsSocket::ProtocolError(const char* op) {
  std::string reason = tls_internal::ConsumeSslErrorReason();
  if (reason.empty()) reason = "UNKNOWN";
  std::string message;
  if (alert_received_ >= 0) {
    message = absl::StrCat(op, ": TLS alert: ", SSL_alert_desc_string_long(alert_received_),
                           " (received; ", reason, ")");
  } else if (alert_sent_ >= 0) {
    message = absl::StrCat(op, ": TLS alert: ", SSL_alert_desc_string_long(alert_sent_),
                           " (sent; ", reason, ")");
  } else {
    message = absl::StrCat(op, ": TLS error: ", tls_internal::HumanizeReason(reason), " (",
                           reason, ")");
  }
  const bool verify_failed = reason == "CERTIFICATE_VERIFY_FAILED";
  if (verify_failed) {
    absl::StrAppend(&message, ": ",
                    X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get())));
  }
  if (verify_failed || reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE") {
    return absl::UnauthenticatedError(message);
  }
  return absl::AbortedError(message);
}

// ---- Handshake and reads ----

absl::StatusOr<IoInterest> TlsSocket::HandshakeStep() {
  if (closed_) return ClosedError("handshake");
  if (!handshake_failure_.ok()) return handshake_failure_;
  if (!SSL_in_init(ssl_.get())) return IoInterest::kNone;
  if (inner_connecting_) {
    // An outbound socket: its TCP connect comes first.
    absl::StatusOr<IoInterest> connect = inner_->HandshakeStep();
    if (!connect.ok()) {
      handshake_failure_ = connect.status();
      return handshake_failure_;
    }
    if (*connect != IoInterest::kNone) return *connect;
    inner_connecting_ = false;
  }
  SslCall call(this);
  ERR_clear_error();
  const int result = SSL_do_handshake(ssl_.get());
  if (result == 1) {
    ERR_clear_error();
    return IoInterest::kNone;
  }
  switch (SSL_get_error(ssl_.get(), result)) {
    case SSL_ERROR_WANT_READ:
      ERR_clear_error();
      return IoInterest::kRead;
    case SSL_ERROR_WANT_WRITE:
      ERR_clear_error();
      return IoInterest::kWrite;
    default:
      handshake_failure_ = Failure(result, "handshake");
      return handshake_failure_;
  }
}

absl::StatusOr<size_t> TlsSocket::ReadSomeFromTransport(absl::Span<char> buf) {
  if (closed_) return ClosedError("recv");
  if (SSL_in_init(ssl_.get())) {
    return absl::FailedPreconditionError("recv: the TLS handshake is not complete");
  }
  if (buf.empty()) return 0;
  SslCall call(this);
  ERR_clear_error();
  const int got =
      SSL_read(ssl_.get(), buf.data(), static_cast<int>(std::min<size_t>(buf.size(), INT_MAX)));
  if (got > 0) return static_cast<size_t>(got);
  return Failure(got, "recv");
}

bool TlsSocket::TransportHasBufferedInput() const {
  if (closed_) return false;
  // Read-ahead ciphertext counts even when it holds only part of a record: reading it
  // then costs a recv that finds nothing more, where not counting whole records would
  // leave them unread with the descriptor silent.
  return SSL_pending(ssl_.get()) > 0 || read_ahead_begin_ < read_ahead_end_ ||
         inner_->HasBufferedInput();
}

// ---- Writes ----

absl::Status TlsSocket::CheckWritable(const char* op) const {
  if (closed_) return ClosedError(op);
  if (SSL_in_init(ssl_.get())) {
    return absl::FailedPreconditionError(absl::StrCat(op, ": the TLS handshake is not complete"));
  }
  if (close_notify_sent_) {
    return absl::FailedPreconditionError(
        absl::StrCat(op, ": the write side is shut down (close_notify sent)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> TlsSocket::WriteRecord(const char* data, size_t length, const char* op) {
  SslCall call(this);  // SSL_write does not read once the handshake is done: a safeguard
  ERR_clear_error();
  const int wrote = SSL_write(ssl_.get(), data, static_cast<int>(length));
  if (wrote > 0) return static_cast<size_t>(wrote);
  if (SSL_get_error(ssl_.get(), wrote) == SSL_ERROR_WANT_WRITE) {
    // BoringSSL has sealed the record and holds part of it: from now on these exact
    // bytes are on their way, and the retry must carry them.
    pending_write_.assign(data, length);
    ERR_clear_error();
    return WouldBlockError(op);
  }
  return Failure(wrote, op);
}

absl::Status TlsSocket::FlushPending(const char* op) {
  SslCall call(this);
  ERR_clear_error();
  const int wrote =
      SSL_write(ssl_.get(), pending_write_.data(), static_cast<int>(pending_write_.size()));
  if (wrote > 0) {
    std::string().swap(pending_write_);
    return absl::OkStatus();
  }
  return Failure(wrote, op);
}

absl::StatusOr<size_t> TlsSocket::WriteSome(absl::Span<const absl::string_view> buffers) {
  if (absl::Status s = CheckWritable("send"); !s.ok()) return s;
  absl::InlinedVector<absl::string_view, 16> views(buffers.begin(), buffers.end());
  absl::Span<absl::string_view> rest = ConsumeBytes(absl::MakeSpan(views), 0);
  size_t remaining = 0;
  for (absl::string_view b : rest) remaining += b.size();
  if (remaining == 0) return 0;
  size_t written = 0;
  if (!pending_write_.empty()) {
    const size_t n = pending_write_.size();
    if (remaining < n || !StreamStartsWith(rest, pending_write_)) {
      return RetryMismatch("send");
    }
    if (absl::Status s = FlushPending("send"); !s.ok()) return s;
    rest = ConsumeBytes(rest, n);
    remaining -= n;
    written = n;
  }
  char* scratch = GatherBuffer();
  while (remaining > 0) {
    const absl::string_view record = StreamFront(rest, std::min(remaining, kMaxRecord), scratch);
    absl::StatusOr<size_t> wrote = WriteRecord(record.data(), record.size(), "send");
    if (!wrote.ok()) {
      // What went out is reported now; a blocked record stays pending, an error comes
      // back on the next call.
      if (written > 0) return written;
      return wrote.status();
    }
    rest = ConsumeBytes(rest, *wrote);
    remaining -= *wrote;
    written += *wrote;
  }
  return written;
}

absl::StatusOr<size_t> TlsSocket::SendfileSome(int file_fd, uint64_t offset, size_t length) {
  if (absl::Status s = CheckWritable("sendfile"); !s.ok()) return s;
  if (length == 0) return 0;
  length = std::min(length, kMaxSendfilePerCall);
  char* chunk = FileBuffer();
  auto read_at = [&](uint64_t at, size_t n) -> absl::StatusOr<size_t> {
    for (;;) {
      const ssize_t got = ::pread(file_fd, chunk, n, static_cast<off_t>(at));
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return PosixError(errno, "sendfile: pread");
    }
  };
  size_t written = 0;
  if (!pending_write_.empty()) {
    // The pending record holds the file's bytes at `offset`: check, then retry it.
    const size_t n = pending_write_.size();
    if (length < n) return RetryMismatch("sendfile");
    absl::StatusOr<size_t> got = read_at(offset, n);
    if (!got.ok()) return got.status();
    if (*got != n || std::memcmp(chunk, pending_write_.data(), n) != 0) {
      return RetryMismatch("sendfile");
    }
    if (absl::Status s = FlushPending("sendfile"); !s.ok()) return s;
    written = n;
  }
  while (written < length) {
    absl::StatusOr<size_t> got = read_at(offset + written, std::min(length - written, kSendfileChunk));
    if (!got.ok()) {
      if (written > 0) return written;
      return got.status();
    }
    if (*got == 0) {
      if (written > 0) return written;
      return absl::OutOfRangeError("sendfile: the file ended early");
    }
    size_t used = 0;
    while (used < *got) {
      absl::StatusOr<size_t> wrote =
          WriteRecord(chunk + used, std::min(*got - used, kMaxRecord), "sendfile");
      if (!wrote.ok()) {
        if (written + used > 0) return written + used;
        return wrote.status();
      }
      used += *wrote;
    }
    written += used;
  }
  return written;
}

// ---- Shutdown ----

absl::Status TlsSocket::Shutdown(ShutdownWay way) {
  const absl::Duration deadline =
      MonotonicNow() + std::min(send_timeout(), kMaxShutdownWait);
  for (;;) {
    absl::StatusOr<IoInterest> step = ShutdownStep(way);
    if (!step.ok()) return step.status();
    if (*step == IoInterest::kNone) return absl::OkStatus();
    absl::Status ready = WaitReady(*step, deadline, "shutdown");
    if (!ready.ok()) return ready;
  }
}

absl::StatusOr<IoInterest> TlsSocket::ShutdownStep(ShutdownWay way) {
  if (closed_) return ClosedError("shutdown");
  if (way != ShutdownWay::kRead && !close_notify_sent_ && !SSL_in_init(ssl_.get()) &&
      handshake_failure_.ok()) {
    // Records still pending from an earlier write go first, then close_notify.
    for (;;) {
      absl::Status step = absl::OkStatus();
      if (!pending_write_.empty()) {
        step = FlushPending("shutdown");
      } else {
        SslCall call(this);
        ERR_clear_error();
        const int result = SSL_shutdown(ssl_.get());
        if (result >= 0) {
          ERR_clear_error();
          close_notify_sent_ = true;
          break;
        }
        step = Failure(result, "shutdown");
      }
      if (step.ok()) continue;
      if (IsWouldBlock(step)) return IoInterest::kWrite;
      return step;
    }
  }
  // The inner socket's step: it may first have to send what it holds (close_notify).
  return inner_->ShutdownStep(way);
}

// ---- Information ----

int TlsSocket::fd() const { return inner_->fd(); }

absl::StatusOr<SocketInfo> TlsSocket::LocalInfo() const {
  if (closed_) return ClosedError("local_info");
  return inner_->LocalInfo();
}

absl::StatusOr<SocketInfo> TlsSocket::PeerInfo() const {
  if (closed_) return ClosedError("peer_info");
  absl::StatusOr<SocketInfo> info = inner_->PeerInfo();
  if (!info.ok()) return info;
  info->peer_certificate.reset();
  if (!SSL_in_init(ssl_.get()) && SSL_get_verify_result(ssl_.get()) == X509_V_OK) {
    bssl::UniquePtr<X509> cert(SSL_get_peer_certificate(ssl_.get()));
    if (cert != nullptr) {
      uint8_t* der = nullptr;
      const int length = i2d_X509(cert.get(), &der);
      if (length > 0) {
        info->peer_certificate.emplace(reinterpret_cast<const char*>(der),
                                       static_cast<size_t>(length));
      }
      OPENSSL_free(der);
      ERR_clear_error();
    }
  }
  return info;
}

absl::StatusOr<SocketStats> TlsSocket::GetStat() const {
  if (closed_) return ClosedError("getstat");
  return inner_->GetStat();
}

absl::StatusOr<std::string> TlsSocket::NegotiatedProtocol() const {
  if (closed_) return ClosedError("negotiated_protocol");
  const uint8_t* data = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(ssl_.get(), &data, &length);
  if (length == 0) return absl::NotFoundError("negotiated_protocol: protocol not negotiated");
  return std::string(reinterpret_cast<const char*>(data), length);
}

absl::StatusOr<ConnectionInformation> TlsSocket::GetConnectionInformation() const {
  if (closed_) return ClosedError("connection_information");
  if (SSL_in_init(ssl_.get())) {
    return absl::FailedPreconditionError(
        "connection_information: the TLS handshake is not complete");
  }
  ConnectionInformation info;
  info.protocol_version = SSL_get_version(ssl_.get());
  if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get()); cipher != nullptr) {
    info.cipher = SSL_CIPHER_standard_name(cipher);
  }
  const uint8_t* alpn = nullptr;
  unsigned alpn_length = 0;
  SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_length);
  info.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_length);
  if (const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name)) {
    info.server_name = name;
  }
  info.session_resumed = SSL_session_reused(ssl_.get()) == 1;
  return info;
}

// ---- Options ----

absl::Status TlsSocket::ApplyOption(const SocketOption& option) {
  if (closed_) return ClosedError("setopts");
  return inner_->SetOptions({option});
}

absl::StatusOr<SocketOption> TlsSocket::ReadOption(SocketOptionName name) const {
  if (closed_) return ClosedError("getopts");
  absl::StatusOr<std::vector<SocketOption>> values = inner_->GetOptions({name});
  if (!values.ok()) return values.status();
  return values->front();
}

}  // namespace islet
