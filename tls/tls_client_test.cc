// The TLS client for outbound connections (TlsClient, OutboundOptions::tls): against our
// own TLS server and openssl s_server, over loopback. The server is verified (CA, name,
// validity), SNI and ALPN go out, a client certificate is presented, sessions resume on
// reconnect, and each failure reaches HandleError with its reason.
#include "tls/tls_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::EchoHandler;
using testutil::EventRecorder;
using testutil::kWait;

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

// Records what an outbound TLS connection saw, sends `request` and closes once
// `expect` has arrived.
class Probe : public Handler {
 public:
  Probe(EventRecorder* events, std::string request, std::string expect)
      : events_(events), request_(std::move(request)), expect_(std::move(expect)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    absl::StatusOr<ConnectionInformation> info = conn.GetConnectionInformation();
    if (info.ok()) {
      events_->Record(absl::StrCat("alpn:", info->alpn));
      events_->Record(absl::StrCat("resumed:", info->session_resumed));
      events_->Record(absl::StrCat("sni:", info->server_name));
    }
    absl::StatusOr<SocketInfo> peer = conn.PeerInfo();
    if (peer.ok() && peer->peer_certificate.has_value()) {
      events_->Record(absl::StrCat("peer:", CommonNameOfCertificate(*peer->peer_certificate)));
    }
    events_->Record("connected");
    if (expect_.empty()) return HandlerResult::Close();  // only the handshake was wanted
    conn.Send(request_).IgnoreError();
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    received_.append(data.data(), data.size());
    if (absl::StrContains(received_, expect_)) {
      events_->Record("answered");
      return HandlerResult::Close();
    }
    return HandlerResult::Continue();
  }
  void HandleError(const absl::Status& error, Connection& conn) override {
    events_->Record(absl::StrCat("error:", absl::StatusCodeToString(error.code()), ":",
                                 error.message()));
    events_->Record("ended");
  }
  void HandleClose(Connection& conn) override { events_->Record("ended"); }
  void HandleShutdown(Connection& conn) override { events_->Record("ended"); }
  void HandleTimeout(Connection& conn) override { events_->Record("ended"); }

 private:
  EventRecorder* events_;
  std::string request_;
  std::string expect_;
  std::string received_;
};

// The first recorded event starting with `prefix`, or "".
std::string Find(const EventRecorder& events, absl::string_view prefix) {
  for (const std::string& e : events.Events()) {
    if (absl::StartsWith(e, prefix)) return e;
  }
  return "";
}

class TlsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The side that opens: a plain server whose workers host the outbound connections.
    opener_ = testutil::MustStart(testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>()));
    ASSERT_NE(opener_, nullptr);
  }

  // A TLS echo server with `options` (credentials for "localhost" from ca_ by default).
  uint16_t StartTlsServer(TlsOptions options) {
    absl::StatusOr<std::shared_ptr<TlsTransport>> tls = TlsTransport::Create(std::move(options));
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return 0;
    ServerOptions server = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
    server.transport = *tls;
    upstream_ = testutil::MustStart(std::move(server));
    return upstream_ == nullptr ? 0 : upstream_->ListenerInfo()->port;
  }
  uint16_t StartTlsServer(const TestCertificate& cert) {
    TlsOptions options;
    options.credentials = TlsCredentials::FromPem(cert.chain_pem(), cert.key_pem);
    options.alpn_protocols = {"http/1.1"};
    return StartTlsServer(std::move(options));
  }

  std::shared_ptr<TlsClient> MustClient(OutboundTlsOptions options) {
    absl::StatusOr<std::shared_ptr<TlsClient>> client = TlsClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *client : nullptr;
  }

  // Opens one TLS connection to `port`, sends "ping", and waits until it has ended.
  void OpenAndWait(uint16_t port, std::shared_ptr<TlsClient> client,
                   absl::Duration connect_timeout = absl::Seconds(10),
                   std::string request = "ping", std::string expect = "ping") {
    events_.Clear();
    OutboundOptions out;
    out.endpoint = Loopback(port);
    out.connect_timeout = connect_timeout;
    out.tls = std::move(client);
    out.handler = std::make_unique<Probe>(&events_, std::move(request), std::move(expect));
    absl::StatusOr<ConnectionHandle> opened = opener_->Open(std::move(out));
    ASSERT_TRUE(opened.ok()) << opened.status();
    ASSERT_TRUE(events_.WaitFor("ended", kWait)) << "the connection never ended";
  }

  TestCertificateAuthority ca_ = TestCertificateAuthority::Create();
  EventRecorder events_;
  std::unique_ptr<Server> upstream_;
  std::unique_ptr<Server> opener_;  // last: stopped first
};

