// The TLS transport against real clients that share no code with it: `openssl s_client`
// and `curl` (both OpenSSL 3). Each test is skipped, saying why, when its program is
// not installed (tools/setup.sh installs both).
//
// The server side runs on a thread of the test: it accepts a known number of
// connections, handshakes each (bounded), and runs the test's handler; the program runs
// under RunCommand with a deadline. Nothing waits unbounded.
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport.h"

namespace islet {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

struct Pki {
  TestCertificateAuthority ca = TestCertificateAuthority::Create();
  TestCertificate ec_server = ca.IssueServer("ecdsa.test");
  TestCertificate rsa_server = ca.IssueServer("rsa.test", {.key_type = TestKeyType::kRsa2048});
  TestCertificate client = ca.IssueClient("alice");
  std::string ca_file = WriteTestFile("ca.pem", ca.cert_pem());
  std::string client_cert_file = WriteTestFile("client.pem", client.cert_pem);
  std::string client_key_file = WriteTestFile("client.key", client.key_pem);
};

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

// What the server saw of one connection.
struct Served {
  absl::Status handshake = absl::UnknownError("not accepted");
  absl::StatusOr<ConnectionInformation> info = absl::UnknownError("no handshake");
  absl::StatusOr<SocketInfo> peer = absl::UnknownError("no handshake");
  std::string request;   // what the handler read
  absl::Status end;      // how the handler's last read ended
};

using Handler = std::function<void(Socket&, Served&)>;

// Reads until `terminator` has arrived (or the connection ends); the status of the last
// read goes to `served.end` when it failed.
void ReadUntil(Socket& socket, absl::string_view terminator, Served& served) {
  while (!absl::StrContains(served.request, terminator)) {
    absl::StatusOr<std::string> got = socket.Recv(0, kTestWait);
    if (!got.ok()) {
      served.end = got.status();
      return;
    }
    served.request += *got;
  }
}

// The line protocol s_client speaks here: a line in, "pong" back, then the client's end.
void PongHandler(Socket& socket, Served& served) {
  ReadUntil(socket, "\n", served);
  if (!served.end.ok()) return;
  EXPECT_THAT(socket.Send("pong\n"), IsOk());
  served.end = socket.Recv(1, kTestWait).status();
}

// A one-request HTTP/1.1 server: `body` for any request, then close (with close_notify).
Handler HttpHandler(std::string body) {
  return [body = std::move(body)](Socket& socket, Served& served) {
    ReadUntil(socket, "\r\n\r\n", served);
    if (!served.end.ok()) return;
    EXPECT_THAT(socket.Send({absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", body.size(),
                                          "\r\nConnection: close\r\n\r\n"),
                             body}),
                IsOk());
  };
}

class ExternalTest : public TlsListenerTest {
 protected:
  void SetUp() override {
    openssl_ = FindProgram("openssl");
    curl_ = FindProgram("curl");
  }

  void TearDown() override {
    if (server_.joinable()) server_.join();
  }

  // Serves `count` connections, one after the other, on a thread.
  void Serve(int count, Handler handler) {
    served_.assign(count, Served());
    server_ = std::thread([this, count, handler = std::move(handler)] {
      for (int i = 0; i < count; ++i) {
        Served& s = served_[i];
        absl::StatusOr<std::unique_ptr<Socket>> socket = AcceptWithin(*listener_);
        if (!socket.ok()) {
          s.handshake = socket.status();
          return;
        }
        s.handshake = (*socket)->Handshake(kTestWait);
        if (!s.handshake.ok()) continue;
        s.info = (*socket)->GetConnectionInformation();
        s.peer = (*socket)->PeerInfo();
        handler(**socket, s);
      }
    });
  }

  // Waits for the server thread; then served_ is safe to read.
  void Join() {
    if (server_.joinable()) server_.join();
  }

