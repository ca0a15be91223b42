// TLS over a scripted socket (testing/fake_socket.h) instead of a kernel one: the paths
// a kernel reaches only under load, reached on demand. A TlsSocket is made by
// TlsTransport::Upgrade over a FakeSocket, and a BoringSSL client talks to it through
// memory: the test carries the bytes between the fake socket and the client, so it
// decides exactly what each write takes (N bytes, then "would block") and what each
// read finds (a byte, "would block", EOF).
//
// What is shown: a record refused half way is retried with the same bytes and reaches
// the peer exactly once (the client decrypts the stream, which fails on a lost or
// repeated byte); records go out in short writes; a read that would block in the middle
// of a record resumes there; an EOF inside a record is a cut connection, at a record
// boundary an orderly close.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_socket.h"
#include "testing/status_matchers.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
#include "transport/errors.h"
#include "transport/transport.h"

namespace islet {
namespace {

using ::testing::AllOf;
using ::testing::Gt;
using ::testing::Lt;
using ::testing::Not;

// Bounds the loops below, which a broken socket could otherwise spin in forever.
constexpr size_t kMaxCalls = 1000;

const TestCertificate& ServerCertificate() {
  static const TestCertificate* const cert =
      new TestCertificate(TestCertificateAuthority::Create().IssueServer("localhost"));
  return *cert;
}

// The client side of TLS in memory: BoringSSL reads what the test gives it and writes
// into a buffer the test takes. It does not verify the server: what is tested here is
// the byte stream, not the certificate.
class MemoryTlsClient {
 public:
  MemoryTlsClient() : ctx_(SSL_CTX_new(TLS_method())), ssl_(SSL_new(ctx_.get())) {
    SSL_set_connect_state(ssl_.get());
    BIO* in = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in, -1);  // nothing to read is "would block", not EOF
    SSL_set_bio(ssl_.get(), in, BIO_new(BIO_s_mem()));
  }

  // Bytes from the server.
  void Give(absl::string_view bytes) {
    if (!bytes.empty()) BIO_write(SSL_get_rbio(ssl_.get()), bytes.data(), bytes.size());
  }
  // What the client has written since the last call.
  std::string Take() {
    BIO* out = SSL_get_wbio(ssl_.get());
    std::string bytes(BIO_pending(out), '\0');
    if (!bytes.empty()) BIO_read(out, bytes.data(), bytes.size());
    return bytes;
  }

  // One step of the handshake: true once it is complete.
  absl::StatusOr<bool> HandshakeStep() {
    const int result = SSL_do_handshake(ssl_.get());
    if (result == 1) return true;
    if (SSL_get_error(ssl_.get(), result) == SSL_ERROR_WANT_READ) return false;
    return Error("handshake", result);
  }

  absl::Status Write(absl::string_view data) {
    const int result = SSL_write(ssl_.get(), data.data(), data.size());
    if (result == static_cast<int>(data.size())) return absl::OkStatus();
    return Error("write", result);
  }

  // Everything that can be decrypted from what it was given; an error if the stream
  // does not decrypt (a byte lost, repeated or changed).
  absl::StatusOr<std::string> ReadAvailable() {
    std::string out;
    char buf[16384];
    for (;;) {
      const int result = SSL_read(ssl_.get(), buf, sizeof(buf));
      if (result > 0) {
        out.append(buf, result);
        continue;
      }
      if (SSL_get_error(ssl_.get(), result) == SSL_ERROR_WANT_READ) return out;
      return Error("read", result);
    }
  }

  // Sends close_notify.
  void Shutdown() { SSL_shutdown(ssl_.get()); }
  // Whether the server's close_notify has been read (after a ReadAvailable).
  bool GotCloseNotify() const { return (SSL_get_shutdown(ssl_.get()) & SSL_RECEIVED_SHUTDOWN) != 0; }

 private:
  absl::Status Error(const char* op, int result) {
    const int error = SSL_get_error(ssl_.get(), result);
    const uint32_t reason = ERR_get_error();
    ERR_clear_error();
    return absl::AbortedError(absl::StrCat(
        op, ": SSL_get_error ", error, ", ",
        reason != 0 ? ERR_reason_error_string(reason) : "no BoringSSL error"));
  }

  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL> ssl_;
};

// A TlsSocket over a FakeSocket, handshaken with a MemoryTlsClient, for each version.
class TlsOverScriptedSocketTest : public ::testing::TestWithParam<TlsVersion> {
 protected:
  void SetUp() override {
    TlsOptions options = OptionsFor(ServerCertificate());
    options.min_version = options.max_version = GetParam();
    ASSERT_OK_AND_ASSIGN(transport_, TlsTransport::Create(std::move(options)));
    auto wire = std::make_unique<FakeSocket>();
    wire_ = wire.get();
    ASSERT_OK_AND_ASSIGN(server_, transport_->Upgrade(std::move(wire)));
    ASSERT_NO_FATAL_FAILURE(Handshake());
  }

