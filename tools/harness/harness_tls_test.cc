// End-to-end tests of the harness binary over TLS (--transport=tls), driven as a
// subprocess as scripts drive it, against clients that share no code with the server:
// `openssl s_client` and `curl`, plus the in-process BoringSSL client of
// testing/tls_test_util.h where a test needs precise control (timing, big echoes, the close).
//
// Covered: echo and http_hello over TLS, ALPN in server preference order (and none
// without --alpn), session resumption in TLS 1.2 and 1.3, client certificates
// (--verify_peer=required and optional with --cacertfile), TLS 1.0/1.1 refused, every
// TLS usage error (exit 2, one line on stderr, nothing before it), --handshake_timeout
// against a stalled client while another one is served, SIGTERM with TLS connections
// open, and tools/make_test_cert.sh (its certificate served to s_client and curl).
//
// Certificates are made at test time (testing/test_certs.h) and written to a fresh
// directory under TEST_TMPDIR. Every server listens on --port=0 (the port is parsed from
// the listening line); every wait has a generous deadline; every harness is killed at
// the end of its test (Subprocess's destructor) and every s_client or curl at its
// deadline (RunCommand). Tests needing /usr/bin/openssl or /usr/bin/curl skip, saying
// so, when it is missing.
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tools/harness/harness_test_util.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

extern char** environ;

namespace islet::harness {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOpenssl[] = "/usr/bin/openssl";
constexpr char kCurl[] = "/usr/bin/curl";

#define REQUIRE_PROGRAM(path, package)                                                   \
  if (::access(path, X_OK) != 0) {                                                      \
    GTEST_SKIP() << path << " is missing: apt-get install -y " << package                \
                 << " (tools/setup.sh installs it)";                                     \
  }
#define REQUIRE_OPENSSL() REQUIRE_PROGRAM(kOpenssl, "openssl")
#define REQUIRE_CURL() REQUIRE_PROGRAM(kCurl, "curl")

// ---- Files ----

// A fresh directory of this process under TEST_TMPDIR (else /tmp): runs of the test in
// parallel never share a file.
const std::string& ScratchDir() {
  static const std::string* const dir = [] {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/harness_tls_XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp %s: %s\n", pattern.c_str(), strerror(errno));
      std::abort();
    }
    return new std::string(pattern);
  }();
  return *dir;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A CA, a server certificate for localhost and 127.0.0.1 signed by it, a client
// certificate signed by it and one signed by a CA the server does not trust.
struct Pki {
  TestCertificateAuthority ca = TestCertificateAuthority::Create();
  TestCertificateAuthority stranger_ca =
      TestCertificateAuthority::Create(TestKeyType::kEcdsaP256, "Stranger CA");
  TestCertificate server = ca.IssueServer("localhost");  // DNS:localhost, IP:127.0.0.1
  TestCertificate client = ca.IssueClient("alice");
  TestCertificate stranger = stranger_ca.IssueClient("mallory");