TEST_F(TlsClientTest, VerifiesTheServerAndSpeaksThroughTls) {
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  options.alpn_protocols = {"h2", "http/1.1"};  // the server knows only the second
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ");
  EXPECT_TRUE(events_.Contains("alpn:http/1.1"));
  EXPECT_TRUE(events_.Contains("sni:localhost"));
  EXPECT_TRUE(events_.Contains("peer:localhost"));
  EXPECT_TRUE(events_.Contains("resumed:0"));
}

TEST_F(TlsClientTest, VerifiesAnIpAddressWhenNoNameIsGiven) {
  TestIssueOptions issue;
  issue.ip_addresses = {"127.0.0.1"};
  const uint16_t port = StartTlsServer(ca_.IssueServer("by-address", issue));
  OutboundTlsOptions options;
  options.ca_file = WriteTestFile("ca.pem", ca_.cert_pem());
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ");
  EXPECT_TRUE(events_.Contains("sni:"));  // no SNI for an address
}

TEST_F(TlsClientTest, ResumesTheSessionOnReconnect) {
  for (TlsVersion version : {TlsVersion::kTls1_2, TlsVersion::kTls1_3}) {
    SCOPED_TRACE(static_cast<int>(version));
    const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
    OutboundTlsOptions options;
    options.ca_pem = ca_.cert_pem();
    options.server_name = "localhost";
    options.max_version = version;
    std::shared_ptr<TlsClient> client = MustClient(std::move(options));
    OpenAndWait(port, client);
    EXPECT_TRUE(events_.Contains("resumed:0")) << absl::StrJoin(events_.Events(), " | ");
    EXPECT_EQ(client->cached_sessions(), 1u);
    OpenAndWait(port, client);
    EXPECT_TRUE(events_.Contains("answered"));
    EXPECT_TRUE(events_.Contains("resumed:1")) << absl::StrJoin(events_.Events(), " | ");
  }
}

TEST_F(TlsClientTest, NoResumptionWithTheCacheOff) {
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  options.session_cache_size = 0;
  std::shared_ptr<TlsClient> client = MustClient(std::move(options));
  OpenAndWait(port, client);
  OpenAndWait(port, client);
  EXPECT_TRUE(events_.Contains("resumed:0")) << absl::StrJoin(events_.Events(), " | ");
  EXPECT_EQ(client->cached_sessions(), 0u);
}

TEST_F(TlsClientTest, TheCacheIsBounded) {
  const uint16_t port_a = StartTlsServer(ca_.IssueServer("localhost"));
  std::unique_ptr<Server> first = std::move(upstream_);
  const uint16_t port_b = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  options.session_cache_size = 1;
  std::shared_ptr<TlsClient> client = MustClient(std::move(options));
  OpenAndWait(port_a, client);
  OpenAndWait(port_b, client);
  EXPECT_EQ(client->cached_sessions(), 1u);
  OpenAndWait(port_a, client);  // its session was evicted by b's
  EXPECT_TRUE(events_.Contains("resumed:0")) << absl::StrJoin(events_.Events(), " | ");
}

