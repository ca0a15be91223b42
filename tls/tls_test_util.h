// Helpers for the TLS tests: a small blocking BoringSSL client, a bounded Accept, and a
// runner for external programs (openssl s_client, curl). Test-only.
//
// Every wait here is bounded: the client's socket carries SO_RCVTIMEO/SO_SNDTIMEO,
// AcceptWithin closes the listener when its time is up, and RunCommand kills the
// program at its deadline. A broken transport fails a test; it never hangs one.
#ifndef ISLET_TLS_TLS_TEST_UTIL_H_
#define ISLET_TLS_TLS_TEST_UTIL_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
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

// ---- External programs ----

// The absolute path of `name` on PATH (or in /usr/bin, /bin, /usr/local/bin), or "".
std::string FindProgram(const std::string& name);

struct CommandResult {
  int exit_code = -1;      // -1 when killed by a signal (or at the deadline)
  bool timed_out = false;
  std::string output;      // stdout and stderr, interleaved
};

struct CommandOptions {
  // Written to the program's standard input.
  std::string input;
  // Standard input is closed once `input` is written and this returns true for the
  // output so far (default: at once). Lets a test hold a session open until the
  // server's answer arrived, without sleeping.
  std::function<bool(const std::string& output)> close_input_when;
  absl::Duration timeout = kTestWait;
};

// Runs argv[0] (an absolute path) with argv, bounded by options.timeout.
CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

// ---- Status matchers ----

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code, absl::StrCat("has code ", absl::StatusCodeToString(code))) {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code;
}

MATCHER_P2(StatusIs, code, substring,
           absl::StrCat("has code ", absl::StatusCodeToString(code), " and a message with \"",
                        substring, "\"")) {
  const absl::Status& status = StatusOf(arg);
  *result_listener << "status is " << status;
  return status.code() == code && status.message().find(substring) != absl::string_view::npos;
}

MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a value that matches") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

#define ISLET_TLS_CONCAT_INNER(a, b) a##b
#define ISLET_TLS_CONCAT(a, b) ISLET_TLS_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL(ISLET_TLS_CONCAT(status_or_, __LINE__), lhs, rexpr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();           \
  lhs = std::move(*tmp)

}  // namespace islet

#endif  // ISLET_TLS_TLS_TEST_UTIL_H_