  std::string ca_file = WriteTestFile("ca.pem", ca.cert_pem());
  std::string server_cert_file = WriteTestFile("server.pem", server.chain_pem());
  std::string server_key_file = WriteTestFile("server.key", server.key_pem);
  // The chain and its key in one file: what --keyfile defaults to.
  std::string server_combined_file =
      WriteTestFile("server_combined.pem", server.chain_pem() + server.key_pem);
  std::string client_cert_file = WriteTestFile("client.pem", client.cert_pem);
  std::string client_key_file = WriteTestFile("client.key", client.key_pem);
  std::string stranger_ca_file = WriteTestFile("stranger_ca.pem", stranger_ca.cert_pem());
  std::string stranger_cert_file = WriteTestFile("stranger.pem", stranger.cert_pem);
  std::string stranger_key_file = WriteTestFile("stranger.key", stranger.key_pem);
  // A valid key that belongs to no certificate here.
  std::string other_key_file =
      WriteTestFile("other.key", GenerateTestKeyPem(TestKeyType::kEcdsaP256));
  std::string garbage_file = WriteTestFile("garbage.pem", "not a PEM file\n");
  std::string missing_file = TestTempPath("no-such-file.pem");
};

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

// ---- The harness ----

// --port=0 --transport=tls with the test server certificate, then `extra`.
std::vector<std::string> TlsFlags(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> flags = {"--port=0", "--transport=tls",
                                    "--certfile=" + pki().server_cert_file,
                                    "--keyfile=" + pki().server_key_file};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

void StartTlsHarness(const std::vector<std::string>& extra, Harness* out) {
  ASSERT_NO_FATAL_FAILURE(StartHarness(TlsFlags(extra), out));
  EXPECT_THAT(out->line, HasSubstr(" over tls "));
}

// ---- Clients ----

// A token that s_client never prints by itself: only an echo brings it back.
std::string Token(absl::string_view what) {
  static int serial = 0;
  return absl::StrCat("islet-", what, "-", ::getpid(), "-", ++serial);
}

// openssl s_client to 127.0.0.1:port, asking for "localhost" (SNI) and verifying the
// server's certificate against `ca_file` for that name; then `extra`.
std::vector<std::string> SClient(uint16_t port, const std::vector<std::string>& extra,
                                 const std::string& ca_file = pki().ca_file) {
  std::vector<std::string> argv = {kOpenssl,
                                   "s_client",
                                   "-connect",
                                   absl::StrCat("127.0.0.1:", port),
                                   "-servername",
                                   "localhost",
                                   "-CAfile",
                                   ca_file,
                                   "-verify_return_error",
                                   "-verify_hostname",
                                   "localhost"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// s_client sends `token` and a newline to an echo server and ends its input (and so
// the session, with close_notify) once the echo came back, or at once when the
// connection failed. The ticket of a TLS 1.3 session arrives after the handshake, but
// before the echo: waiting for the echo lets -sess_out save it.
CommandResult SClientEcho(uint16_t port, const std::vector<std::string>& extra,
                          const std::string& token,
                          const std::string& ca_file = pki().ca_file) {
  CommandOptions options;
  options.input = token + "\n";
  options.close_input_when = [token](const std::string& out) {
    return absl::StrContains(out, token);
  };
  return RunCommand(SClient(port, extra, ca_file), options);
}

// The environment without proxies, for curl.
std::vector<std::string> EnvironmentWithoutProxies() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = absl::AsciiStrToLower(
        absl::string_view(*e).substr(0, absl::string_view(*e).find('=')));
    if (absl::EndsWith(var, "_proxy")) continue;
    env.emplace_back(*e);
  }
  return env;
}

struct Curled {
  std::optional<Subprocess::Exit> exit;
  std::string out;
  std::string err;
};

// Runs curl with `args` (no proxy) within 30 s.
Curled RunCurl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kCurl, "--noproxy", "*", "--max-time", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  Curled r;
  absl::StatusOr<std::unique_ptr<Subprocess>> curl =
      Subprocess::Start(argv, EnvironmentWithoutProxies());
  EXPECT_TRUE(curl.ok()) << curl.status();
  if (!curl.ok()) return r;
  r.exit = (*curl)->Wait(absl::Seconds(30));
  EXPECT_TRUE(r.exit.has_value()) << "curl hangs: " << absl::StrJoin(argv, " ")
                                  << Describe(**curl);
  r.out = (*curl)->Stdout();
  r.err = (*curl)->Stderr();
  return r;
}

// The in-process BoringSSL client, verifying the server as "localhost".
TlsClientOptions ClientOptions() {
  TlsClientOptions options;
  options.ca_pem = pki().ca.cert_pem();
  options.verify_host = "localhost";
  options.server_name = "localhost";
  return options;
}

absl::StatusOr<std::unique_ptr<TestTlsClient>> ConnectTls(
    uint16_t port, const TlsClientOptions& options = ClientOptions()) {
  absl::StatusOr<std::unique_ptr<TestTlsClient>> client = TestTlsClient::Connect(port, kIoTimeout);
  if (!client.ok()) return client.status();
  absl::Status s = (*client)->StartTls(options);
  if (!s.ok()) return s;
  return client;
}

void ExpectTlsEchoes(TestTlsClient& client, const std::string& text) {
  ASSERT_TRUE(client.Write(text).ok());
  absl::StatusOr<std::string> back = client.Read(text.size());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == text) << "echo differs (" << back->size() << " bytes back)";
}

// ---- Echo over TLS ----

TEST(HarnessTlsTest, SClientEchoesOverTls) {
  REQUIRE_OPENSSL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo"}, &h));
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    const std::string token = Token("echo");
    // -quiet alone implies -ign_eof (s_client would never end); -no_ign_eof after it
    // makes the end of the input end the session.
    CommandResult r = SClientEcho(h.port, {version, "-quiet", "-no_ign_eof"}, token);
    EXPECT_FALSE(r.timed_out) << r.output;
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr(token + "\n"));
    EXPECT_THAT(r.output, Not(HasSubstr("verify error")));
  }
  // Without -quiet s_client prints what was negotiated.
  const std::string token = Token("echo");
  CommandResult r = SClientEcho(h.port, {}, token);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("Verify return code: 0 (ok)"));
  EXPECT_THAT(r.output, HasSubstr("New, TLSv1.3"));
  EXPECT_THAT(r.output, HasSubstr(token + "\n"));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// --handler=proxy with TLS on both sides: s_client reaches the proxy over TLS, and the