TEST_F(TlsClientTest, PresentsAClientCertificate) {
  TlsOptions server;
  const TestCertificate cert = ca_.IssueServer("localhost");
  server.credentials = TlsCredentials::FromPem(cert.chain_pem(), cert.key_pem);
  server.client_certificate = ClientCertificateMode::kRequired;
  server.client_ca_pem = ca_.cert_pem();
  server.max_version = TlsVersion::kTls1_2;  // the refusal then comes in the handshake
  const uint16_t port = StartTlsServer(std::move(server));
  const TestCertificate alice = ca_.IssueClient("alice");

  OutboundTlsOptions with;
  with.ca_pem = ca_.cert_pem();
  with.server_name = "localhost";
  with.client_credentials = TlsCredentials::FromPem(alice.chain_pem(), alice.key_pem);
  OpenAndWait(port, MustClient(std::move(with)));
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ");

  OutboundTlsOptions without;
  without.ca_pem = ca_.cert_pem();
  without.server_name = "localhost";
  OpenAndWait(port, MustClient(std::move(without)));
  EXPECT_FALSE(events_.Contains("connected"));
  EXPECT_NE(Find(events_, "error:"), "") << absl::StrJoin(events_.Events(), " | ");
}

TEST_F(TlsClientTest, AnUntrustedCaIsRefused) {
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;
  options.ca_pem = TestCertificateAuthority::Create().cert_pem();  // another CA
  options.server_name = "localhost";
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  const std::string error = Find(events_, "error:");
  EXPECT_TRUE(absl::StartsWith(error, "error:UNAUTHENTICATED:")) << error;
  // The server sends its chain up to its (self-signed) root, which nothing here trusts.
  EXPECT_TRUE(absl::StrContains(error, "self signed certificate in certificate chain")) << error;
}

TEST_F(TlsClientTest, TheSystemStoreDoesNotTrustATestCa) {
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;  // no CA: the system store
  options.server_name = "localhost";
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  EXPECT_TRUE(absl::StartsWith(Find(events_, "error:"), "error:UNAUTHENTICATED:"))
      << absl::StrJoin(events_.Events(), " | ");
}

TEST_F(TlsClientTest, AWrongNameIsRefused) {
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost"));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "api.example.com";
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  const std::string error = Find(events_, "error:");
  EXPECT_TRUE(absl::StartsWith(error, "error:UNAUTHENTICATED:")) << error;
  EXPECT_TRUE(absl::StrContains(error, "Hostname mismatch")) << error;
}

TEST_F(TlsClientTest, AWrongAddressIsRefused) {
  TestIssueOptions issue;
  issue.ip_addresses = {"127.0.0.2"};
  const uint16_t port = StartTlsServer(ca_.IssueServer("elsewhere", issue));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();  // no name: the endpoint's 127.0.0.1 must be in it
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  EXPECT_TRUE(absl::StrContains(Find(events_, "error:"), "IP address mismatch"))
      << absl::StrJoin(events_.Events(), " | ");
}

TEST_F(TlsClientTest, AnExpiredCertificateIsRefused) {
  TestIssueOptions issue;
  issue.not_before_offset = absl::Hours(-48);
  issue.valid_for = absl::Hours(1);
  const uint16_t port = StartTlsServer(ca_.IssueServer("localhost", issue));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  const std::string error = Find(events_, "error:");
  EXPECT_TRUE(absl::StartsWith(error, "error:UNAUTHENTICATED:")) << error;
  EXPECT_TRUE(absl::StrContains(error, "certificate has expired")) << error;
}

