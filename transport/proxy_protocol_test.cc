// ProxyProtocolTransport under the real server, over TCP and TLS, on loopback: the
// handler sees the header's client, the balancer's address and the TLVs; LOCAL keeps the
// socket's addresses; untrusted senders, missing required headers and malformed ones
// close with the reason in telemetry; a half header that stalls ends at
// handshake_timeout; max_connections_per_peer counts clients, not the balancer.
#include "transport/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/status_matchers.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport.h"
#include "transport/proxy_header_test_util.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using ::testing::HasSubstr;
using testutil::kWait;

// On connection, one line: what the handler sees. Then echoes; "STARTTLS\n" switches to
// the TLS transport in handler_options, and the next data is answered with the line
// again.
class WhoHandler : public Handler {
 public:
  explicit WhoHandler(std::shared_ptr<TlsTransport> tls) : tls_(std::move(tls)) {}

  static std::string Describe(Connection& conn) {
    absl::StatusOr<SocketInfo> peer = conn.PeerInfo();
    absl::StatusOr<SocketInfo> local = conn.LocalInfo();
    std::string line = absl::StrCat("peer=", peer.ok() ? peer->ToString() : "?",
                                    " local=", local.ok() ? local->ToString() : "?");
    absl::StatusOr<ProxyHeader> header = conn.GetProxyHeader();
    if (!header.ok()) return line + " header=none\n";
    absl::StrAppend(&line, " header=v", header->version,
                    header->command == ProxyHeader::Command::kLocal ? "/local" : "",
                    " proxy=", header->proxy.ToString());
    if (header->alpn) absl::StrAppend(&line, " alpn=", *header->alpn);
    if (header->authority) absl::StrAppend(&line, " authority=", *header->authority);
    if (header->unique_id) absl::StrAppend(&line, " id=", *header->unique_id);
    if (header->ssl) absl::StrAppend(&line, " cn=", header->ssl->cn);
    if (header->crc32c_verified) absl::StrAppend(&line, " crc=ok");
    for (const ProxyTlv& tlv : header->tlvs) {
      if (tlv.type >= 0xE0) absl::StrAppend(&line, " tlv", static_cast<int>(tlv.type), "=", tlv.value);
    }
    if (conn.Secure()) absl::StrAppend(&line, " secure");
    return line + "\n";
  }

  HandlerResult HandleConnection(Connection& conn) override {
    conn.Send(Describe(conn)).IgnoreError();
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (tls_ != nullptr && data == "STARTTLS\n") {
      conn.Send("go\n").IgnoreError();
      switched_ = true;
      return HandlerResult::SwitchTransport(tls_.get());
    }
    if (switched_) {
      switched_ = false;
      conn.Send(Describe(conn)).IgnoreError();
    }
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }

 private:
  std::shared_ptr<TlsTransport> tls_;
  bool switched_ = false;
};

struct Pki {
  TestCertificateAuthority ca = TestCertificateAuthority::Create();
  TestCertificate server = ca.IssueServer("localhost");
};

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

std::shared_ptr<TlsTransport> MakeTls() {
  TlsOptions options;
  options.credentials = TlsCredentials::FromPem(pki().server.chain_pem(), pki().server.key_pem);
  absl::StatusOr<std::shared_ptr<TlsTransport>> tls = TlsTransport::Create(options);
  EXPECT_THAT(tls, IsOk());
  return tls.ok() ? *tls : nullptr;
}

ProxyProtocolOptions Trusting(std::vector<std::string> networks = {"127.0.0.0/8"}) {
  ProxyProtocolOptions options;
  options.trusted_networks = std::move(networks);
  return options;
}

class ProxyProtocolTest : public testutil::ServerFixture {
 protected:
  // A server over `inner` (TCP when null) behind the PROXY protocol.
  bool StartProxy(ProxyProtocolOptions proxy, std::shared_ptr<Transport> inner = nullptr,
                  std::function<void(ServerOptions&)> adjust = {}) {
    if (inner == nullptr) inner = std::make_shared<TcpTransport>();
    absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> transport =
        ProxyProtocolTransport::Create(std::move(inner), std::move(proxy));
    EXPECT_THAT(transport, IsOk());
    if (!transport.ok()) return false;
    std::shared_ptr<TlsTransport> tls = MakeTls();
    ServerOptions options = testutil::LoopbackOptions(
        [tls](const std::any&) { return std::make_unique<WhoHandler>(tls); });
    options.transport = *transport;
    options.handshake_timeout = absl::Seconds(10);
    if (adjust) adjust(options);
    if (!Start(std::move(options))) return false;
    absl::StatusOr<SocketInfo> where = server_->ListenerInfo();
    port_ = where.ok() ? where->port : 0;
    return where.ok();
  }