  std::vector<std::string> SClient(std::vector<std::string> extra) const {
    std::vector<std::string> argv = {openssl_,
                                     "s_client",
                                     "-connect",
                                     absl::StrCat("127.0.0.1:", port_),
                                     "-servername",
                                     "localhost",
                                     "-CAfile",
                                     pki().ca_file,
                                     "-verify_return_error",
                                     "-verify_hostname",
                                     "localhost"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // s_client sends `line`, waits for "pong", then ends its input (and so the session,
  // with close_notify).
  CommandResult RunSClient(std::vector<std::string> extra, std::string line = "ping\n") const {
    CommandOptions options;
    options.input = std::move(line);
    options.close_input_when = [](const std::string& out) { return absl::StrContains(out, "pong"); };
    return RunCommand(SClient(std::move(extra)), options);
  }

  std::vector<std::string> Curl(const std::string& host, std::vector<std::string> extra) const {
    std::vector<std::string> argv = {curl_, "-sS", "--max-time", "15", "--cacert", pki().ca_file,
                                     "--resolve", absl::StrCat(host, ":", port_, ":127.0.0.1"),
                                     "-w", "\n[%{http_version}]"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(absl::StrCat("https://", host, ":", port_, "/hello"));
    return argv;
  }

  std::string openssl_;
  std::string curl_;
  std::thread server_;
  std::vector<Served> served_;
};

#define REQUIRE_PROGRAM(path, name)                                                    \
  if ((path).empty()) {                                                               \
    GTEST_SKIP() << name << " is not installed (apt-get install -y " << name           \
                 << ", or run tools/setup.sh)";                                        \
  }

// ---- openssl s_client ----

TEST_F(ExternalTest, OpensslTls13WithAlpnAndCloseNotify) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  TlsOptions options = OptionsFor(pki().ec_server);
  options.alpn_protocols = {"h2", "http/1.1"};
  ASSERT_THAT(Listen(options), IsOk());
  Serve(1, PongHandler);
  CommandResult r = RunSClient({"-tls1_3", "-alpn", "http/1.1,h2"});
  Join();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Verify return code: 0 (ok)"));
  EXPECT_THAT(r.output, HasSubstr("ALPN protocol: h2"));
  EXPECT_THAT(r.output, HasSubstr("TLSv1.3"));
  EXPECT_THAT(r.output, HasSubstr("pong"));
  ASSERT_THAT(served_[0].handshake, IsOk());
  EXPECT_EQ(served_[0].request, "ping\n");
  ASSERT_THAT(served_[0].info, IsOk());
  EXPECT_EQ(served_[0].info->protocol_version, "TLSv1.3");
  EXPECT_EQ(served_[0].info->alpn, "h2");
  EXPECT_EQ(served_[0].info->server_name, "localhost");
  // s_client ends with close_notify when its input ends.
  EXPECT_THAT(served_[0].end, StatusIs(absl::StatusCode::kOutOfRange, "close_notify"));
}

TEST_F(ExternalTest, OpensslTls12WithRsa) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  ASSERT_THAT(Listen(OptionsFor(pki().rsa_server)), IsOk());
  Serve(1, PongHandler);
  CommandResult r = RunSClient({"-tls1_2"});
  Join();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Verify return code: 0 (ok)"));
  EXPECT_THAT(r.output, HasSubstr("ECDHE-RSA-"));
  EXPECT_THAT(r.output, HasSubstr("pong"));
  ASSERT_THAT(served_[0].info, IsOk());
  EXPECT_EQ(served_[0].info->protocol_version, "TLSv1.2");
  EXPECT_THAT(served_[0].info->cipher, HasSubstr("TLS_ECDHE_RSA_WITH_"));
}

TEST_F(ExternalTest, OpensslTls11IsRefused) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  Serve(1, PongHandler);
  // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all.
  CommandResult r = RunSClient({"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"});
  Join();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("pong")));
  EXPECT_THAT(served_[0].handshake,
              StatusIs(absl::StatusCode::kAborted, "handshake: TLS alert: protocol version (sent; UNSUPPORTED_PROTOCOL)"));
}

