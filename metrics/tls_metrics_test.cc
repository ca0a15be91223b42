// The handshake metrics over a real TLS server on loopback: a completed handshake is
// timed, and failed ones are counted by reason and end as errors.
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "metrics/server_metrics.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

uint64_t Failed(const MetricsSnapshot& s, HandshakeFailure reason) {
  return s.handshake_failures[static_cast<int>(reason)];
}

TEST(TlsMetricsTest, HandshakesAreTimedAndFailuresCountedByReason) {
  const TestCertificateAuthority ca = TestCertificateAuthority::Create();
  const TestCertificate cert = ca.IssueServer("localhost");
  absl::StatusOr<std::shared_ptr<TlsTransport>> tls = TlsTransport::Create(OptionsFor(cert));
  ASSERT_TRUE(tls.ok()) << tls.status();
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
  options.transport = *tls;
  options.handshake_timeout = absl::Milliseconds(300);
  ServerMetrics metrics(options.name);
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;

  // One handshake that completes, and echoes.
  absl::StatusOr<std::unique_ptr<TestTlsClient>> good = TestTlsClient::Connect(port);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_TRUE((*good)->StartTls({}).ok());
  ASSERT_TRUE((*good)->Write("hi").ok());
  ASSERT_TRUE((*good)->Read(2).ok());
  // Garbage instead of a ClientHello: a protocol failure.
  std::unique_ptr<TcpSocket> garbage = testutil::MustConnect(*server);
  ASSERT_NE(garbage, nullptr);
  ASSERT_TRUE(garbage->Send("GET / HTTP/1.1\r\n\r\n").ok());
  // Connects and closes without a word: the peer closed mid-handshake.
  std::unique_ptr<TcpSocket> quiet = testutil::MustConnect(*server);
  ASSERT_NE(quiet, nullptr);
  quiet->Close();
  // Connects and says nothing: the handshake times out.
  std::unique_ptr<TcpSocket> silent = testutil::MustConnect(*server);
  ASSERT_NE(silent, nullptr);

  ASSERT_TRUE(testutil::WaitFor([&] {
    const MetricsSnapshot s = metrics.Snapshot();
    return Failed(s, HandshakeFailure::kProtocol) == 1 &&
           Failed(s, HandshakeFailure::kPeerClosed) == 1 &&
           Failed(s, HandshakeFailure::kTimeout) == 1;
  })) << "protocol " << Failed(metrics.Snapshot(), HandshakeFailure::kProtocol) << ", peer_closed "
      << Failed(metrics.Snapshot(), HandshakeFailure::kPeerClosed) << ", timeout "
      << Failed(metrics.Snapshot(), HandshakeFailure::kTimeout);
  const MetricsSnapshot s = metrics.Snapshot();
  EXPECT_EQ(s.accepted, 4u);
  EXPECT_EQ(s.closed[static_cast<int>(ConnectionEnding::kError)], 3u);
  EXPECT_EQ(s.live, 1);
  EXPECT_EQ(Failed(s, HandshakeFailure::kCertificate), 0u);
  EXPECT_EQ(Failed(s, HandshakeFailure::kOther), 0u);
  // The good one's handshake, timed; a loopback handshake takes well under a second.
  EXPECT_EQ(s.handshake_duration.count, 1u);
  EXPECT_GT(s.handshake_duration.sum, 0);
  EXPECT_EQ(s.handshake_duration.cumulative[9], 1u) << "<= 1 s";
  EXPECT_EQ(s.received_bytes, 2u);
}

}  // namespace
}  // namespace islet
