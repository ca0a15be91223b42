// TlsSocket: one side of a TLS connection (BoringSSL) over another Socket, the "inner"
// one. The server side over the TCP socket TlsTransport's listener accepted, or whatever
// plain socket TlsTransport::Upgrade took over for STARTTLS; the client side over an
// outbound TCP socket whose connect may still be under way (TlsClient, tls_client.h),
// which HandshakeStep finishes before the TLS handshake. Made only by TlsTransport and
// TlsClient.
//
// BoringSSL talks to the inner socket through a custom BIO that calls the inner
// socket's own non-blocking primitives (ReadSome / WriteSome), not its descriptor. So
// TLS runs over any transport, bytes the inner socket had already buffered (a Recv
// that timed out with part of the ClientHello) reach the handshake, and the inner
// socket's counters see exactly the ciphertext: GetStat is bytes on the wire.
//
// The BIO reads ahead. BoringSSL asks for each record in two reads (its 5-byte header,
// then its body); the BIO instead takes whatever the inner socket has, up to 17 KiB,
// into a per-thread scratch buffer, and serves BoringSSL's reads from it: one recv per
// record or less, not two. Bytes still unread when the BoringSSL call returns (the next
// records of a burst) move to a heap buffer of the connection, sized to them and freed
// once drained, so an idle connection holds none. They count as buffered input
// (HasBufferedInput), and an EOF or error from the inner socket is seen only after them.
//
// Non-blocking contract, beyond transport/transport.h:
//  * HandshakeStep must complete (kNone) before ReadSome, WriteSome and SendfileSome,
//    which fail with FailedPrecondition until then.
//  * WriteSome / SendfileSome encrypt one TLS record (at most 16 KiB) at a time and
//    return the plaintext bytes whose records reached the inner socket. When the inner
//    socket would block in the middle of a record, that record is already encrypted:
//    the socket keeps a copy of its plaintext and the call returns the count before
//    it (or Unavailable). The caller's next write must start with those same bytes, as
//    any caller that keeps its unsent data does (Socket::Send, the server's queue);
//    other bytes fail with FailedPrecondition rather than corrupt the stream.
//  * Errors: Unavailable (would block), OutOfRange (close_notify, or a TCP EOF at a
//    record boundary), Aborted (a TLS protocol failure or alert, or a connection cut
//    in the middle of a record), Unauthenticated (the client certificate was missing
//    or did not verify), and the inner socket's own codes for its I/O errors.
//    Messages name the call and the TLS cause:
//      "handshake: TLS alert: protocol version (sent; UNSUPPORTED_PROTOCOL)"
//      "handshake: TLS alert: unknown CA (received; TLSV1_ALERT_UNKNOWN_CA)"
//      "handshake: TLS alert: certificate required (sent; PEER_DID_NOT_RETURN_A_CERTIFICATE)"
//      "handshake: TLS error: http request (HTTP_REQUEST)"
//      "recv: TLS alert: no renegotiation (sent; NO_RENEGOTIATION)"
#ifndef ISLET_TLS_TLS_SOCKET_H_
#define ISLET_TLS_TLS_SOCKET_H_

#include <openssl/base.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/transport.h"

namespace islet {

namespace tls_internal {
class TlsContext;
}  // namespace tls_internal

class TlsSocket : public Socket {
 public:
  // Wraps the connected `inner` socket as the server side of a TLS connection whose
  // handshake has not started. InvalidArgument for a null socket, FailedPrecondition
  // for a closed one (which is then dropped).
  static absl::StatusOr<std::unique_ptr<TlsSocket>> Create(
      std::unique_ptr<Socket> inner, std::shared_ptr<const tls_internal::TlsContext> context);

  // Wraps `inner` (connected, or with a connect under way that its HandshakeStep
  // finishes) as the client side, with `ssl` already configured for the server it
  // verifies. `owner` keeps alive what `ssl` refers to (its SSL_CTX and callbacks'
  // state). Errors as for Create.
  static absl::StatusOr<std::unique_ptr<TlsSocket>> CreateClient(
      std::unique_ptr<Socket> inner, bssl::UniquePtr<SSL> ssl, std::shared_ptr<const void> owner);

  // Closes (sending close_notify when it can without waiting).
  ~TlsSocket() override;

  // kRead shuts the inner socket's read side. kWrite and kReadWrite first send
  // close_notify (after a record still pending from a blocked write; waiting for the
  // peer to take them at most the send_timeout option, capped at 5 seconds), then shut
  // the inner socket down that way. Writes fail afterwards.
  // Sends close_notify first (kWrite, kReadWrite), waiting at most min(send timeout,
  // 5 s) for room; ShutdownStep never waits.
  absl::Status Shutdown(ShutdownWay way) override;
  absl::StatusOr<IoInterest> ShutdownStep(ShutdownWay way) override;
  // Sends close_notify if that can be done without waiting, then closes the inner
  // socket and frees the TLS state. Idempotent. A peer's close_notify is answered with
  // ours, as TLS 1.2 and 1.3 require.
  void Close() override;
  bool IsClosed() const override { return closed_; }

  absl::StatusOr<SocketInfo> LocalInfo() const override;
  // The inner socket's peer, with peer_certificate set to the client's certificate
  // (DER) when one was sent and verified.
  absl::StatusOr<SocketInfo> PeerInfo() const override;
  // The inner socket's counters: ciphertext, handshake included.
  absl::StatusOr<SocketStats> GetStat() const override;
  // The ALPN protocol; NotFound("negotiated_protocol: protocol not negotiated").
  absl::StatusOr<std::string> NegotiatedProtocol() const override;
  bool Secure() const override { return true; }
  // FailedPrecondition until the handshake is complete.
  absl::StatusOr<ConnectionInformation> GetConnectionInformation() const override;
  // The inner socket's: TLS upgraded (STARTTLS) on a PROXY protocol socket keeps it.
  const ProxyHeader* proxy_header() const override { return inner_->proxy_header(); }