// A BoringSSL server never renegotiates: s_client's "R" command (a new ClientHello on
// an established TLS 1.2 connection) gets a fatal no_renegotiation alert.
TEST_F(ExternalTest, OpensslRenegotiationIsRefused) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  Serve(1, [](Socket& socket, Served& served) {
    absl::StatusOr<std::string> got = socket.Recv(0, kTestWait);
    served.end = got.status();
    if (got.ok()) served.request = *got;
  });
  CommandOptions options;
  // "R" asks for a renegotiation, which starts with the next write ("hello").
  options.input = "R\nhello\n";
  options.close_input_when = [](const std::string& out) {
    return absl::StrContains(out, "alert") || absl::StrContains(out, "errno");
  };
  CommandResult r = RunCommand(SClient({"-tls1_2"}), options);
  Join();
  ASSERT_THAT(served_[0].handshake, IsOk());
  EXPECT_THAT(r.output, HasSubstr("RENEGOTIATING"));
  EXPECT_THAT(served_[0].end, StatusIs(absl::StatusCode::kAborted, "no renegotiation"))
      << "read: " << served_[0].request << "\ns_client: " << r.output;
  EXPECT_THAT(r.output, HasSubstr("no renegotiation"));
}

TEST_F(ExternalTest, OpensslResumesWithASavedSession) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    const std::string session = TestTempPath("session.pem");
    Serve(2, PongHandler);
    CommandResult first = RunSClient({version, "-sess_out", session});
    CommandResult second = RunSClient({version, "-sess_in", session});
    Join();
    EXPECT_EQ(first.exit_code, 0) << first.output;
    EXPECT_EQ(second.exit_code, 0) << second.output;
    EXPECT_THAT(first.output, HasSubstr("New, TLSv1."));
    EXPECT_THAT(second.output, HasSubstr("Reused, TLSv1."));
    ASSERT_THAT(served_[0].info, IsOk());
    ASSERT_THAT(served_[1].info, IsOk());
    EXPECT_FALSE(served_[0].info->session_resumed);
    EXPECT_TRUE(served_[1].info->session_resumed);
  }
}

TEST_F(ExternalTest, OpensslClientCertificateRequired) {
  REQUIRE_PROGRAM(openssl_, "openssl");
  TlsOptions options = OptionsFor(pki().ec_server);
  options.client_certificate = ClientCertificateMode::kRequired;
  options.client_ca_file = pki().ca_file;
  ASSERT_THAT(Listen(options), IsOk());
  Serve(2, PongHandler);
  CommandResult with =
      RunSClient({"-cert", pki().client_cert_file, "-key", pki().client_key_file});
  CommandResult without = RunSClient({});
  Join();
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_THAT(with.output, HasSubstr("pong"));
  ASSERT_THAT(served_[0].peer, IsOk());
  EXPECT_THAT(served_[0].peer->peer_certificate, Optional(pki().client.cert_der));
  EXPECT_THAT(without.output, Not(HasSubstr("pong")));
  EXPECT_THAT(served_[1].handshake,
              StatusIs(absl::StatusCode::kUnauthenticated, "certificate required"));
}

// ---- curl ----

TEST_F(ExternalTest, CurlGetsAPageOverHttp11) {
  REQUIRE_PROGRAM(curl_, "curl");
  TlsOptions options = OptionsFor(pki().ec_server);
  options.alpn_protocols = {"http/1.1"};  // curl offers h2 too; this server cannot speak it
  ASSERT_THAT(Listen(options), IsOk());
  Serve(1, HttpHandler("hello from islet"));
  CommandResult r = RunCommand(Curl("localhost", {}));
  Join();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "hello from islet\n[1.1]");
  ASSERT_THAT(served_[0].info, IsOk());
  EXPECT_EQ(served_[0].info->alpn, "http/1.1");
  EXPECT_EQ(served_[0].info->protocol_version, "TLSv1.3");
  EXPECT_THAT(served_[0].request, HasSubstr("GET /hello HTTP/1.1\r\n"));
}

