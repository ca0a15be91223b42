// TlsSocket's BIO over the inner socket, and its read-ahead (see tls/tls_socket.h):
// the one path by which BoringSSL's ciphertext reaches the wire and comes back. The rest
// of TlsSocket is in tls_socket.cc.
#include "tls/tls_socket.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/types/span.h"
#include "transport/errors.h"

namespace islet {
namespace {

// How much the BIO asks the inner socket for at once: a whole record of the largest
// size (16 KiB of plaintext, up to 256 bytes of TLS 1.3 expansion, its 5-byte header)
// and the header of the next, so a stream of full records costs one recv each.
constexpr size_t kReadAheadSize = 17 * 1024;

// The buffer the BIO reads ahead into: per thread, and lent to one socket for the
// length of one call into BoringSSL (TlsSocket::SslCall), which then moves whatever is
// left to the socket's own buffer. So it holds bytes only inside that call, and an idle
// connection holds none of it. Constant-initialized: no guard on the hot path.
struct ReadAheadScratch {
  const void* owner = nullptr;  // the TlsSocket whose bytes [begin, end) are
  size_t begin = 0;
  size_t end = 0;
  char data[kReadAheadSize] = {};  // zero: .tbss, nothing to copy per thread
};

ReadAheadScratch& Scratch() {
  constinit thread_local ReadAheadScratch scratch;
  return scratch;
}

}  // namespace

// ---- RecordTracker ----

void TlsSocket::RecordTracker::Feed(const uint8_t* data, size_t length) {
  while (length > 0) {
    if (body_left_ > 0) {
      const size_t n = std::min<size_t>(body_left_, length);
      body_left_ = static_cast<uint16_t>(body_left_ - n);
      data += n;
      length -= n;
      continue;
    }
    const size_t n = std::min(sizeof(header_) - header_have_, length);
    std::memcpy(header_ + header_have_, data, n);
    header_have_ = static_cast<uint8_t>(header_have_ + n);
    data += n;
    length -= n;
    if (header_have_ == sizeof(header_)) {
      body_left_ = static_cast<uint16_t>((header_[3] << 8) | header_[4]);
      header_have_ = 0;
    }
  }
}

TlsSocket::SslCall::SslCall(TlsSocket* socket)
    : socket_(socket), outer_(std::exchange(socket->in_ssl_call_, true)) {}

TlsSocket::SslCall::~SslCall() {
  socket_->in_ssl_call_ = outer_;
  if (!outer_) socket_->KeepReadAhead();
}

size_t TlsSocket::TakeReadAhead(char* out, size_t length) {
  if (read_ahead_ != nullptr) {
    const size_t n = std::min<size_t>(length, read_ahead_end_ - read_ahead_begin_);
    std::memcpy(out, read_ahead_.get() + read_ahead_begin_, n);
    read_ahead_begin_ += static_cast<uint32_t>(n);
    if (read_ahead_begin_ == read_ahead_end_) {
      read_ahead_.reset();
      read_ahead_begin_ = read_ahead_end_ = 0;
    }
    return n;
  }
  ReadAheadScratch& scratch = Scratch();
  if (scratch.owner != this) return 0;
  const size_t n = std::min(length, scratch.end - scratch.begin);
  std::memcpy(out, scratch.data + scratch.begin, n);
  scratch.begin += n;
  if (scratch.begin == scratch.end) {
    scratch.owner = nullptr;
    scratch.begin = scratch.end = 0;
  }
  return n;
}

void TlsSocket::KeepReadAhead() {
  ReadAheadScratch& scratch = Scratch();
  if (scratch.owner != this) return;
  // The scratch only fills once read_ahead_ is drained, so read_ahead_ is empty here.
  const size_t n = scratch.end - scratch.begin;
  if (n > 0) {
    read_ahead_ = std::make_unique_for_overwrite<char[]>(n);
    std::memcpy(read_ahead_.get(), scratch.data + scratch.begin, n);
    read_ahead_begin_ = 0;
    read_ahead_end_ = static_cast<uint32_t>(n);
  }
  scratch.owner = nullptr;
  scratch.begin = scratch.end = 0;
}

// ---- The BIO over the inner socket ----

BIO_METHOD* TlsSocket::BioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(0, "islet socket");
    BIO_meth_set_read(m, &TlsSocket::BioRead);
    BIO_meth_set_write(m, &TlsSocket::BioWrite);
    BIO_meth_set_ctrl(m, &TlsSocket::BioCtrl);
    return m;
  }();
  return method;
}

int TlsSocket::BioRead(BIO* bio, char* out, int length) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSocket*>(BIO_get_data(bio));
  if (length <= 0) return 0;
  // Bytes read ahead come first: an EOF or error the inner socket has for us comes
  // after them.
  if (const size_t n = self->TakeReadAhead(out, static_cast<size_t>(length)); n > 0) {
    return static_cast<int>(n);
  }
  // Read ahead into the thread's scratch when this is a call SslCall tracks (the
  // scratch is then free: whoever used it last emptied it when its call ended);
  // otherwise, say BoringSSL driven through ssl() by the owner, read just what is asked.
  ReadAheadScratch& scratch = Scratch();
  const bool ahead = self->in_ssl_call_ && scratch.owner == nullptr;
  char* const into = ahead ? scratch.data : out;
  // Claimed before the inner read: an inner socket that is itself TLS (TLS within TLS)
  // must not read ahead into the buffer it is decrypting into.
  if (ahead) scratch.owner = self;
  absl::StatusOr<size_t> got = self->inner_->ReadSome(
      absl::MakeSpan(into, ahead ? kReadAheadSize : static_cast<size_t>(length)));
  if (ahead && !got.ok()) scratch.owner = nullptr;
  if (got.ok()) {
    self->received_.Feed(reinterpret_cast<const uint8_t*>(into), *got);
    if (!ahead) return static_cast<int>(*got);
    scratch.begin = 0;
    scratch.end = *got;
    return static_cast<int>(self->TakeReadAhead(out, static_cast<size_t>(length)));
  }
  if (IsWouldBlock(got.status())) {
    BIO_set_retry_read(bio);
    return -1;
  }
  if (IsPeerClosed(got.status())) {
    self->transport_eof_ = true;
    return 0;
  }
  if (self->transport_error_.ok()) self->transport_error_ = got.status();
  return -1;
}

int TlsSocket::BioWrite(BIO* bio, const char* in, int length) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsSocket*>(BIO_get_data(bio));
  if (length <= 0) return 0;
  const absl::string_view data(in, static_cast<size_t>(length));
  absl::StatusOr<size_t> wrote = self->inner_->WriteSome(absl::MakeConstSpan(&data, 1));
  if (wrote.ok()) return static_cast<int>(*wrote);
  if (IsWouldBlock(wrote.status())) {
    BIO_set_retry_write(bio);
    return -1;
  }
  if (self->transport_error_.ok()) self->transport_error_ = wrote.status();
  return -1;
}

long TlsSocket::BioCtrl(BIO* bio, int command, long larg, void* parg) {
  // Writes go straight to the inner socket, so there is nothing to flush.
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

}  // namespace islet