// proxy reaches a TLS upstream, verified with --upstream_cacertfile and
// --upstream_server_name. A name the upstream's certificate lacks gets no echo.
TEST(HarnessTlsTest, ProxyTerminatesTlsAndReachesATlsUpstream) {
  REQUIRE_OPENSSL();
  Harness upstream;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo"}, &upstream));
  const std::string to_upstream = absl::StrCat("--upstream=127.0.0.1:", upstream.port);
  Harness proxy;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness(
      {"--handler=proxy", to_upstream, "--upstream_tls",
       "--upstream_cacertfile=" + pki().ca_file, "--upstream_server_name=localhost"},
      &proxy));
  const std::string token = Token("proxied");
  CommandResult r = SClientEcho(proxy.port, {"-quiet", "-no_ign_eof"}, token);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_THAT(r.output, HasSubstr(token + "\n"));

  Harness misnamed;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness(
      {"--handler=proxy", to_upstream, "--upstream_tls",
       "--upstream_cacertfile=" + pki().ca_file, "--upstream_server_name=elsewhere.test"},
      &misnamed));
  const std::string lost = Token("misnamed");
  r = SClientEcho(misnamed.port, {"-quiet", "-no_ign_eof"}, lost);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr(lost + "\n")));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*misnamed.process));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*proxy.process));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*upstream.process));
}

TEST(HarnessTlsTest, BoringSslClientGetsEveryByteBack) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo"}, &h));
  std::string big(512 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  for (uint16_t version : {uint16_t{TLS1_2_VERSION}, uint16_t{TLS1_3_VERSION}}) {
    SCOPED_TRACE(version);
    TlsClientOptions options = ClientOptions();
    options.min_version = options.max_version = version;
    absl::StatusOr<std::unique_ptr<TestTlsClient>> client = ConnectTls(h.port, options);
    ASSERT_TRUE(client.ok()) << client.status() << Describe(*h.process);
    EXPECT_EQ((*client)->PeerCommonName(), "localhost");
    ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**client, "hello over tls\n"));
    ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**client, big));
    // A clean end both ways: our close_notify, then the server's.
    ASSERT_TRUE((*client)->ShutdownTls().ok());
    absl::StatusOr<std::string> rest = (*client)->ReadToEnd();
    EXPECT_TRUE(rest.ok() && rest->empty()) << (rest.ok() ? absl::CEscape(*rest)
                                                          : rest.status().ToString());
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// --keyfile defaults to --certfile: one file with the chain and its key.
TEST(HarnessTlsTest, KeyfileDefaultsToTheCertfile) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--port=0", "--transport=tls", "--certfile=" + pki().server_combined_file}, &h));
  absl::StatusOr<std::unique_ptr<TestTlsClient>> client = ConnectTls(h.port);
  ASSERT_TRUE(client.ok()) << client.status() << Describe(*h.process);
  ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**client, "one file\n"));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- http_hello over TLS with curl ----