  std::unique_ptr<TcpSocket> Client() {
    absl::StatusOr<std::unique_ptr<TcpSocket>> client =
        TcpSocket::Connect({AddressFamily::kIpv4, "127.0.0.1", port_}, kWait);
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }

  // One byte at a time: what follows the line stays unread.
  static std::string ReadLine(Socket& client) {
    std::string line;
    while (line.empty() || line.back() != '\n') {
      absl::StatusOr<std::string> got = client.Recv(1, kWait);
      if (!got.ok()) return absl::StrCat(line, "<", got.status().ToString(), ">");
      line += *got;
    }
    return line;
  }

  // The server closed the connection without a byte for us: an orderly close, or a
  // reset (it closes at once, with our unread bytes in its buffer).
  static bool ClosedWithoutReply(Socket& client) {
    absl::StatusOr<std::string> rest = testutil::ReadToEof(client);
    if (rest.ok()) return rest->empty();
    return absl::IsAborted(rest.status());
  }

  // The error of the one connection.stop, once it is reported.
  absl::Status StopError() {
    EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));
    std::vector<testutil::RecordedEvent> stops =
        telemetry_->Events(TelemetryEventType::kConnectionStop);
    if (stops.empty() || !stops[0].error) return absl::OkStatus();
    return *stops[0].error;
  }

  uint16_t port_ = 0;
};

TEST_F(ProxyProtocolTest, V1OverTcp) {
  ASSERT_TRUE(StartProxy(Trusting()));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  // The header and the first data in one segment: no byte after it may be lost.
  ASSERT_THAT(client->Send("PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\nping"), IsOk());
  absl::StatusOr<SocketInfo> mine = client->LocalInfo();
  ASSERT_THAT(mine, IsOk());
  EXPECT_EQ(ReadLine(*client), absl::StrCat("peer=203.0.113.7:51000 local=198.51.100.1:443 "
                                            "header=v1 proxy=127.0.0.1:",
                                            mine->port, "\n"));
  EXPECT_THAT(client->Recv(4, kWait), IsOkAndHolds("ping"));
  client->Close();
  // Telemetry's remote is the client from connection.ready on.
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));
  std::vector<testutil::RecordedEvent> ready =
      telemetry_->Events(TelemetryEventType::kConnectionReady);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].remote->ToString(), "203.0.113.7:51000");
  EXPECT_EQ(telemetry_->Events(TelemetryEventType::kConnectionStop)[0].remote->ToString(),
            "203.0.113.7:51000");
  // And Server::Connections would list it so: the summary shares remote_.
}

TEST_F(ProxyProtocolTest, V2WithTlvsSentByteByByte) {
  ASSERT_TRUE(StartProxy(Trusting()));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  const std::string header =
      ProxyV2Builder()
          .Inet6("2001:db8::7", 40000, "2001:db8::1", 8443)
          .Tlv(ProxyTlv::kAlpn, "h2")
          .Tlv(ProxyTlv::kAuthority, "api.example.com")
          .Tlv(ProxyTlv::kUniqueId, "req-42")
          .Ssl(ProxySslInfo::kClientSsl, 0, ProxyV2Builder::TlvBytes(ProxyTlv::kSslCn, "alice"))
          .Tlv(0xE1, "custom")
          .Crc32c()
          .Build();
  for (char c : header) {
    ASSERT_THAT(client->Send(absl::string_view(&c, 1)), IsOk());
    absl::SleepFor(absl::Microseconds(200));
  }
  EXPECT_EQ(ReadLine(*client),
            absl::StrCat("peer=[2001:db8::7]:40000 local=[2001:db8::1]:8443 header=v2 proxy=",
                         client->LocalInfo()->ToString(),
                         " alpn=h2 authority=api.example.com id=req-42 cn=alice crc=ok "
                         "tlv225=custom\n"));
  EXPECT_THAT(testutil::RoundTrip(*client, "after"), IsOkAndHolds("after"));
}