TEST_F(TlsClientTest, ASelfSignedCertificateIsRefused) {
  // A self-signed server certificate for the right name, made by openssl.
  const std::string cert_file = TestTempPath("self.pem");
  const std::string key_file = TestTempPath("self.key");
  CommandResult made = RunCommand(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=DNS:localhost", "-days", "1", "-keyout", key_file, "-out", cert_file});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  TlsOptions server;
  server.credentials = TlsCredentials::FromFiles(cert_file, key_file);
  const uint16_t port = StartTlsServer(std::move(server));
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  OpenAndWait(port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  const std::string error = Find(events_, "error:");
  EXPECT_TRUE(absl::StartsWith(error, "error:UNAUTHENTICATED:")) << error;
  EXPECT_TRUE(absl::StrContains(error, "self signed certificate")) << error;
}

TEST_F(TlsClientTest, APlainServerFailsTheHandshake) {
  // A plain TCP echo server answers the ClientHello with itself.
  std::unique_ptr<Server> plain =
      testutil::MustStart(testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>()));
  ASSERT_NE(plain, nullptr);
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  OpenAndWait(plain->ListenerInfo()->port, MustClient(std::move(options)));
  EXPECT_FALSE(events_.Contains("connected"));
  EXPECT_TRUE(absl::StartsWith(Find(events_, "error:"), "error:ABORTED:handshake: TLS"))
      << absl::StrJoin(events_.Events(), " | ");
}

TEST_F(TlsClientTest, ASilentServerIsCutAtTheConnectTimeout) {
  // The kernel completes the TCP connect into the backlog; nobody ever answers TLS.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  socklen_t length = sizeof(addr);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  OpenAndWait(ntohs(addr.sin_port), MustClient(std::move(options)), absl::Milliseconds(300));
  EXPECT_FALSE(events_.Contains("connected"));
  const std::string error = Find(events_, "error:");
  EXPECT_TRUE(absl::StartsWith(error, "error:DEADLINE_EXCEEDED:")) << error;
  EXPECT_TRUE(absl::StrContains(error, "TLS handshake not done within 300ms")) << error;
}

TEST_F(TlsClientTest, BadOptionsAreRefusedByField) {
  OutboundTlsOptions both;
  both.ca_file = "/nonexistent.pem";
  both.ca_pem = ca_.cert_pem();
  EXPECT_EQ(TlsClient::Create(both).status().code(), absl::StatusCode::kInvalidArgument);
  OutboundTlsOptions missing;
  missing.ca_file = "/nonexistent/ca.pem";
  absl::Status status = TlsClient::Create(missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "ca_file")) << status;
  OutboundTlsOptions alpn;
  alpn.ca_pem = ca_.cert_pem();
  alpn.alpn_protocols = {"h2", ""};
  status = TlsClient::Create(alpn).status();
  EXPECT_TRUE(absl::StrContains(status.message(), "alpn_protocols[1]")) << status;
  OutboundTlsOptions bad_key;
  bad_key.ca_pem = ca_.cert_pem();
  bad_key.client_credentials = TlsCredentials::FromPem(ca_.cert_pem(), "not a key");
  status = TlsClient::Create(bad_key).status();
  EXPECT_TRUE(absl::StrContains(status.message(), "client_credentials")) << status;
}

// ---- Against openssl s_server ----

class TlsClientOpensslTest : public TlsClientTest {};

TEST_F(TlsClientOpensslTest, VerifiesResumesAndSpeaksWithOpensslSServer) {
  const TestCertificate cert = ca_.IssueServer("localhost");
  const std::string cert_file = WriteTestFile("server.pem", cert.chain_pem());
  const std::string key_file = WriteTestFile("server.key", cert.key_pem);
  // A port the kernel picked, freed for s_server (which cannot report one it picked).
  uint16_t port = 0;
  {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t length = sizeof(addr);
    ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
    port = ntohs(addr.sin_port);
  }
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(
      {"/usr/bin/openssl", "s_server", "-accept", absl::StrCat("127.0.0.1:", port), "-cert",
       cert_file, "-key", key_file, "-www", "-alpn", "http/1.1", "-quiet"},
      SubprocessOptions{.stderr_to_stdout = true});
  ASSERT_TRUE(server.ok()) << server.status();
  // s_server listens once it has read its files; connects until then are refused.
  ASSERT_TRUE(testutil::WaitFor([&] { return testutil::ConnectErrno(port) == 0; }))
      << (*server)->Stdout();

  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  options.alpn_protocols = {"h2", "http/1.1"};
  std::shared_ptr<TlsClient> client = MustClient(std::move(options));
  const std::string request = "GET / HTTP/1.0\r\n\r\n";
  OpenAndWait(port, client, absl::Seconds(10), request, "HTTP/1.0 200 ok");
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ")
                                            << (*server)->Stdout();
  EXPECT_TRUE(events_.Contains("alpn:http/1.1"));
  EXPECT_TRUE(events_.Contains("resumed:0"));
  OpenAndWait(port, client, absl::Seconds(10), request, "HTTP/1.0 200 ok");
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ");
  EXPECT_TRUE(events_.Contains("resumed:1")) << absl::StrJoin(events_.Events(), " | ");
}

