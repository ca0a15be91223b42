// Tests of TLS data transfer after the handshake: sendfile, counters, shutdown and
// close, the non-blocking primitives (a write that would block must be retried with
// the same bytes), and the read-ahead of the BIO. Shared fixture:
// tls_transport_test_util.h. The same write path over a scripted socket, without a
// kernel: tls_partial_write_test.cc.
#include "tls/tls_transport.h"

#include <netinet/in.h>
#include <linux/tcp.h>  // TCP_INFO's tcpi_bytes_received (not in <netinet/tcp.h>)
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport_test_util.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// ---- Sendfile ----

TEST_F(TlsTest, SendfileOfAFileLargerThanTheChunkArrivesIntact) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  const std::string contents = RandomBytes(1024 * 1024 + 12345, 3);  // 16+ chunks of 64 KiB
  const std::string path = WriteTestFile("payload.bin", contents);
  const uint64_t offset = 70001;
  const uint64_t length = 300003;
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        absl::StatusOr<std::string> got = c.Read(contents.size() + length);
        if (!got.ok()) return got.status();
        side.received = *std::move(got);
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  EXPECT_THAT(server->Sendfile(path, 0, 0), IsOkAndHolds(contents.size()));
  EXPECT_THAT(server->Sendfile(path, offset, length), IsOkAndHolds(length));
  EXPECT_THAT(server->Sendfile(path + ".missing", 0, 0), StatusIs(absl::StatusCode::kNotFound));
  ClientSide side = client.get();
  ASSERT_THAT(side.status, IsOk());
  ASSERT_EQ(side.received.size(), contents.size() + length);
  EXPECT_TRUE(side.received.substr(0, contents.size()) == contents) << "file corrupted";
  EXPECT_TRUE(side.received.substr(contents.size()) == contents.substr(offset, length))
      << "slice corrupted";
}

// ---- Counters, shutdown and close ----

TEST_F(TlsTest, GetStatCountsCiphertext) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  const std::string down = RandomBytes(100000, 4);
  const std::string up = RandomBytes(50000, 5);
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = c.Write(up); !s.ok()) return s;
        absl::StatusOr<std::string> got = c.Read(down.size());
        if (!got.ok()) return got.status();
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_THAT(server->Recv(up.size(), kTestWait), IsOk());
  ASSERT_THAT(server->Send(down), IsOk());
  EXPECT_THAT(client.get().status, IsOk());
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server->GetStat());
  // Ciphertext: the plaintext, plus the handshake and every record's header and tag,
  // but not wildly more.
  EXPECT_GT(stats.bytes_sent, down.size() + 500);
  EXPECT_LT(stats.bytes_sent, down.size() + 20000);
  EXPECT_GT(stats.bytes_received, up.size() + 100);
  EXPECT_LT(stats.bytes_received, up.size() + 20000);
  EXPECT_GT(stats.send_calls, 0u);
  EXPECT_GT(stats.receive_calls, 0u);
}

TEST_F(TlsTest, ShutdownSendsCloseNotifyAndReadsStillWork) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        absl::StatusOr<std::string> got = c.ReadToEnd();  // "bye", then close_notify
        if (!got.ok()) return got.status();
        side.received = *got;
        absl::StatusOr<std::string> again = c.ReadOnce(1);
        if (!absl::IsOutOfRange(again.status()) ||
            again.status().message().find("close_notify") == absl::string_view::npos) {
          return absl::InternalError(absl::StrCat("not a close_notify: ", again.status().ToString()));
        }
        if (absl::Status s = c.Write("half"); !s.ok()) return s;
        return c.ShutdownTls();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_THAT(server->Send("bye"), IsOk());
  ASSERT_THAT(server->Shutdown(ShutdownWay::kWrite), IsOk());
  EXPECT_THAT(server->Send("more"), StatusIs(absl::StatusCode::kFailedPrecondition, "close_notify"));
  EXPECT_THAT(server->Recv(4, kTestWait), IsOkAndHolds(std::string("half")));
  EXPECT_THAT(server->Recv(1, kTestWait),
              StatusIs(absl::StatusCode::kOutOfRange, "recv: peer closed the connection (close_notify)"));
  ClientSide side = client.get();
  EXPECT_THAT(side.status, IsOk());
  EXPECT_EQ(side.received, "bye");
}