TEST_F(ProxyProtocolTest, LocalKeepsTheSocketsAddresses) {
  ASSERT_TRUE(StartProxy(Trusting()));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send(ProxyV2Builder().Local().Build()), IsOk());
  EXPECT_EQ(ReadLine(*client), absl::StrCat("peer=", client->LocalInfo()->ToString(),
                                            " local=", client->PeerInfo()->ToString(),
                                            " header=v2/local proxy=",
                                            client->LocalInfo()->ToString(), "\n"));
}

TEST_F(ProxyProtocolTest, UntrustedSenderIsRefused) {
  ASSERT_TRUE(StartProxy(Trusting({"192.0.2.0/24", "2001:db8::/32"})));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send("PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n"), IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*client));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kPermissionDenied,
                                    "header from 127.0.0.1:"));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kPermissionDenied,
                                    "refused: not a trusted network"));
  EXPECT_EQ(telemetry_->Events(TelemetryEventType::kConnectionStop)[0].detail, "handshake");
}

TEST_F(ProxyProtocolTest, UntrustedClientWithoutHeaderIsServedAsItself) {
  ASSERT_TRUE(StartProxy(Trusting({"192.0.2.0/24"})));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send("hello"), IsOk());
  EXPECT_EQ(ReadLine(*client), absl::StrCat("peer=", client->LocalInfo()->ToString(), " local=",
                                            client->PeerInfo()->ToString(), " header=none\n"));
  EXPECT_THAT(client->Recv(5, kWait), IsOkAndHolds("hello"));
}

TEST_F(ProxyProtocolTest, RequiredHeaderMissingIsRefused) {
  ASSERT_TRUE(StartProxy(Trusting()));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send("GET / HTTP/1.1\r\n\r\n"), IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*client));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    "a header is required from 127.0.0.1:"));
}

TEST_F(ProxyProtocolTest, BadHeaderClosesWithTheReason) {
  ASSERT_TRUE(StartProxy(Trusting()));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(
      client->Send(ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2).Crc32c(true).Build()),
      IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*client));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kInvalidArgument, "CRC32C mismatch"));
  EXPECT_EQ(telemetry_->Events(TelemetryEventType::kConnectionStop)[0].detail, "handshake");
}

TEST_F(ProxyProtocolTest, V1RefusedWhenOnlyV2IsAccepted) {
  ProxyProtocolOptions options = Trusting();
  options.versions = ProxyProtocolOptions::Versions::kV2;
  ASSERT_TRUE(StartProxy(options));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send("PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n"), IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*client));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kInvalidArgument,
                                    "version 1 is not accepted"));
}

TEST_F(ProxyProtocolTest, StalledHalfHeaderClosesAtHandshakeTimeout) {
  ASSERT_TRUE(StartProxy(Trusting(), nullptr, [](ServerOptions& options) {
    options.handshake_timeout = absl::Milliseconds(300);
  }));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  const std::string header = ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2).Build();
  ASSERT_THAT(client->Send(header.substr(0, 20)), IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*client));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                    "handshake: not done within"));
}

TEST_F(ProxyProtocolTest, OptionalModeHandsBackBytesThatWereNotAHeader) {
  ProxyProtocolOptions options = Trusting();
  options.mode = ProxyProtocolOptions::Mode::kOptional;
  ASSERT_TRUE(StartProxy(options));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  // "PRO" could begin a header: the server takes it and waits; "BE" says it was not.
  ASSERT_THAT(client->Send("PRO"), IsOk());
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_THAT(client->Send("BE"), IsOk());
  EXPECT_THAT(ReadLine(*client), HasSubstr("header=none"));
  EXPECT_THAT(client->Recv(5, kWait), IsOkAndHolds("PROBE"));
  // With a header, optional mode honours it.
  std::unique_ptr<TcpSocket> proxied = Client();
  ASSERT_NE(proxied, nullptr);
  ASSERT_THAT(proxied->Send("PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n"), IsOk());
  EXPECT_THAT(ReadLine(*proxied), HasSubstr("peer=203.0.113.7:51000"));
}