TEST(HarnessTlsTest, CurlGetsHelloWorldOverHttps) {
  REQUIRE_CURL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=http_hello"}, &h));
  const std::string resolve = absl::StrCat("localhost:", h.port, ":127.0.0.1");
  const std::string by_name = absl::StrCat("https://localhost:", h.port);
  const std::string by_ip = absl::StrCat("https://127.0.0.1:", h.port);

  Curled r = RunCurl({"-s", "-S", "--cacert", pki().ca_file, "--resolve", resolve, by_name + "/"});
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_TRUE(r.exit->ExitedWith(0)) << r.exit->ToString() << ": " << r.err;
  EXPECT_EQ(r.out, "Hello world!");

  // The certificate names 127.0.0.1 too (an IP SAN).
  r = RunCurl({"-s", "-S", "--cacert", pki().ca_file, by_ip + "/"});
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_TRUE(r.exit->ExitedWith(0)) << r.exit->ToString() << ": " << r.err;
  EXPECT_EQ(r.out, "Hello world!");

  // Keep-alive over TLS: the second transfer reuses the first one's connection.
  r = RunCurl({"-s", "-S", "--cacert", pki().ca_file, "--resolve", resolve, "-w",
               " connects=%{num_connects} http=%{http_version}\n", by_name + "/a",
               by_name + "/b"});
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_TRUE(r.exit->ExitedWith(0)) << r.exit->ToString() << ": " << r.err;
  EXPECT_EQ(r.out,
            "Hello world! connects=1 http=1.1\nHello world! connects=0 http=1.1\n");

  // A client that does not trust the CA refuses the server (CURLE_PEER_FAILED_VERIFICATION).
  r = RunCurl({"-s", "-S", "--cacert", pki().stranger_ca_file, by_ip + "/"});
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_TRUE(r.exit->ExitedWith(60)) << r.exit->ToString() << ": " << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- ALPN ----

struct AlpnCase {
  std::vector<std::string> flags;  // besides TlsFlags()
  std::vector<std::string> offer;  // s_client's -alpn, or nothing
  std::string want;                // in s_client's output
};

TEST(HarnessTlsTest, AlpnFollowsTheServersPreference) {
  REQUIRE_OPENSSL();
  const AlpnCase cases[] = {
      // The server's order wins over the client's.
      {{"--alpn=h2,http/1.1"}, {"-alpn", "http/1.1,h2"}, "ALPN protocol: h2"},
      {{"--alpn=http/1.1,h2"}, {"-alpn", "http/1.1,h2"}, "ALPN protocol: http/1.1"},
      {{"--alpn=http/1.1,h2"}, {"-alpn", "h2,http/1.1"}, "ALPN protocol: http/1.1"},
      {{"--alpn=h2,http/1.1"}, {"-alpn", "http/1.1"}, "ALPN protocol: http/1.1"},
      // Without --alpn nothing is negotiated, whatever the client offers.
      {{}, {"-alpn", "http/1.1,h2"}, "No ALPN negotiated"},
      // Nothing in common, or no offer: the connection proceeds without a protocol.
      {{"--alpn=h2,http/1.1"}, {"-alpn", "spdy/3,imap"}, "No ALPN negotiated"},
      {{"--alpn=h2,http/1.1"}, {}, "No ALPN negotiated"},
  };
  for (const AlpnCase& c : cases) {
    SCOPED_TRACE(absl::StrCat("server ", absl::StrJoin(c.flags, " "), ", client ",
                              absl::StrJoin(c.offer, " ")));
    Harness h;
    ASSERT_NO_FATAL_FAILURE(StartTlsHarness(c.flags, &h));
    for (const char* version : {"-tls1_2", "-tls1_3"}) {
      SCOPED_TRACE(version);
      std::vector<std::string> extra = c.offer;
      extra.push_back(version);
      const std::string token = Token("alpn");
      CommandResult r = SClientEcho(h.port, extra, token);
      EXPECT_EQ(r.exit_code, 0) << r.output;
      EXPECT_THAT(r.output, HasSubstr(c.want));
      EXPECT_THAT(r.output, HasSubstr(token + "\n")) << "the connection serves after ALPN";
      if (absl::StartsWith(c.want, "No ")) {
        EXPECT_THAT(r.output, Not(HasSubstr("ALPN protocol:")));
      }
    }
    ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  }
}

// ---- Session resumption ----

TEST(HarnessTlsTest, SessionsResumeInTls12AndTls13) {
  REQUIRE_OPENSSL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo"}, &h));
  struct Case {
    const char* name;
    std::vector<std::string> flags;
    const char* version;  // as s_client prints it
  };
  const Case cases[] = {
      {"TLS 1.2 ticket", {"-tls1_2"}, "TLSv1.2"},
      // Without a ticket a TLS 1.2 session resumes by its ID, from the server's cache.
      {"TLS 1.2 session ID", {"-tls1_2", "-no_ticket"}, "TLSv1.2"},
      // The TLS 1.3 ticket arrives after the handshake: SClientEcho keeps the session
      // open until the echo came back, so the ticket is in by then.
      {"TLS 1.3 ticket", {"-tls1_3"}, "TLSv1.3"},
  };
  int serial = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string session = absl::StrCat(ScratchDir(), "/session-", ++serial, ".pem");
    std::vector<std::string> out_flags = c.flags;
    out_flags.insert(out_flags.end(), {"-sess_out", session});
    std::vector<std::string> in_flags = c.flags;
    in_flags.insert(in_flags.end(), {"-sess_in", session});

    const std::string token1 = Token("first");
    CommandResult first = SClientEcho(h.port, out_flags, token1);
    EXPECT_EQ(first.exit_code, 0) << first.output;
    EXPECT_THAT(first.output, HasSubstr(absl::StrCat("New, ", c.version)));
    EXPECT_THAT(first.output, HasSubstr(token1 + "\n"));
    ASSERT_THAT(ReadFileOrEmpty(session), HasSubstr("BEGIN SSL SESSION PARAMETERS"))
        << "s_client saved no session" << first.output;

    for (int again = 0; again < 2; ++again) {
      const std::string token2 = Token("resumed");
      CommandResult second = SClientEcho(h.port, in_flags, token2);
      EXPECT_EQ(second.exit_code, 0) << second.output;
      EXPECT_THAT(second.output, HasSubstr(absl::StrCat("Reused, ", c.version)));
      EXPECT_THAT(second.output, HasSubstr(token2 + "\n"));
    }
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- Client certificates ----

std::vector<std::string> ClientCert() {
  return {"-cert", pki().client_cert_file, "-key", pki().client_key_file};
}
std::vector<std::string> StrangerCert() {
  return {"-cert", pki().stranger_cert_file, "-key", pki().stranger_key_file};
}

// s_client with `cert` (maybe none) in `version`: the echo comes back, or (want_ok
// false) the handshake fails and nothing comes back.
void ExpectSClientWithCert(uint16_t port, const char* version, std::vector<std::string> cert,
                           bool want_ok) {
  std::vector<std::string> extra = {version, "-quiet", "-no_ign_eof"};
  extra.insert(extra.end(), cert.begin(), cert.end());
  const std::string token = Token("cert");
  CommandResult r = SClientEcho(port, extra, token);
  EXPECT_FALSE(r.timed_out) << r.output;
  if (want_ok) {
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr(token + "\n"));
  } else {
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, Not(HasSubstr(token)));
    // The server said why, with an alert (certificate required, handshake failure,
    // unknown CA...).
    EXPECT_THAT(r.output, HasSubstr("alert")) << r.output;
  }
}

