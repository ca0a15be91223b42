// Helpers for the TLS tests: a small blocking BoringSSL client, a bounded Accept, a
// fixture listening with TLS on loopback, and test data. (External programs such as
// openssl s_client and curl run under RunCommand, in testing/subprocess.h.)
//
// Every wait here is bounded: the client's socket carries SO_RCVTIMEO/SO_SNDTIMEO, and
// AcceptWithin closes the listener when its time is up. A broken transport fails a
// test; it never hangs one.
#ifndef ISLET_TESTING_TLS_TEST_UTIL_H_
#define ISLET_TESTING_TLS_TEST_UTIL_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "testing/test_certs.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

// Generous: bounds waits for things that take milliseconds unless something is broken
// (or a sanitizer slows everything down).
inline constexpr absl::Duration kTestWait = absl::Seconds(20);

struct TlsClientOptions {
  // Verify the server's chain against this CA (PEM); empty skips verification.
  std::string ca_pem;
  // With ca_pem: the name (or IP literal) the server's certificate must carry.
  std::string verify_host;
  // Sent as SNI; empty sends none.
  std::string server_name;
  std::vector<std::string> alpn;
  // A client certificate and its key (PEM), or none.
  std::string cert_pem;
  std::string key_pem;
  uint16_t min_version = TLS1_2_VERSION;
  uint16_t max_version = TLS1_3_VERSION;
  bool session_tickets = true;
  // Offer this session for resumption (borrowed).
  SSL_SESSION* session = nullptr;
  // TLS 1.3: StartTls holds the client's last flight (its Finished) in memory, as
  // HoldOutput does, instead of sending it; ReleaseOutput sends it together with the
  // records Write added after it.
  bool hold_final_flight = false;
};

// A blocking TLS client over its own TCP connection to 127.0.0.1. Not thread-safe.
class TestTlsClient {
 public:
  // Connects within `io_timeout`, which then bounds every read and write.
  static absl::StatusOr<std::unique_ptr<TestTlsClient>> Connect(
      uint16_t port, absl::Duration io_timeout = kTestWait);
  ~TestTlsClient();

  int fd() const { return fd_.get(); }

  // Plaintext before StartTls (STARTTLS).
  absl::Status WritePlain(absl::string_view data);
  // Reads one byte at a time up to and including '\n', so nothing after it is taken.
  absl::StatusOr<std::string> ReadPlainLine();

  // The client handshake; the error carries BoringSSL's reason.
  absl::Status StartTls(const TlsClientOptions& options);

  absl::Status Write(absl::string_view data);
  // Exactly n bytes; OutOfRange if the connection ends first.
  absl::StatusOr<std::string> Read(size_t n);
  // Everything until the server's close_notify; a TCP EOF without one is an error.
  absl::StatusOr<std::string> ReadToEnd();
  // The result of one SSL_read of up to `n` bytes: data, OutOfRange("close_notify") for
  // a clean close, OutOfRange("eof") for a TCP EOF without close_notify, or an error.
  absl::StatusOr<std::string> ReadOnce(size_t n);

  std::string PeerCommonName() const;
  std::string PeerCertificateDer() const;
  std::string Alpn() const;
  std::string Version() const;
  std::string Cipher() const;
  bool Resumed() const;
  // The newest session the server issued (in TLS 1.3 it arrives after the handshake:
  // read some data first). Null if none yet.
  bssl::UniquePtr<SSL_SESSION> LatestSession() const;

  // From now on the records of Write (and ShutdownTls) are held in memory, not sent.
  void HoldOutput();
  // Sends everything held in one send(2), so the server's kernel receives those records
  // together, and stops holding. Returns the number of bytes sent.
  absl::StatusOr<size_t> ReleaseOutput();

  // Sends close_notify.
  absl::Status ShutdownTls();
  // Closes the TCP connection (no close_notify).
  void CloseTcp() { fd_.reset(); }

  SSL* ssl() const { return ssl_.get(); }

 private:
  TestTlsClient() = default;
  static int NewSessionCallback(SSL* ssl, SSL_SESSION* session);
  absl::Status SslError(const char* op, int result);
  // A BIO over fd_ that can hold what is written (HoldOutput, hold_final_flight).
  static BIO_METHOD* HoldingBioMethod();
  static int HoldingBioRead(BIO* bio, char* out, int length);
  static int HoldingBioWrite(BIO* bio, const char* in, int length);
  static long HoldingBioCtrl(BIO* bio, int command, long larg, void* parg);
  BIO* NewHoldingBio();

  UniqueFd fd_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL> ssl_;
  bssl::UniquePtr<SSL_SESSION> latest_session_;
  // What the holding BIO does with writes.
  enum class Hold { kNo, kAfterFirstRead, kYes };
  Hold hold_ = Hold::kNo;
  bool holding_bio_ = false;  // the SSL writes through the holding BIO
  bool read_any_ = false;     // the holding BIO has read something
  std::string held_;
};

// Accept, or DeadlineExceeded once `timeout` passes (the listener is then closed, which
// is what ends the waiting Accept).
absl::StatusOr<std::unique_ptr<Socket>> AcceptWithin(Listener& listener,
                                                     absl::Duration timeout = kTestWait);

// ---- The server side ----

// Options that serve `cert` (its chain and key); everything else is the default.
TlsOptions OptionsFor(const TestCertificate& cert);

// A fixture that listens with TLS on 127.0.0.1, on a port the kernel picks.
class TlsListenerTest : public ::testing::Test {
 protected:
  // Creates the transport from `options` and listens; the error of either step.
  absl::Status Listen(TlsOptions options);

  std::shared_ptr<TlsTransport> transport_;
  std::unique_ptr<Listener> listener_;
  uint16_t port_ = 0;
};

// `n` pseudo-random bytes, the same for the same seed: a lost, repeated or reordered
// byte shows.
std::string RandomBytes(size_t n, uint32_t seed);

}  // namespace islet

#endif  // ISLET_TESTING_TLS_TEST_UTIL_H_