TEST_F(ProxyProtocolTest, TlsOverProxy) {
  ASSERT_TRUE(StartProxy(Trusting(), MakeTls()));
  absl::StatusOr<std::unique_ptr<TestTlsClient>> client = TestTlsClient::Connect(port_);
  ASSERT_THAT(client, IsOk());
  // The header first, in the clear, then the ClientHello: as HAProxy's send-proxy-v2.
  ASSERT_THAT((*client)->WritePlain(
                  ProxyV2Builder().Inet("203.0.113.9", 50505, "198.51.100.1", 443).Build()),
              IsOk());
  TlsClientOptions tls;
  tls.ca_pem = pki().ca.cert_pem();
  tls.verify_host = "localhost";
  ASSERT_THAT((*client)->StartTls(tls), IsOk());
  absl::StatusOr<std::string> line = (*client)->Read(1);
  std::string all = line.ok() ? *line : "";
  while (line.ok() && all.back() != '\n') {
    line = (*client)->Read(1);
    if (line.ok()) all += *line;
  }
  EXPECT_THAT(all, HasSubstr("peer=203.0.113.9:50505 local=198.51.100.1:443 header=v2 proxy=127.0.0.1:"));
  EXPECT_THAT(all, HasSubstr(" secure\n"));
  ASSERT_THAT((*client)->Write("tls"), IsOk());
  EXPECT_THAT((*client)->Read(3), IsOkAndHolds("tls"));
}

TEST_F(ProxyProtocolTest, StartTlsKeepsTheHeader) {
  ASSERT_TRUE(StartProxy(Trusting()));
  absl::StatusOr<std::unique_ptr<TestTlsClient>> client = TestTlsClient::Connect(port_);
  ASSERT_THAT(client, IsOk());
  ASSERT_THAT((*client)->WritePlain("PROXY TCP4 203.0.113.7 198.51.100.1 51000 25\r\n"), IsOk());
  EXPECT_THAT((*client)->ReadPlainLine(), IsOkAndHolds(HasSubstr("peer=203.0.113.7:51000")));
  ASSERT_THAT((*client)->WritePlain("STARTTLS\n"), IsOk());
  EXPECT_THAT((*client)->ReadPlainLine(), IsOkAndHolds("go\n"));
  TlsClientOptions tls;
  tls.ca_pem = pki().ca.cert_pem();
  tls.verify_host = "localhost";
  ASSERT_THAT((*client)->StartTls(tls), IsOk());
  ASSERT_THAT((*client)->Write("x"), IsOk());
  std::string all;
  while (all.empty() || all.back() != '\n') {
    absl::StatusOr<std::string> got = (*client)->Read(1);
    ASSERT_THAT(got, IsOk());
    all += *got;
  }
  EXPECT_THAT(all, HasSubstr("peer=203.0.113.7:51000 local=198.51.100.1:25 header=v1"));
  EXPECT_THAT(all, HasSubstr(" secure\n"));
}

TEST_F(ProxyProtocolTest, PerPeerLimitCountsClientsNotTheBalancer) {
  ASSERT_TRUE(StartProxy(Trusting(), nullptr, [](ServerOptions& options) {
    options.max_connections_per_peer = 1;
  }));
  std::unique_ptr<TcpSocket> a = Client();
  std::unique_ptr<TcpSocket> b = Client();
  std::unique_ptr<TcpSocket> a2 = Client();
  ASSERT_TRUE(a && b && a2);
  ASSERT_THAT(a->Send("PROXY TCP4 203.0.113.1 198.51.100.1 1000 443\r\n"), IsOk());
  EXPECT_THAT(ReadLine(*a), HasSubstr("peer=203.0.113.1:1000"));
  // Another client through the same balancer: served.
  ASSERT_THAT(b->Send("PROXY TCP4 203.0.113.2 198.51.100.1 1000 443\r\n"), IsOk());
  EXPECT_THAT(ReadLine(*b), HasSubstr("peer=203.0.113.2:1000"));
  // The first client again: over its limit.
  ASSERT_THAT(a2->Send("PROXY TCP4 203.0.113.1 198.51.100.1 1001 443\r\n"), IsOk());
  EXPECT_TRUE(ClosedWithoutReply(*a2));
  EXPECT_THAT(StopError(), StatusIs(absl::StatusCode::kResourceExhausted,
                                    "1 connections from 203.0.113.1 already"));
}