TEST(HarnessTlsTest, VerifyPeerRequiredNeedsACertificateFromTheCa) {
  REQUIRE_OPENSSL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(
      StartTlsHarness({"--verify_peer=required", "--cacertfile=" + pki().ca_file}, &h));
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    {
      SCOPED_TRACE("signed by the CA");
      ExpectSClientWithCert(h.port, version, ClientCert(), true);
    }
    {
      SCOPED_TRACE("no certificate");
      ExpectSClientWithCert(h.port, version, {}, false);
    }
    {
      SCOPED_TRACE("signed by another CA");
      ExpectSClientWithCert(h.port, version, StrangerCert(), false);
    }
  }
  // The in-process client too: it sees the server's verdict at its first read at the
  // latest (TLS 1.3 finishes the client's handshake before the server checked).
  TlsClientOptions with = ClientOptions();
  with.cert_pem = pki().client.cert_pem;
  with.key_pem = pki().client.key_pem;
  absl::StatusOr<std::unique_ptr<TestTlsClient>> good = ConnectTls(h.port, with);
  ASSERT_TRUE(good.ok()) << good.status();
  ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**good, "authenticated\n"));
  absl::StatusOr<std::unique_ptr<TestTlsClient>> bad = ConnectTls(h.port);
  if (bad.ok()) {
    EXPECT_FALSE((*bad)->Write("x").ok() && (*bad)->Read(1).ok())
        << "a client without a certificate was served";
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

TEST(HarnessTlsTest, VerifyPeerOptionalAcceptsNoneButChecksOneSent) {
  REQUIRE_OPENSSL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(
      StartTlsHarness({"--verify_peer=optional", "--cacertfile=" + pki().ca_file}, &h));
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(version);
    {
      SCOPED_TRACE("signed by the CA");
      ExpectSClientWithCert(h.port, version, ClientCert(), true);
    }
    {
      SCOPED_TRACE("no certificate");
      ExpectSClientWithCert(h.port, version, {}, true);
    }
    {
      SCOPED_TRACE("signed by another CA");
      ExpectSClientWithCert(h.port, version, StrangerCert(), false);
    }
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

// ---- Old protocol versions ----

TEST(HarnessTlsTest, Tls10And11AreRefused) {
  REQUIRE_OPENSSL();
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo"}, &h));
  std::vector<std::string> unsupported;
  for (const char* version : {"-tls1_1", "-tls1"}) {
    SCOPED_TRACE(version);
    const std::string token = Token("old");
    // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0 and 1.1 at all.
    CommandResult r = SClientEcho(
        h.port, {version, "-cipher", "DEFAULT@SECLEVEL=0", "-quiet", "-no_ign_eof"}, token);
    EXPECT_FALSE(r.timed_out) << r.output;
    EXPECT_THAT(r.output, Not(HasSubstr(token)));
    if (absl::StrContains(r.output, "no protocols available") ||
        absl::StrContains(absl::AsciiStrToLower(r.output), "unknown option")) {
      unsupported.push_back(absl::StrCat(version, ": ", r.output));
      continue;
    }
    EXPECT_NE(r.exit_code, 0) << r.output;
    // The server's protocol_version alert (70).
    EXPECT_THAT(r.output, HasSubstr("alert protocol version")) << r.output;
  }
  // Whatever happened, TLS 1.2 still works.
  const std::string token = Token("modern");
  CommandResult r = SClientEcho(h.port, {"-tls1_2", "-quiet", "-no_ign_eof"}, token);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(token + "\n"));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  if (unsupported.size() == 2) {
    GTEST_SKIP() << "this openssl cannot offer TLS 1.0 or 1.1:\n"
                 << absl::StrJoin(unsupported, "\n");
  }
}

// ---- Exit 2 with one line ----

TEST(HarnessTlsTest, BadTlsInputExitsTwoWithOneLine) {
  const Pki& p = pki();
  const std::string cert = "--certfile=" + p.server_cert_file;
  const std::string key = "--keyfile=" + p.server_key_file;
  struct Case {
    std::vector<std::string> flags;
    std::string says;  // in the line
  };
  const Case cases[] = {
      {{"--transport=tls"}, "--certfile"},
      {{"--transport=tls", "--keyfile=" + p.server_key_file}, "--certfile"},
      {{"--transport=tls", "--certfile=" + p.missing_file}, p.missing_file},
      {{"--transport=tls", cert, "--keyfile=" + p.missing_file}, p.missing_file},
      {{"--transport=tls", "--certfile=" + p.missing_file, key}, p.missing_file},
      {{"--transport=tls", "--certfile=" + p.garbage_file, key}, p.garbage_file},
      {{"--transport=tls", cert, "--keyfile=" + p.garbage_file}, p.garbage_file},
      // A certificate file without a key, and --keyfile defaulting to it.
      {{"--transport=tls", cert}, p.server_cert_file},
      // A key that belongs to another certificate.
      {{"--transport=tls", cert, "--keyfile=" + p.other_key_file}, "match"},
      {{"--transport=tls", cert, "--keyfile=" + p.client_key_file}, "match"},
      {{"--transport=tls", "--certfile=" + p.client_cert_file, key}, "match"},
      // Client certificates without the CA to check them, and the reverse.
      {{"--transport=tls", cert, key, "--verify_peer=required"}, "--cacertfile"},
      {{"--transport=tls", cert, key, "--verify_peer=optional"}, "--cacertfile"},
      {{"--transport=tls", cert, key, "--cacertfile=" + p.ca_file}, "--cacertfile"},
      {{"--transport=tls", cert, key, "--verify_peer=always", "--cacertfile=" + p.ca_file},
       "--verify_peer"},
      {{"--transport=tls", cert, key, "--verify_peer=required",
        "--cacertfile=" + p.missing_file},
       p.missing_file},
      {{"--transport=tls", cert, key, "--verify_peer=required",
        "--cacertfile=" + p.garbage_file},
       p.garbage_file},
      // TLS flags without TLS.
      {{"--alpn=h2"}, "--alpn"},
      {{"--transport=tcp", "--alpn=h2,http/1.1"}, "--alpn"},
      {{"--transport=tcp", cert}, "--certfile"},
      {{"--transport=tcp", key}, "--keyfile"},
      {{"--transport=tcp", "--cacertfile=" + p.ca_file}, "--cacertfile"},
      {{"--transport=tcp", "--verify_peer=required"}, "--verify_peer"},
      // Bad ALPN lists: a protocol name is 1 to 255 bytes.
      {{"--transport=tls", cert, key, "--alpn=" + std::string(256, 'x')}, "alpn"},
      {{"--transport=tls", cert, key, "--alpn=h2,,http/1.1"}, "alpn"},
      {{"--transport=tls", cert, key, "--alpn=,"}, "alpn"},
      {{"--transport=tcp", "--alpn=,"}, "alpn"},
  };
  for (const Case& c : cases) {
    // --port=0 first: should the harness wrongly start, it takes no fixed port. Under
    // --log=debug as well: no log line may come before the error's.
    for (const char* log : {"--log=info", "--log=debug"}) {
      std::vector<std::string> flags = {"--port=0", log};
      flags.insert(flags.end(), c.flags.begin(), c.flags.end());
      const std::string line = ExpectUsageError(flags);
      EXPECT_THAT(line, HasSubstr(c.says)) << absl::StrJoin(flags, " ");
    }
  }
}

// ---- Handshake timeout ----

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

TEST(HarnessTlsTest, StalledHandshakeIsClosedAtTheTimeoutWhileOthersAreServed) {
  Harness h;
  // One worker: the stalled handshake must not hold it up.
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness(
      {"--handler=echo", "--handshake_timeout=500ms", "--num_workers=1"}, &h));
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // Connects and sends nothing: no ClientHello.
    absl::StatusOr<std::unique_ptr<TcpSocket>> stalled =
        TcpSocket::Connect(Loopback(h.port), kIoTimeout);
    ASSERT_TRUE(stalled.ok()) << stalled.status();
    const absl::Time connected = absl::Now();

    // Meanwhile another client gets a whole handshake and an echo.
    absl::StatusOr<std::unique_ptr<TestTlsClient>> other = ConnectTls(h.port);
    ASSERT_TRUE(other.ok()) << other.status() << Describe(*h.process);
    ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**other, "served meanwhile\n"));
    const absl::Time served = absl::Now();

    // The stalled client is closed by the server (EOF or a reset), not before the
    // timeout and well before our own bound.
    std::string received;
    absl::Status end;
    for (;;) {
      absl::StatusOr<std::string> got = (*stalled)->Recv(0, kIoTimeout);
      if (!got.ok()) {
        end = got.status();
        break;
      }
      received += *got;
    }
    const absl::Time closed = absl::Now();
    EXPECT_TRUE(IsPeerClosed(end) || IsConnectionLost(end))
        << "the stalled client was not closed: " << end << Describe(*h.process);
    EXPECT_GE(closed - connected, absl::Milliseconds(450))
        << "closed before --handshake_timeout=500ms";
    EXPECT_LT(served, closed) << "the other client was served only after the stalled one "
                                 "was closed: served "
                              << served - connected << ", closed " << closed - connected;
    EXPECT_EQ(received, "") << "a server that never got a ClientHello has nothing to say";

    // The handshake timeout is for handshakes only: the served client, idle for longer
    // than that, still echoes.
    ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**other, "still here\n"));
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
  EXPECT_THAT(h.process->Stderr(), HasSubstr("handshake")) << "the timeouts were logged";
}