  // Runs both sides' handshakes, carrying every byte across, until both are done.
  void Handshake() {
    bool client_done = false;
    bool server_done = false;
    for (int round = 0; !(client_done && server_done); ++round) {
      ASSERT_LT(round, 20) << "the handshake does not finish";
      if (!client_done) {
        ASSERT_OK_AND_ASSIGN(client_done, client_.HandshakeStep());
      }
      ToServer(client_.Take());
      if (!server_done) {
        ASSERT_OK_AND_ASSIGN(IoInterest step, server_->HandshakeStep());
        server_done = step == IoInterest::kNone;
      }
      ToClient();
    }
  }

  // Queues `bytes` for the server's reads.
  void ToServer(std::string bytes) {
    if (!bytes.empty()) wire_->reads.push_back(std::move(bytes));
  }
  // Hands the client everything the server's writes took so far.
  void ToClient() { client_.Give(std::exchange(wire_->written, "")); }

  // WriteSome of `data` on the server until all of it is taken, each call retrying
  // with the bytes not yet counted as written (as Socket::Send and the server's queue
  // do): the results of the calls, in order.
  std::vector<absl::StatusOr<size_t>> WriteUntilTaken(absl::string_view data) {
    std::vector<absl::StatusOr<size_t>> results;
    while (!data.empty() && results.size() < kMaxCalls) {
      absl::StatusOr<size_t> wrote = server_->WriteSome(absl::MakeConstSpan(&data, 1));
      if (wrote.ok()) data.remove_prefix(*wrote);
      results.push_back(std::move(wrote));
    }
    return results;
  }

  std::shared_ptr<TlsTransport> transport_;
  FakeSocket* wire_ = nullptr;  // owned by server_
  std::unique_ptr<Socket> server_;
  MemoryTlsClient client_;
};

INSTANTIATE_TEST_SUITE_P(Versions, TlsOverScriptedSocketTest,
                         ::testing::Values(TlsVersion::kTls1_2, TlsVersion::kTls1_3),
                         [](const ::testing::TestParamInfo<TlsVersion>& info) {
                           return info.param == TlsVersion::kTls1_3 ? "Tls13" : "Tls12";
                         });

TEST_P(TlsOverScriptedSocketTest, AWriteRefusedHalfWayIsRetriedWithTheSameBytes) {
  const std::string data = RandomBytes(40 * 1024, 7);  // three records
  // The first record goes out whole; the second stops after 1000 bytes, and its retry
  // after 500 more; then the socket takes everything.
  wire_->write_script = {SIZE_MAX, size_t{1000}, WouldBlockError("send"), size_t{500},
                         WouldBlockError("send")};
  absl::string_view rest = data;
  // Only the first record counts as written: the second is sealed, part of it sent.
  absl::StatusOr<size_t> first = server_->WriteSome(absl::MakeConstSpan(&rest, 1));
  ASSERT_THAT(first, IsOkAndHolds(AllOf(Gt(0u), Lt(data.size()))));
  rest.remove_prefix(*first);
  // The retry of that record stops half way again: nothing more counts.
  EXPECT_THAT(server_->WriteSome(absl::MakeConstSpan(&rest, 1)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(wire_->write_script.empty());
  // Other bytes cannot take its place: they would corrupt the stream.
  const absl::string_view other = "something else entirely";
  EXPECT_THAT(server_->WriteSome(absl::MakeConstSpan(&other, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "same bytes"));
  // The same bytes finish the record, and the rest follows.
  EXPECT_THAT(server_->WriteSome(absl::MakeConstSpan(&rest, 1)), IsOkAndHolds(rest.size()));

  ToClient();
  absl::StatusOr<std::string> received = client_.ReadAvailable();
  ASSERT_THAT(received, IsOk());
  EXPECT_EQ(received->size(), data.size());
  EXPECT_TRUE(*received == data) << "stream corrupted";
}

TEST_P(TlsOverScriptedSocketTest, EveryRetryOfABlockedRecordDeliversItOnce) {
  const std::string data = RandomBytes(100 * 1024, 8);
  // Each record leaves in pieces of 777 bytes with a "would block" after each.
  for (int i = 0; i < 400; ++i) {
    wire_->write_script.push_back(size_t{777});
    wire_->write_script.push_back(WouldBlockError("send"));
  }
  std::vector<absl::StatusOr<size_t>> results = WriteUntilTaken(data);
  ASSERT_LT(results.size(), kMaxCalls) << "the writes never finished";
  int blocked = 0;
  for (const absl::StatusOr<size_t>& r : results) {
    if (!r.ok()) {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable));
      ++blocked;
    }
  }
  EXPECT_GT(blocked, 100);

  ToClient();
  absl::StatusOr<std::string> received = client_.ReadAvailable();
  ASSERT_THAT(received, IsOk());
  EXPECT_EQ(received->size(), data.size());
  EXPECT_TRUE(*received == data) << "stream corrupted";
}

TEST_P(TlsOverScriptedSocketTest, RecordsGoOutInShortWrites) {
  const std::string data = RandomBytes(50 * 1024, 9);
  wire_->max_write = 100;  // the kernel takes 100 bytes a call, and never refuses
  const int calls_before = wire_->write_calls;
  std::vector<absl::StatusOr<size_t>> results = WriteUntilTaken(data);
  for (const absl::StatusOr<size_t>& r : results) EXPECT_THAT(r, IsOk());
  // At least one call for each 100 bytes of plaintext (the ciphertext is a little more).
  EXPECT_GE(static_cast<size_t>(wire_->write_calls - calls_before), data.size() / 100);

  ToClient();
  absl::StatusOr<std::string> received = client_.ReadAvailable();
  ASSERT_THAT(received, IsOk());
  EXPECT_TRUE(*received == data) << "stream corrupted";
}

TEST_P(TlsOverScriptedSocketTest, AReadThatWouldBlockInsideARecordResumesThere) {
  ASSERT_THAT(client_.Write("hello, world"), IsOk());
  const std::string record = client_.Take();
  // One byte a read, each followed by "would block".
  for (char c : record) {
    wire_->reads.push_back(std::string(1, c));
    wire_->reads.push_back(WouldBlockError("recv"));
  }
  char buf[64];
  absl::StatusOr<size_t> got;
  int would_block = 0;
  for (size_t calls = 0; calls < kMaxCalls; ++calls) {
    got = server_->ReadSome(absl::MakeSpan(buf));
    if (!IsWouldBlock(got.status())) break;
    ++would_block;
  }
  ASSERT_THAT(got, IsOkAndHolds(12u));
  EXPECT_EQ(absl::string_view(buf, 12), "hello, world");
  // Every byte but the last left the record incomplete.
  EXPECT_EQ(would_block, static_cast<int>(record.size()) - 1);
}

TEST_P(TlsOverScriptedSocketTest, EofInsideARecordIsAborted) {
  ASSERT_THAT(client_.Write("cut short"), IsOk());
  const std::string record = client_.Take();
  ToServer(record.substr(0, record.size() - 3));
  wire_->reads.push_back(PeerClosedError("recv"));
  char buf[64];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kAborted));
}