// ---- Against nginx ----

TEST_F(TlsClientOpensslTest, VerifiesResumesAndNegotiatesAlpnWithNginx) {
  constexpr char kNginx[] = "/usr/sbin/nginx";
  if (::access(kNginx, X_OK) != 0) GTEST_SKIP() << "no " << kNginx << " (tools/setup.sh)";
  const TestCertificate cert = ca_.IssueServer("localhost");
  const std::string cert_file = WriteTestFile("nginx.pem", cert.chain_pem());
  const std::string key_file = WriteTestFile("nginx.key", cert.key_pem);
  const std::string prefix = TestTempPath("nginx");
  ASSERT_EQ(::mkdir(prefix.c_str(), 0755), 0);
  uint16_t port = 0;
  {
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t length = sizeof(addr);
    ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
    port = ntohs(addr.sin_port);
  }
  // One process in the foreground, everything under the test's scratch directory,
  // listening on loopback only.
  const std::string conf = WriteTestFile(
      "nginx.conf",
      absl::StrCat("daemon off;\nmaster_process off;\nerror_log stderr warn;\n",
                   "pid ", prefix, "/nginx.pid;\n",
                   "events { worker_connections 64; }\n",
                   "http {\n  access_log off;\n",
                   "  client_body_temp_path ", prefix, "/body;\n",
                   "  proxy_temp_path ", prefix, "/proxy;\n",
                   "  fastcgi_temp_path ", prefix, "/fastcgi;\n",
                   "  uwsgi_temp_path ", prefix, "/uwsgi;\n",
                   "  scgi_temp_path ", prefix, "/scgi;\n",
                   "  server {\n    listen 127.0.0.1:", port, " ssl http2;\n",
                   "    ssl_certificate ", cert_file, ";\n",
                   "    ssl_certificate_key ", key_file, ";\n",
                   "    ssl_session_cache shared:islet:1m;\n",
                   "    location / { return 200 \"hello from nginx\\n\"; }\n",
                   "  }\n}\n"));
  absl::StatusOr<std::unique_ptr<Subprocess>> nginx = Subprocess::Start(
      {kNginx, "-p", prefix, "-c", conf}, SubprocessOptions{.stderr_to_stdout = true});
  ASSERT_TRUE(nginx.ok()) << nginx.status();
  ASSERT_TRUE(testutil::WaitFor([&] { return testutil::ConnectErrno(port) == 0; }))
      << (*nginx)->Stdout();

  OutboundTlsOptions options;
  options.ca_pem = ca_.cert_pem();
  options.server_name = "localhost";
  options.alpn_protocols = {"http/1.1"};  // nginx would pick h2 if offered first
  std::shared_ptr<TlsClient> client = MustClient(std::move(options));
  const std::string request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  OpenAndWait(port, client, absl::Seconds(10), request, "hello from nginx");
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ")
                                            << (*nginx)->Stdout();
  EXPECT_TRUE(events_.Contains("alpn:http/1.1"));
  EXPECT_TRUE(events_.Contains("resumed:0"));
  OpenAndWait(port, client, absl::Seconds(10), request, "hello from nginx");
  EXPECT_TRUE(events_.Contains("answered")) << absl::StrJoin(events_.Events(), " | ");
  EXPECT_TRUE(events_.Contains("resumed:1")) << absl::StrJoin(events_.Events(), " | ");

  // h2 first: nginx prefers it too.
  OutboundTlsOptions h2;
  h2.ca_pem = ca_.cert_pem();
  h2.server_name = "localhost";
  h2.alpn_protocols = {"h2", "http/1.1"};
  OpenAndWait(port, MustClient(std::move(h2)), absl::Seconds(10), "", "");
  EXPECT_TRUE(events_.Contains("alpn:h2")) << absl::StrJoin(events_.Events(), " | ");
  (*nginx)->Kill();
}

}  // namespace
}  // namespace islet