// ---- SIGTERM ----

TEST(HarnessTlsTest, SigtermWithTlsConnectionsOpenExitsZero) {
  Harness h;
  // A drain that never ended would show as a 60 s wait, far beyond the bound below.
  ASSERT_NO_FATAL_FAILURE(StartTlsHarness({"--handler=echo", "--shutdown_timeout=60s"}, &h));
  std::vector<std::unique_ptr<TestTlsClient>> clients;
  for (uint16_t version : {uint16_t{TLS1_2_VERSION}, uint16_t{TLS1_3_VERSION}}) {
    TlsClientOptions options = ClientOptions();
    options.min_version = options.max_version = version;
    absl::StatusOr<std::unique_ptr<TestTlsClient>> client = ConnectTls(h.port, options);
    ASSERT_TRUE(client.ok()) << client.status() << Describe(*h.process);
    ASSERT_NO_FATAL_FAILURE(ExpectTlsEchoes(**client, "before the signal\n"));
    clients.push_back(*std::move(client));
  }
  // And one still in its handshake (nothing sent yet).
  absl::StatusOr<std::unique_ptr<TcpSocket>> stalled =
      TcpSocket::Connect(Loopback(h.port), kIoTimeout);
  ASSERT_TRUE(stalled.ok()) << stalled.status();
  ASSERT_TRUE(h.process->Running()) << Describe(*h.process);

  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process, SIGTERM, absl::Seconds(20)));
  // The established connections were ended with close_notify, not cut.
  for (auto& client : clients) {
    absl::StatusOr<std::string> rest = client->ReadToEnd();
    EXPECT_TRUE(rest.ok()) << "want close_notify: " << rest.status();
  }
  absl::StatusOr<std::string> got = (*stalled)->Recv(0, kIoTimeout);
  EXPECT_FALSE(got.ok() || IsTimeout(got.status()))
      << (got.ok() ? absl::CEscape(*got) : got.status().ToString());
}