TEST_P(TlsOverScriptedSocketTest, EofAtARecordBoundaryIsPeerClosed) {
  ASSERT_THAT(client_.Write("whole"), IsOk());
  ToServer(client_.Take());
  wire_->reads.push_back(PeerClosedError("recv"));
  char buf[64];
  ASSERT_THAT(server_->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(5u));
  EXPECT_EQ(absl::string_view(buf, 5), "whole");
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kOutOfRange));
}

// A shutdown never waits for room: with none for close_notify, ShutdownStep asks to be
// called again on writability (kWrite) and returns at once, as often as it is called;
// once there is room it sends close_notify and is done. The server drives it from its
// loop; before, Socket::Shutdown held the worker for up to 5 s waiting for room.
TEST_P(TlsOverScriptedSocketTest, ShutdownStepNeverWaitsForRoom) {
  wire_->writes_always_blocked = true;
  const int calls = wire_->write_calls;
  EXPECT_THAT(server_->ShutdownStep(ShutdownWay::kWrite), IsOkAndHolds(IoInterest::kWrite));
  EXPECT_THAT(server_->ShutdownStep(ShutdownWay::kWrite), IsOkAndHolds(IoInterest::kWrite));
  EXPECT_EQ(wire_->write_calls - calls, 2) << "one attempt per step, no waiting loop";

  wire_->writes_always_blocked = false;
  EXPECT_THAT(server_->ShutdownStep(ShutdownWay::kWrite), IsOkAndHolds(IoInterest::kNone));
  ToClient();
  EXPECT_THAT(client_.ReadAvailable(), Not(IsOk()));  // the stream ends...
  EXPECT_TRUE(client_.GotCloseNotify());             // ...with close_notify
  // Done: a later step sends nothing more.
  const int after = wire_->write_calls;
  EXPECT_THAT(server_->ShutdownStep(ShutdownWay::kWrite), IsOkAndHolds(IoInterest::kNone));
  EXPECT_EQ(wire_->write_calls, after);
}

}  // namespace
}  // namespace islet