  int fd() const override;
  // The inner socket's: BoringSSL reads through it.
  bool AttachInput(InputChannel* input) override { return inner_->AttachInput(input); }
  bool AttachOutput(OutputChannel* output) override { return inner_->AttachOutput(output); }
  bool HasPendingOutput() const override { return inner_->HasPendingOutput(); }
  absl::Status WaitWritable(absl::Duration deadline, absl::string_view op) override {
    return inner_->WaitWritable(deadline, op);
  }
  absl::StatusOr<IoInterest> HandshakeStep() override;
  absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) override;
  // Reads the file in chunks of 64 KiB and writes them as records until the inner
  // socket would block, 1 MiB at most per call; never holds more than one chunk.
  absl::StatusOr<size_t> SendfileSome(int file_fd, uint64_t offset, size_t length) override;

  // The BoringSSL connection, for what this API does not cover (keying-material
  // exporters, channel bindings). Owned by the socket; null once closed.
  SSL* ssl() const { return ssl_.get(); }

 protected:
  // SSL_read: plaintext, or Unavailable until a whole record has arrived.
  absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) override;
  // Decrypted bytes BoringSSL holds (SSL_pending), ciphertext the BIO read ahead, or
  // bytes the inner socket kept.
  bool TransportHasBufferedInput() const override;
  // Delegated to the inner socket.
  absl::Status ApplyOption(const SocketOption& option) override;
  absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const override;

 private:
  // Follows the TLS record framing of the received byte stream, so an EOF can be told
  // apart: at a record boundary (an orderly close without close_notify) or inside a
  // record (truncation).
  class RecordTracker {
   public:
    void Feed(const uint8_t* data, size_t length);
    bool AtBoundary() const { return header_have_ == 0 && body_left_ == 0; }

   private:
    uint8_t header_[5] = {};
    uint8_t header_have_ = 0;
    uint16_t body_left_ = 0;  // a record's length field is 16 bits
  };

  // Marks a call into BoringSSL (RAII): while it runs, the BIO may read ahead into the
  // thread's scratch buffer, and when it ends, what is left there moves to
  // read_ahead_. Nests.
  class SslCall {
   public:
    explicit SslCall(TlsSocket* socket);
    ~SslCall();
    SslCall(const SslCall&) = delete;
    SslCall& operator=(const SslCall&) = delete;

   private:
    TlsSocket* const socket_;
    const bool outer_;
  };

  TlsSocket(std::unique_ptr<Socket> inner, std::shared_ptr<const void> owner,
            bssl::UniquePtr<SSL> ssl);
  // Attaches the BIO and callbacks; server or client state.
  static absl::StatusOr<std::unique_ptr<TlsSocket>> Wrap(std::unique_ptr<Socket> inner,
                                                         bssl::UniquePtr<SSL> ssl,
                                                         std::shared_ptr<const void> owner,
                                                         bool client);

  // The BIO's callbacks (tls_socket_bio.cc), and the info callback that records alerts.
  static BIO_METHOD* BioMethod();
  static int BioRead(BIO* bio, char* out, int length);
  static int BioWrite(BIO* bio, const char* in, int length);
  static long BioCtrl(BIO* bio, int command, long larg, void* parg);
  static void InfoCallback(const SSL* ssl, int type, int value);

  // Checks shared by the write paths: open, handshake done, write side not shut.
  absl::Status CheckWritable(const char* op) const;
  // One SSL_write of at most one record; on would-block the record becomes pending.
  absl::StatusOr<size_t> WriteRecord(const char* data, size_t length, const char* op);
  // Retries the pending record: OK once it is out (pending_write_ is then empty).
  absl::Status FlushPending(const char* op);
  // Serves up to `length` read-ahead bytes (read_ahead_, else this call's part of the
  // thread's scratch) into `out`; 0 when there are none.
  size_t TakeReadAhead(char* out, size_t length);
  // At the end of an SslCall: moves the bytes left in the thread's scratch buffer to
  // read_ahead_.
  void KeepReadAhead();
  // The Status for a failed SSL_* call that returned `result`.
  absl::Status Failure(int result, const char* op);
  absl::Status ProtocolError(const char* op);

  std::unique_ptr<Socket> inner_;
  // The TlsContext or TlsClient state ssl_ was made from; outlives ssl_.
  std::shared_ptr<const void> owner_;
  bssl::UniquePtr<SSL> ssl_;

  // The plaintext of the record SSL_write encrypted but could not hand to the inner
  // socket in full; its retry must carry the same bytes.
  std::string pending_write_;
  // Ciphertext read ahead from the inner socket that BoringSSL has not taken yet,
  // [read_ahead_begin_, read_ahead_end_); null when there is none.
  std::unique_ptr<char[]> read_ahead_;
  uint32_t read_ahead_begin_ = 0;
  uint32_t read_ahead_end_ = 0;
  // What the inner socket reported through the BIO: its first hard error.
  absl::Status transport_error_;
  RecordTracker received_;
  // The last fatal alerts sent and received (the alert description), -1 for none.
  int alert_sent_ = -1;
  int alert_received_ = -1;
  absl::Status handshake_failure_;
  bool transport_eof_ = false;  // the inner socket reported EOF through the BIO
  bool inner_connecting_ = false;  // client: the inner socket's connect is not finished
  bool in_ssl_call_ = false;    // an SslCall is running
  bool close_notify_sent_ = false;
  bool closed_ = false;
};

}  // namespace islet

#endif  // ISLET_TLS_TLS_SOCKET_H_