// ---- tools/make_test_cert.sh ----

// The environment with /usr/bin and /bin on PATH, where the script finds openssl.
std::vector<std::string> EnvironmentForScript() {
  std::vector<std::string> env;
  std::string path = "/usr/bin:/bin";
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view var(*e);
    if (absl::StartsWith(var, "PATH=")) {
      absl::StrAppend(&path, ":", var.substr(5));
      continue;
    }
    env.emplace_back(var);
  }
  env.push_back("PATH=" + path);
  return env;
}

struct ScriptRun {
  std::optional<Subprocess::Exit> exit;
  std::string out;
  std::string err;
};

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char here[4096];
  if (::getcwd(here, sizeof(here)) == nullptr) return path;
  return absl::StrCat(here, "/", path);
}

// Runs the script with `args` from directory `cwd`.
ScriptRun RunMakeTestCert(const std::string& cwd, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/bin/sh", "-c", "cd \"$1\" && shift && exec /bin/bash \"$@\"",
                                   "sh", cwd, AbsolutePath(RunfilePath("tools/make_test_cert.sh"))};
  argv.insert(argv.end(), args.begin(), args.end());
  ScriptRun r;
  absl::StatusOr<std::unique_ptr<Subprocess>> script =
      Subprocess::Start(argv, EnvironmentForScript());
  EXPECT_TRUE(script.ok()) << script.status();
  if (!script.ok()) return r;
  r.exit = (*script)->Wait(absl::Seconds(60));
  EXPECT_TRUE(r.exit.has_value()) << "the script hangs" << Describe(**script);
  r.out = (*script)->Stdout();
  r.err = (*script)->Stderr();
  return r;
}

std::string RealPath(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return path;
  std::string out = resolved;
  std::free(resolved);
  return out;
}

// Checks the certificate the script made: ECDSA P-256, 30 days, not a CA.
void ExpectThrowawayCertificate(const std::string& cert_pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_NE(cert, nullptr) << "no certificate in: " << cert_pem;
  bssl::UniquePtr<EVP_PKEY> key(X509_get_pubkey(cert.get()));
  ASSERT_NE(key, nullptr);
  ASSERT_EQ(EVP_PKEY_id(key.get()), EVP_PKEY_EC);
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key.get());
  ASSERT_NE(ec, nullptr);
  EXPECT_EQ(EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)), NID_X9_62_prime256v1);
  int days = 0, seconds = 0;
  ASSERT_TRUE(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()),
                             X509_get0_notAfter(cert.get())));
  EXPECT_EQ(days, 30);
  EXPECT_EQ(seconds, 0);
  int from_now = 0;
  ASSERT_TRUE(ASN1_TIME_diff(&from_now, &seconds, nullptr, X509_get0_notBefore(cert.get())));
  EXPECT_LE(from_now, 0) << "valid from now on";
  EXPECT_EQ(X509_check_ca(cert.get()), 0) << "a leaf certificate, not a CA";
  EXPECT_EQ(CommonNameOfCertificate(cert_pem), "localhost");
}