TEST(ProxyProtocolOptionsTest, Validation) {
  auto with = [](std::vector<std::string> networks) {
    ProxyProtocolOptions options;
    options.trusted_networks = std::move(networks);
    return ValidateProxyProtocolOptions(options);
  };
  EXPECT_THAT(with({"10.0.0.0/8", "192.0.2.7", "::1", "2001:db8::/32", "0.0.0.0/0", "::/0"}),
              IsOk());
  EXPECT_THAT(with({}), StatusIs(absl::StatusCode::kInvalidArgument, "trusted_networks: empty"));
  EXPECT_THAT(with({"10.0.0.0/8", "10.0.0.0/33"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "trusted_networks: \"10.0.0.0/33\": prefix length above 32"));
  EXPECT_THAT(with({"::/129"}), StatusIs(absl::StatusCode::kInvalidArgument, "above 128"));
  EXPECT_THAT(with({"10.0.0/8"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                           "\"10.0.0/8\": not an IPv4 or IPv6 address"));
  EXPECT_THAT(with({"10.0.0.0/"}), StatusIs(absl::StatusCode::kInvalidArgument, "not a number"));
  EXPECT_THAT(with({"10.0.0.0/-1"}), StatusIs(absl::StatusCode::kInvalidArgument, "not a number"));
  EXPECT_THAT(with({"10.0.0.0/+8"}), StatusIs(absl::StatusCode::kInvalidArgument, "not a number"));
  EXPECT_THAT(with({"example.com"}), StatusIs(absl::StatusCode::kInvalidArgument));
  ProxyProtocolOptions unix_only;
  unix_only.trust_unix_peers = true;
  EXPECT_THAT(ValidateProxyProtocolOptions(unix_only), IsOk());
  unix_only.max_v2_length = 8;
  EXPECT_THAT(ValidateProxyProtocolOptions(unix_only),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_v2_length"));
  EXPECT_THAT(ProxyProtocolTransport::Create(nullptr, Trusting()),
              StatusIs(absl::StatusCode::kInvalidArgument, "no inner transport"));
  EXPECT_THAT(ProxyProtocolTransport::Create(std::make_shared<TcpTransport>(), unix_only),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// A server on a listening socket passed in (systemd, a predecessor): the PROXY header
// still comes first, and Stop leaves the socket listening for whoever else holds it.
TEST_F(ProxyProtocolTest, AnAdoptedListeningSocketReadsTheHeaderAndOutlivesStop) {
  UniqueFd listening(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(listening.get(), 16), 0);
  ASSERT_TRUE(StartProxy(Trusting(), nullptr, [&](ServerOptions& options) {
    options.listen_fds = {listening.get()};
  }));
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Send("PROXY TCP4 203.0.113.9 198.51.100.1 52000 443\r\n"), IsOk());
  EXPECT_TRUE(absl::StartsWith(ReadLine(*client), "peer=203.0.113.9:52000 "));
  client->Close();
  ASSERT_TRUE(server_->Stop().ok());
  // Still listening: a connect completes in the backlog.
  absl::StatusOr<std::unique_ptr<TcpSocket>> after =
      TcpSocket::Connect({AddressFamily::kIpv4, "127.0.0.1", port_}, kWait);
  EXPECT_THAT(after, IsOk());
}

TEST(ProxyProtocolTransportTest, NamesAndDelegation) {
  absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> tcp =
      ProxyProtocolTransport::Create(std::make_shared<TcpTransport>(), Trusting());
  ASSERT_THAT(tcp, IsOk());
  EXPECT_EQ((*tcp)->Name(), "proxy_protocol+tcp");
  EXPECT_FALSE((*tcp)->Secure());
  EXPECT_FALSE((*tcp)->PeerKnownAtAccept());
  absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> tls =
      ProxyProtocolTransport::Create(MakeTls(), Trusting());
  ASSERT_THAT(tls, IsOk());
  EXPECT_EQ((*tls)->Name(), "proxy_protocol+tls");
  EXPECT_TRUE((*tls)->Secure());
}

}  // namespace
}  // namespace islet