TEST_F(TlsTest, TcpEofWithoutCloseNotifyIsPeerClosed) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = PingPong(c, side); !s.ok()) return s;
        c.CloseTcp();
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ServePingPong(*server);
  EXPECT_THAT(client.get().status, IsOk());
  EXPECT_THAT(server->Recv(1, kTestWait),
              StatusIs(absl::StatusCode::kOutOfRange, "peer closed the connection (without close_notify)"));
}

TEST_F(TlsTest, TruncatedRecordIsAborted) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = PingPong(c, side); !s.ok()) return s;
        // Half of an application-data record, then the TCP FIN.
        const std::string partial = std::string("\x17\x03\x03\x00\x40", 5) + std::string(20, 'x');
        if (absl::Status s = c.WritePlain(partial); !s.ok()) return s;
        ::shutdown(c.fd(), SHUT_WR);
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ServePingPong(*server);
  EXPECT_THAT(client.get().status, IsOk());
  EXPECT_THAT(server->Recv(1, kTestWait),
              StatusIs(absl::StatusCode::kAborted, "in the middle of a TLS record"));
}

TEST_F(TlsTest, CloseIsIdempotentAndLaterCallsFail) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client = StartClient(port_, Verifying(), ReadUntilClosed);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_THAT(server->Send("last words"), IsOk());
  server->Close();
  server->Close();
  EXPECT_TRUE(server->IsClosed());
  EXPECT_THAT(server->Send("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server->Recv(0, absl::ZeroDuration()), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server->GetStat(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server->PeerInfo(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server->HandshakeStep(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(server->Shutdown(ShutdownWay::kWrite), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Close sent close_notify: the client saw a clean end, not a truncation.
  ClientSide side = client.get();
  EXPECT_THAT(side.status, IsOk());
  EXPECT_EQ(side.received, "last words");
}

// ---- The non-blocking primitives ----

TEST_F(TlsTest, WriteThatWouldBlockMustBeRetriedWithTheSameBytes) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  absl::Notification start_reading;
  std::string total;  // what the client must receive, in order
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (!start_reading.WaitForNotificationWithTimeout(kTestWait)) {
          return absl::DeadlineExceededError("never told to read");
        }
        absl::StatusOr<std::string> got = c.ReadToEnd();
        if (!got.ok()) return got.status();
        side.received = *got;
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_THAT(server->SetOptions({SocketOption::SendBuffer(4096)}), IsOk());
  // Write 40 KiB pieces until the peer (not reading) makes us block.
  std::string piece;
  int pieces = 0;
  absl::StatusOr<size_t> wrote;
  for (;;) {
    piece = RandomBytes(40 * 1024, 100 + pieces++);
    absl::string_view rest = piece;
    while (!rest.empty()) {
      wrote = server->WriteSome(absl::MakeConstSpan(&rest, 1));
      if (!wrote.ok()) break;
      total.append(rest.data(), *wrote);
      rest.remove_prefix(*wrote);
    }
    if (!wrote.ok()) {
      piece = std::string(rest);
      break;
    }
    ASSERT_LT(total.size(), 64u << 20) << "never blocked";
  }
  ASSERT_THAT(wrote, StatusIs(absl::StatusCode::kUnavailable));
  // Other bytes are refused: TLS already sealed the start of `piece` into a record.
  const absl::string_view other = "something else entirely";
  EXPECT_THAT(server->WriteSome(absl::MakeConstSpan(&other, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "same bytes"));
  start_reading.Notify();
  // The same bytes go through once the peer drains.
  absl::string_view rest = piece;
  while (!rest.empty()) {
    absl::StatusOr<size_t> n = server->WriteSome(absl::MakeConstSpan(&rest, 1));
    if (n.ok()) {
      total.append(rest.data(), *n);
      rest.remove_prefix(*n);
      continue;
    }
    ASSERT_THAT(n, StatusIs(absl::StatusCode::kUnavailable));
    ASSERT_THAT(WaitForIo(server->fd(), IoInterest::kWrite, MonotonicNow() + kTestWait, "test"),
                IsOk());
  }
  // Close sends close_notify only if the send buffer has room for it at once (it never
  // waits): let the client take everything first, or the small buffer set above may
  // still be full and the client would see the TCP EOF without it.
  for (const absl::Time give_up = absl::Now() + kTestWait;;) {
    absl::StatusOr<SocketStats> stats = server->GetStat();
    ASSERT_THAT(stats, IsOk());
    if (stats->send_pending == 0) break;
    ASSERT_LT(absl::Now(), give_up) << stats->send_pending << " bytes never taken";
    absl::SleepFor(absl::Milliseconds(1));
  }
  server->Close();
  ClientSide side = client.get();
  ASSERT_THAT(side.status, IsOk());
  EXPECT_EQ(side.received.size(), total.size());
  EXPECT_TRUE(side.received == total) << "stream corrupted";
}

TEST_F(TlsTest, DecryptedBytesAreReportedAsBufferedInput) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = c.Write("0123456789"); !s.ok()) return s;  // one record
        return ReadUntilClosed(c, side);
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  // (The record may already be read ahead, with the end of the handshake.)
  char buf[3];
  absl::StatusOr<size_t> got;
  for (;;) {
    got = server->ReadSome(absl::MakeSpan(buf));
    if (!IsWouldBlock(got.status())) break;
    ASSERT_FALSE(server->HasBufferedInput());
    ASSERT_THAT(WaitForIo(server->fd(), IoInterest::kRead, MonotonicNow() + kTestWait, "test"),
                IsOk());
  }
  ASSERT_THAT(got, IsOkAndHolds(3u));
  EXPECT_EQ(absl::string_view(buf, 3), "012");
  // The rest of the record is decrypted and waiting; the descriptor will not say so.
  EXPECT_TRUE(server->HasBufferedInput());
  char rest[16];
  EXPECT_THAT(server->ReadSome(absl::MakeSpan(rest)), IsOkAndHolds(7u));
  EXPECT_EQ(absl::string_view(rest, 7), "3456789");
  EXPECT_FALSE(server->HasBufferedInput());
  EXPECT_THAT(server->ReadSome(absl::MakeSpan(rest)), StatusIs(absl::StatusCode::kUnavailable));
  server->Close();
  EXPECT_THAT(client.get().status, IsOk());
}

