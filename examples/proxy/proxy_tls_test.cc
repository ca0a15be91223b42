// The proxy example with TLS on both sides: clients reach it over TLS (termination) and
// it reaches its upstream over TLS (ProxyOptions::upstream_tls), byte-exact both ways;
// an upstream that fails verification closes the client with nothing sent.
#include <poll.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "examples/echo/echo.h"
#include "examples/example_test_util.h"
#include "examples/proxy/proxy.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "testing/test_certs.h"
#include "tls/tls_client.h"
#include "tls/tls_transport.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet::examples {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);

class ProxyTlsTest : public ::testing::Test {
 protected:
  ServerOptions TlsServer() {
    const TestCertificate cert = ca_.IssueServer("localhost");
    TlsOptions tls;
    tls.credentials = TlsCredentials::FromPem(cert.chain_pem(), cert.key_pem);
    absl::StatusOr<std::shared_ptr<TlsTransport>> transport = TlsTransport::Create(tls);
    EXPECT_TRUE(transport.ok()) << transport.status();
    ServerOptions options;
    options.num_workers = 1;
    if (transport.ok()) options.transport = *transport;
    return options;
  }
  std::shared_ptr<TlsClient> Client(const std::string& server_name) {
    OutboundTlsOptions options;
    options.ca_pem = ca_.cert_pem();
    options.server_name = server_name;
    absl::StatusOr<std::shared_ptr<TlsClient>> client = TlsClient::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *client : nullptr;
  }
  // A TLS connection to `where`, handshake done (blocking, bounded).
  std::unique_ptr<Socket> ConnectTls(const SocketInfo& where) {
    absl::StatusOr<std::unique_ptr<TcpSocket>> tcp = TcpSocket::Connect(where, kWait);
    EXPECT_TRUE(tcp.ok()) << tcp.status();
    if (!tcp.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<Socket>> tls =
        Client("localhost")->WrapClient(*std::move(tcp), where);
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return nullptr;
    absl::Status handshake = (*tls)->Handshake(kWait);
    EXPECT_TRUE(handshake.ok()) << handshake;
    return handshake.ok() ? *std::move(tls) : nullptr;
  }

  TestCertificateAuthority ca_ = TestCertificateAuthority::Create();
};

// Sends `data` and reads as much back on one thread (a TLS socket has one owner),
// waiting on readiness; the bytes received.
absl::StatusOr<std::string> EchoThrough(Socket& socket, const std::string& data) {
  std::string received;
  size_t sent = 0;
  std::string buf(64 << 10, '\0');
  const absl::Duration deadline = MonotonicNow() + kWait;
  while (received.size() < data.size()) {
    bool progress = false;
    if (sent < data.size()) {
      const absl::string_view chunk =
          absl::string_view(data).substr(sent, std::min<size_t>(1 << 20, data.size() - sent));
      absl::StatusOr<size_t> wrote = socket.WriteSome({&chunk, 1});
      if (wrote.ok()) {
        sent += *wrote;
        progress = true;
      } else if (!IsWouldBlock(wrote.status())) {
        return wrote.status();
      }
    }
    absl::StatusOr<size_t> got = socket.ReadSome(absl::MakeSpan(buf));
    if (got.ok()) {
      received.append(buf.data(), *got);
      progress = true;
    } else if (!IsWouldBlock(got.status())) {
      return got.status();
    }
    if (progress || socket.HasBufferedInput()) continue;
    if (MonotonicNow() >= deadline) return absl::DeadlineExceededError("echo: timed out");
    pollfd p{socket.fd(), static_cast<short>(POLLIN | (sent < data.size() ? POLLOUT : 0)), 0};
    ::poll(&p, 1, 100);
  }
  return received;
}

TEST_F(ProxyTlsTest, RelaysALargeTransferByteExactWithTlsOnBothSides) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>(), {}, TlsServer());
  ProxyOptions options;
  options.upstream = upstream.where();
  options.upstream_tls = Client("localhost");
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), options, TlsServer());
  std::unique_ptr<Socket> client = ConnectTls(proxy.where());
  ASSERT_NE(client, nullptr);

  const std::string sent = Pattern(ScaledForSanitizer(64 << 20), 3);
  absl::StatusOr<std::string> received = EchoThrough(*client, sent);
  ASSERT_TRUE(received.ok()) << received.status();
  ASSERT_EQ(received->size(), sent.size());
  EXPECT_TRUE(*received == sent) << "the echo through the TLS proxy differs";
}

TEST_F(ProxyTlsTest, AnUpstreamThatFailsVerificationClosesTheClient) {
  ExampleServer upstream(HandlerFactoryOf<EchoHandler>(), {}, TlsServer());
  ProxyOptions options;
  options.upstream = upstream.where();
  options.upstream_tls = Client("not-the-upstream.example");
  ExampleServer proxy(HandlerFactoryOf<ProxyHandler>(), options, TlsServer());
  std::unique_ptr<Socket> client = ConnectTls(proxy.where());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<std::string> got = client->Recv(0, kWait);
  EXPECT_TRUE(absl::IsOutOfRange(got.status())) << (got.ok() ? *got : got.status().ToString());
}

}  // namespace
}  // namespace islet::examples