// curl checks the certificate's name against the host it asked for, so a success proves
// SNI chose the certificate for that name, and a name mismatch proves the default was
// served for an unknown name.
TEST_F(ExternalTest, CurlSniChoosesTheCertificate) {
  REQUIRE_PROGRAM(curl_, "curl");
  const TestCertificate fallback =
      pki().ca.IssueServer("default.test", {.dns_names = {"default.test"}});
  const TestCertificate api = pki().ca.IssueServer("api.test", {.dns_names = {"api.test"}});
  TlsOptions options = OptionsFor(fallback);
  options.sni_credentials["api.test"] = TlsCredentials::FromPem(api.chain_pem(), api.key_pem);
  ASSERT_THAT(Listen(options), IsOk());
  Serve(3, HttpHandler("ok"));
  CommandResult to_api = RunCommand(Curl("api.test", {}));
  CommandResult to_default = RunCommand(Curl("default.test", {}));
  CommandResult to_unknown = RunCommand(Curl("other.test", {}));
  Join();
  EXPECT_EQ(to_api.exit_code, 0) << to_api.output;
  EXPECT_EQ(to_default.exit_code, 0) << to_default.output;
  EXPECT_EQ(to_unknown.exit_code, 60) << to_unknown.output;  // CURLE_PEER_FAILED_VERIFICATION
  EXPECT_THAT(to_unknown.output, HasSubstr("other.test"));
  ASSERT_THAT(served_[0].info, IsOk());
  EXPECT_EQ(served_[0].info->server_name, "api.test");
}

TEST_F(ExternalTest, CurlDownloadsAFileSentWithSendfile) {
  REQUIRE_PROGRAM(curl_, "curl");
  std::string contents(3 * 1024 * 1024 + 4321, '\0');
  for (size_t i = 0; i < contents.size(); ++i) contents[i] = static_cast<char>((i * 7919) >> 3);
  const std::string path = WriteTestFile("download.bin", contents);
  const std::string out = TestTempPath("downloaded.bin");
  ASSERT_THAT(Listen(OptionsFor(pki().rsa_server)), IsOk());
  Serve(1, [&](Socket& socket, Served& served) {
    ReadUntil(socket, "\r\n\r\n", served);
    if (!served.end.ok()) return;
    ASSERT_THAT(socket.Send(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: ", contents.size(),
                                         "\r\nConnection: close\r\n\r\n")),
                IsOk());
    EXPECT_THAT(socket.Sendfile(path, 0, 0), IsOkAndHolds(contents.size()));
  });
  CommandResult r = RunCommand(Curl("localhost", {"-o", out}));
  Join();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::FILE* f = std::fopen(out.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string got(contents.size() + 1, '\0');
  const size_t n = std::fread(got.data(), 1, got.size(), f);
  std::fclose(f);
  got.resize(n);
  EXPECT_EQ(got.size(), contents.size());
  EXPECT_TRUE(got == contents) << "download corrupted";
}

TEST_F(ExternalTest, CurlWithAClientCertificate) {
  REQUIRE_PROGRAM(curl_, "curl");
  TlsOptions options = OptionsFor(pki().ec_server);
  options.client_certificate = ClientCertificateMode::kRequired;
  options.client_ca_pem = pki().ca.cert_pem();
  ASSERT_THAT(Listen(options), IsOk());
  Serve(2, HttpHandler("authenticated"));
  CommandResult with = RunCommand(
      Curl("localhost", {"--cert", pki().client_cert_file, "--key", pki().client_key_file}));
  CommandResult without = RunCommand(Curl("localhost", {}));
  Join();
  EXPECT_EQ(with.exit_code, 0) << with.output;
  EXPECT_THAT(with.output, HasSubstr("authenticated"));
  ASSERT_THAT(served_[0].peer, IsOk());
  EXPECT_THAT(served_[0].peer->peer_certificate, Optional(pki().client.cert_der));
  EXPECT_NE(without.exit_code, 0) << without.output;
  EXPECT_THAT(without.output, Not(HasSubstr("authenticated")));
  EXPECT_THAT(served_[1].handshake, StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace islet