// ---- Read-ahead ----

// What the kernel has received on `fd` (TCP_INFO): to check GetStat's count exactly.
uint64_t KernelBytesReceived(int fd) {
  tcp_info info = {};
  socklen_t length = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return 0;
  return info.tcpi_bytes_received;
}

// The client's Finished and three records leave in one send(2). The server takes them
// all with one recv: the records wait, read ahead, reported as buffered input, and
// each ReadSome returns the next one with nothing more arriving on the descriptor.
// GetStat still counts exactly the ciphertext received.
TEST_F(TlsTest, RecordsArrivingTogetherAreReadWithOneRecv) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  TlsClientOptions options = Verifying();
  options.min_version = TLS1_3_VERSION;
  options.hold_final_flight = true;
  const std::vector<std::string> records = {"one", "two", "three"};
  std::future<ClientSide> client =
      StartClient(port_, options, [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        for (const std::string& r : records) {
          if (absl::Status s = c.Write(r); !s.ok()) return s;
        }
        if (absl::StatusOr<size_t> sent = c.ReleaseOutput(); !sent.ok()) return sent.status();
        return ReadUntilClosed(c, side);
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server->GetStat());
  // One recv for the ClientHello, one for everything else (without read-ahead: two per
  // record, so six for the handshake alone).
  EXPECT_EQ(stats.receive_calls, 2u);
  EXPECT_TRUE(server->HasBufferedInput());
  for (const std::string& r : records) {
    SCOPED_TRACE(r);
    char buf[64];
    EXPECT_THAT(server->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(r.size()));
    EXPECT_EQ(absl::string_view(buf, r.size()), r);
    EXPECT_EQ(server->HasBufferedInput(), r != records.back());
  }
  char buf[64];
  EXPECT_THAT(server->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK_AND_ASSIGN(stats, server->GetStat());
  EXPECT_EQ(stats.receive_calls, 2u);
  EXPECT_EQ(stats.bytes_received, KernelBytesReceived(server->fd()));
  server->Close();
  EXPECT_THAT(client.get().status, IsOk());
}

// The records read ahead come before the EOF that arrived behind them.
TEST_F(TlsTest, EofBehindRecordsReadAheadComesAfterThem) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  TlsClientOptions options = Verifying();
  options.min_version = TLS1_3_VERSION;
  options.hold_final_flight = true;
  std::future<ClientSide> client =
      StartClient(port_, options, [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = c.Write("one"); !s.ok()) return s;
        if (absl::Status s = c.Write("two"); !s.ok()) return s;
        if (absl::StatusOr<size_t> sent = c.ReleaseOutput(); !sent.ok()) return sent.status();
        ::shutdown(c.fd(), SHUT_WR);  // a TCP FIN, no close_notify
        return ReadUntilClosed(c, side);  // our Close still sends close_notify
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  EXPECT_TRUE(server->HasBufferedInput());
  // Wait until the FIN is in the kernel too, behind nothing: a peek finds EOF.
  const absl::Time give_up = absl::Now() + kTestWait;
  char byte;
  for (;;) {
    const ssize_t n = ::recv(server->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) break;
    ASSERT_LT(n, 0) << "the records were left in the kernel, not read ahead";
    ASSERT_LT(absl::Now(), give_up) << "no FIN";
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_THAT(server->Recv(3, kTestWait), IsOkAndHolds(std::string("one")));
  EXPECT_THAT(server->Recv(3, kTestWait), IsOkAndHolds(std::string("two")));
  EXPECT_THAT(server->Recv(1, kTestWait),
              StatusIs(absl::StatusCode::kOutOfRange, "peer closed the connection (without close_notify)"));
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server->GetStat());
  EXPECT_EQ(stats.bytes_received + 1, KernelBytesReceived(server->fd()));  // the FIN counts 1
  server->Close();
  EXPECT_THAT(client.get().status, IsOk());
}

// Once the peer's close_notify has arrived, Close answers it with ours before the TCP
// close: the client reads a clean end of the session, not a truncation.
TEST_F(TlsTest, CloseAnswersThePeersCloseNotify) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = PingPong(c, side); !s.ok()) return s;
        if (absl::Status s = c.ShutdownTls(); !s.ok()) return s;
        absl::StatusOr<std::string> rest = c.ReadToEnd();
        if (!rest.ok()) return rest.status();
        if (!rest->empty()) return absl::InternalError("data after our close_notify");
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ServePingPong(*server);
  EXPECT_THAT(server->Recv(1, kTestWait),
              StatusIs(absl::StatusCode::kOutOfRange, "close_notify"));
  server->Close();
  EXPECT_THAT(client.get().status, IsOk());
}

TEST_F(TlsTest, InfoAndOptionsComeFromTheTcpSocket) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  std::future<ClientSide> client = StartClient(port_, Verifying(), ReadUntilClosed);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  ASSERT_OK_AND_ASSIGN(SocketInfo local, server->LocalInfo());
  EXPECT_EQ(local.port, port_);
  EXPECT_EQ(local.peer_certificate, std::nullopt);
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, server->PeerInfo());
  EXPECT_EQ(peer.address, "127.0.0.1");
  EXPECT_NE(peer.port, 0);
  ASSERT_THAT(server->SetOptions({SocketOption::NoDelay(false), SocketOption::KeepAlive(true)}),
              IsOk());
  EXPECT_THAT(server->GetOptions({SocketOptionName::kNoDelay, SocketOptionName::kKeepAlive}),
              IsOkAndHolds(std::vector<SocketOption>{SocketOption::NoDelay(false),
                                                 SocketOption::KeepAlive(true)}));
  EXPECT_THAT(server->SetOptions({SocketOption::Blocking(true)}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  server->Close();
  EXPECT_THAT(client.get().status, IsOk());
}

}  // namespace
}  // namespace islet