TEST(HarnessTlsTest, MakeTestCertScriptMakesACertificateTheHarnessServes) {
  REQUIRE_OPENSSL();
  // A directory that does not exist yet, with a space in its name.
  const std::string dir = ScratchDir() + "/made by script/certs";
  ScriptRun made = RunMakeTestCert(ScratchDir(), {dir});
  ASSERT_TRUE(made.exit.has_value());
  ASSERT_TRUE(made.exit->ExitedWith(0)) << made.exit->ToString() << "\n" << made.err;
  const std::string real_dir = RealPath(dir);
  const std::string cert = real_dir + "/cert.pem";
  const std::string key = real_dir + "/key.pem";
  // Two lines on stdout: the two absolute paths. The hints go to stderr.
  EXPECT_EQ(made.out, absl::StrCat(cert, "\n", key, "\n"));
  EXPECT_THAT(made.err, HasSubstr("--transport=tls"));
  struct stat st;
  ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the key is for its owner only";
  const std::string cert_pem = ReadFileOrEmpty(cert);
  ASSERT_NO_FATAL_FAILURE(ExpectThrowawayCertificate(cert_pem));

  // The harness serves it: s_client verifies it for localhost and for 127.0.0.1.
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--transport=tls", "--handler=http_hello",
                                        "--certfile=" + cert, "--keyfile=" + key},
                                       &h));
  {
    CommandOptions options;
    options.input = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    options.close_input_when = [](const std::string& out) {
      return absl::StrContains(out, "Hello world!");
    };
    std::vector<std::string> argv = SClient(h.port, {"-verify_ip", "127.0.0.1"}, cert);
    CommandResult r = RunCommand(argv, options);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("Verify return code: 0 (ok)"));
    EXPECT_THAT(r.output, HasSubstr("Hello world!"));
  }
  // curl trusts it for both names.
  if (::access(kCurl, X_OK) == 0) {
    for (const std::string& url : {absl::StrCat("https://127.0.0.1:", h.port, "/"),
                                   absl::StrCat("https://localhost:", h.port, "/")}) {
      SCOPED_TRACE(url);
      Curled r = RunCurl({"-s", "-S", "--cacert", cert, "--resolve",
                          absl::StrCat("localhost:", h.port, ":127.0.0.1"), url});
      ASSERT_TRUE(r.exit.has_value());
      EXPECT_TRUE(r.exit->ExitedWith(0)) << r.exit->ToString() << ": " << r.err;
      EXPECT_EQ(r.out, "Hello world!");
    }
  }
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));

  // Run again into the same directory: a new pair replaces the old one.
  ScriptRun again = RunMakeTestCert(ScratchDir(), {dir});
  ASSERT_TRUE(again.exit.has_value());
  ASSERT_TRUE(again.exit->ExitedWith(0)) << again.exit->ToString() << "\n" << again.err;
  EXPECT_EQ(again.out, made.out);
  EXPECT_NE(ReadFileOrEmpty(cert), cert_pem);
  Harness h2;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--port=0", "--transport=tls", "--certfile=" + cert, "--keyfile=" + key}, &h2));
  const std::string token = Token("renewed");
  CommandResult r = SClientEcho(h2.port, {"-quiet", "-no_ign_eof"}, token, cert);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(token + "\n"));
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h2.process));
}

TEST(HarnessTlsTest, MakeTestCertScriptDefaultsToIsletTestCertHere) {
  REQUIRE_OPENSSL();
  const std::string cwd = ScratchDir() + "/cwd";
  ASSERT_EQ(::mkdir(cwd.c_str(), 0755), 0) << strerror(errno);
  ScriptRun made = RunMakeTestCert(cwd, {});
  ASSERT_TRUE(made.exit.has_value());
  ASSERT_TRUE(made.exit->ExitedWith(0)) << made.exit->ToString() << "\n" << made.err;
  const std::string real_dir = RealPath(cwd) + "/islet-test-cert";
  EXPECT_EQ(made.out, absl::StrCat(real_dir, "/cert.pem\n", real_dir, "/key.pem\n"));
  ASSERT_NO_FATAL_FAILURE(ExpectThrowawayCertificate(ReadFileOrEmpty(real_dir + "/cert.pem")));

  // Bad usage: exit 2, nothing on stdout.
  ScriptRun bad = RunMakeTestCert(cwd, {"a", "b"});
  ASSERT_TRUE(bad.exit.has_value());
  EXPECT_TRUE(bad.exit->ExitedWith(2)) << bad.exit->ToString() << "\n" << bad.err;
  EXPECT_EQ(bad.out, "");
  EXPECT_THAT(bad.err, HasSubstr("usage"));
}

}  // namespace
}  // namespace islet::harness
