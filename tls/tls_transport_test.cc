// Tests of the TLS transport over real loopback sockets, against a BoringSSL client
// running in a thread of the test (tls_test_util.h). The external clients (openssl
// s_client, curl) are in tls_external_test.cc; the server driving TLS sockets through
// its event loops is in tls_server_test.cc.
//
// Every wait is bounded: blocking server calls carry kTestWait, the client's socket has
// SO_RCVTIMEO/SO_SNDTIMEO, and calls meant to time out use short timeouts whose code,
// not their duration, is asserted (with a loose upper bound on the time they took).
#include "tls/tls_transport.h"

#include <netinet/in.h>
#include <linux/tcp.h>  // TCP_INFO's tcpi_bytes_received (not in <netinet/tcp.h>)
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::StartsWith;

// ---- The test PKI, made once per process (RSA keys are slow under sanitizers) ----

struct Pki {
  TestCertificateAuthority ca = TestCertificateAuthority::Create();
  TestCertificate ec_server = ca.IssueServer("ecdsa.test");
  TestCertificate rsa_server =
      ca.IssueServer("rsa.test", {.key_type = TestKeyType::kRsa2048});
  TestCertificate client = ca.IssueClient("alice");
  TestCertificateAuthority other_ca =
      TestCertificateAuthority::Create(TestKeyType::kEcdsaP256, "Other CA");
  TestCertificate stranger = other_ca.IssueClient("mallory");
};

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

TlsOptions OptionsFor(const TestCertificate& cert) {
  TlsOptions options;
  options.credentials = TlsCredentials::FromPem(cert.chain_pem(), cert.key_pem);
  return options;
}

// A client that verifies the server against the test CA and the name `host`.
TlsClientOptions Verifying(const std::string& host = "localhost") {
  TlsClientOptions options;
  options.ca_pem = pki().ca.cert_pem();
  options.verify_host = host;
  return options;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// ---- The client side, in its own thread ----

// What the client saw.
struct ClientSide {
  absl::Status status;  // the first failure, or OK
  std::string peer_cn;
  std::string peer_der;
  std::string alpn;
  std::string version;
  std::string cipher;
  bool resumed = false;
  bssl::UniquePtr<SSL_SESSION> session;
  std::string received;
};

using ClientScript = std::function<absl::Status(TestTlsClient&, ClientSide&)>;

// Connects to `port`, handshakes with `options`, then runs `script`.
std::future<ClientSide> StartClient(uint16_t port, TlsClientOptions options,
                                    ClientScript script = {}) {
  return std::async(std::launch::async, [port, options = std::move(options),
                                         script = std::move(script)]() {
    ClientSide side;
    absl::StatusOr<std::unique_ptr<TestTlsClient>> client = TestTlsClient::Connect(port);
    if (!client.ok()) {
      side.status = client.status();
      return side;
    }
    side.status = (*client)->StartTls(options);
    if (side.status.ok()) {
      side.peer_cn = (*client)->PeerCommonName();
      side.peer_der = (*client)->PeerCertificateDer();
      side.alpn = (*client)->Alpn();
      side.version = (*client)->Version();
      side.cipher = (*client)->Cipher();
      side.resumed = (*client)->Resumed();
      if (script) side.status = script(**client, side);
      side.session = (*client)->LatestSession();
    }
    return side;
  });
}

// Client half of the usual exchange: "ping" out, "pong" back (by which time a TLS 1.3
// client has also received its session tickets).
absl::Status PingPong(TestTlsClient& client, ClientSide& side) {
  if (absl::Status s = client.Write("ping"); !s.ok()) return s;
  absl::StatusOr<std::string> got = client.Read(4);
  if (!got.ok()) return got.status();
  side.received = *got;
  return absl::OkStatus();
}

// Server half of it.
void ServePingPong(Socket& socket) {
  absl::StatusOr<std::string> got = socket.Recv(4, kTestWait);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "ping");
  EXPECT_THAT(socket.Send("pong"), IsOk());
}

// Waits for the client to read until the server closes; used to hold a client open.
absl::Status ReadUntilClosed(TestTlsClient& client, ClientSide& side) {
  absl::StatusOr<std::string> rest = client.ReadToEnd();
  if (!rest.ok()) return rest.status();
  side.received += *rest;
  return absl::OkStatus();
}

class TlsTest : public ::testing::Test {
 protected:
  absl::Status Listen(TlsOptions options) {
    absl::StatusOr<std::shared_ptr<TlsTransport>> transport =
        TlsTransport::Create(std::move(options));
    if (!transport.ok()) return transport.status();
    transport_ = *transport;
    ListenOptions listen;
    listen.address = "127.0.0.1";
    absl::StatusOr<std::unique_ptr<Listener>> listener = transport_->Listen(0, listen);
    if (!listener.ok()) return listener.status();
    listener_ = *std::move(listener);
    absl::StatusOr<SocketInfo> info = listener_->LocalInfo();
    if (!info.ok()) return info.status();
    port_ = info->port;
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Socket>> Accept() { return AcceptWithin(*listener_); }

  // Accepts one connection and completes its handshake.
  absl::StatusOr<std::unique_ptr<Socket>> AcceptHandshake() {
    absl::StatusOr<std::unique_ptr<Socket>> socket = Accept();
    if (!socket.ok()) return socket.status();
    if (absl::Status s = (*socket)->Handshake(kTestWait); !s.ok()) return s;
    return socket;
  }

  // One connection with the ping/pong exchange; returns what each side saw.
  struct Exchange {
    ClientSide client;
    absl::StatusOr<ConnectionInformation> server_info = absl::UnknownError("no connection");
    absl::StatusOr<SocketInfo> server_peer = absl::UnknownError("no connection");
    absl::Status server_handshake = absl::UnknownError("no connection");
  };
  Exchange RunExchange(const TlsClientOptions& options) {
    Exchange out;
    std::future<ClientSide> client = StartClient(port_, options, PingPong);
    absl::StatusOr<std::unique_ptr<Socket>> socket = Accept();
    if (socket.ok()) {
      out.server_handshake = (*socket)->Handshake(kTestWait);
      if (out.server_handshake.ok()) {
        out.server_info = (*socket)->GetConnectionInformation();
        out.server_peer = (*socket)->PeerInfo();
        ServePingPong(**socket);
      }
    } else {
      out.server_handshake = socket.status();
    }
    out.client = client.get();
    return out;
  }

  std::shared_ptr<TlsTransport> transport_;
  std::unique_ptr<Listener> listener_;
  uint16_t port_ = 0;
};

// ---- Handshakes and data, for each key type and version ----

struct Variant {
  const char* name;
  bool rsa;
  TlsVersion version;
};

class TlsVariantTest : public TlsTest, public ::testing::WithParamInterface<Variant> {
 protected:
  const TestCertificate& cert() const {
    return GetParam().rsa ? pki().rsa_server : pki().ec_server;
  }
  TlsOptions Options() const {
    TlsOptions options = OptionsFor(cert());
    options.min_version = options.max_version = GetParam().version;
    return options;
  }
  std::string VersionName() const {
    return GetParam().version == TlsVersion::kTls1_3 ? "TLSv1.3" : "TLSv1.2";
  }
};

TEST_P(TlsVariantTest, HandshakeVerifiesAndReportsTheConnection) {
  ASSERT_THAT(Listen(Options()), IsOk());
  Exchange x = RunExchange(Verifying("localhost"));
  ASSERT_THAT(x.server_handshake, IsOk());
  ASSERT_THAT(x.client.status, IsOk());
  EXPECT_EQ(x.client.peer_cn, cert().common_name);
  EXPECT_EQ(x.client.peer_der, cert().cert_der);
  EXPECT_EQ(x.client.version, VersionName());
  EXPECT_EQ(x.client.received, "pong");
  ASSERT_THAT(x.server_info, IsOk());
  EXPECT_EQ(x.server_info->protocol_version, VersionName());
  EXPECT_EQ(x.server_info->cipher, x.client.cipher);
  if (GetParam().version == TlsVersion::kTls1_2) {
    EXPECT_THAT(x.server_info->cipher,
                HasSubstr(GetParam().rsa ? "TLS_ECDHE_RSA_WITH_" : "TLS_ECDHE_ECDSA_WITH_"));
  } else {
    EXPECT_THAT(x.server_info->cipher, StartsWith("TLS_"));
  }
  EXPECT_FALSE(x.server_info->session_resumed);
  ASSERT_THAT(x.server_peer, IsOk());
  EXPECT_EQ(x.server_peer->address, "127.0.0.1");
  EXPECT_EQ(x.server_peer->peer_certificate, std::nullopt);
}

TEST_P(TlsVariantTest, BlockingRecvAndSendCarryLargeMessagesBothWays) {
  ASSERT_THAT(Listen(Options()), IsOk());
  const std::string down = RandomBytes(3 * 1024 * 1024 + 17, 1);
  const std::string up = RandomBytes(2 * 1024 * 1024 + 5, 2);
  std::future<ClientSide> client =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        absl::StatusOr<std::string> got = c.Read(down.size());
        if (!got.ok()) return got.status();
        side.received = *std::move(got);
        return c.Write(up);
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  EXPECT_TRUE(server->Secure());
  // A gathered send: three buffers, one of them empty.
  const absl::string_view parts[] = {absl::string_view(down).substr(0, 1000), "",
                                     absl::string_view(down).substr(1000)};
  EXPECT_THAT(server->Send(parts), IsOk());
  absl::StatusOr<std::string> got = server->Recv(up.size(), kTestWait);
  ASSERT_THAT(got, IsOk());
  EXPECT_TRUE(*got == up) << "upload corrupted";
  ClientSide side = client.get();
  ASSERT_THAT(side.status, IsOk());
  EXPECT_TRUE(side.received == down) << "download corrupted";
}

INSTANTIATE_TEST_SUITE_P(
    KeysAndVersions, TlsVariantTest,
    ::testing::Values(Variant{"Ecdsa13", false, TlsVersion::kTls1_3},
                      Variant{"Ecdsa12", false, TlsVersion::kTls1_2},
                      Variant{"Rsa13", true, TlsVersion::kTls1_3},
                      Variant{"Rsa12", true, TlsVersion::kTls1_2}),
    [](const ::testing::TestParamInfo<Variant>& info) { return info.param.name; });

TEST_F(TlsTest, TransportNamesItself) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  EXPECT_TRUE(transport_->Secure());
  EXPECT_EQ(transport_->Name(), "tls");
}

// ---- ALPN ----

TEST_F(TlsTest, AlpnChoosesByServerPreference) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.alpn_protocols = {"h2", "http/1.1"};
  ASSERT_THAT(Listen(options), IsOk());
  struct Case {
    std::vector<std::string> offered;
    std::string chosen;  // "" for none
  };
  const Case cases[] = {
      {{"http/1.1", "h2"}, "h2"},  // the client prefers http/1.1; the server's order wins
      {{"h2", "http/1.1"}, "h2"},
      {{"http/1.1"}, "http/1.1"},
      {{"spdy/3", "http/1.1"}, "http/1.1"},
      {{"spdy/3"}, ""},  // nothing in common: no protocol, but the handshake succeeds
      {{}, ""},          // no ALPN from the client
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("offered ", c.offered.size(), " protocols, want \"", c.chosen, "\""));
    TlsClientOptions client_options = Verifying();
    client_options.alpn = c.offered;
    std::future<ClientSide> client = StartClient(port_, client_options, PingPong);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
    if (c.chosen.empty()) {
      EXPECT_THAT(server->NegotiatedProtocol(),
                  StatusIs(absl::StatusCode::kNotFound,
                           "negotiated_protocol: protocol not negotiated"));
    } else {
      EXPECT_THAT(server->NegotiatedProtocol(), IsOkAndHolds(c.chosen));
    }
    ASSERT_OK_AND_ASSIGN(ConnectionInformation info, server->GetConnectionInformation());
    EXPECT_EQ(info.alpn, c.chosen);
    ServePingPong(*server);
    ClientSide side = client.get();
    EXPECT_THAT(side.status, IsOk());
    EXPECT_EQ(side.alpn, c.chosen);
  }
}

TEST_F(TlsTest, NoAlpnConfiguredNegotiatesNothing) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  TlsClientOptions client_options = Verifying();
  client_options.alpn = {"h2", "http/1.1"};
  std::future<ClientSide> client = StartClient(port_, client_options, PingPong);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
  EXPECT_THAT(server->NegotiatedProtocol(), StatusIs(absl::StatusCode::kNotFound));
  ServePingPong(*server);
  ClientSide side = client.get();
  EXPECT_THAT(side.status, IsOk());
  EXPECT_EQ(side.alpn, "");
}

// ---- SNI ----

TEST_F(TlsTest, SniPicksTheCertificateAndUnknownNamesGetTheDefault) {
  const TestCertificate fallback = pki().ca.IssueServer("default.test");
  const TestCertificate api = pki().ca.IssueServer("api.test");
  const TestCertificate wild =
      pki().ca.IssueServer("wild.test", {.dns_names = {"*.wild.test"}});
  TlsOptions options = OptionsFor(fallback);
  options.sni_credentials["api.test"] = TlsCredentials::FromPem(api.chain_pem(), api.key_pem);
  options.sni_credentials["*.wild.test"] = TlsCredentials::FromPem(wild.chain_pem(), wild.key_pem);
  ASSERT_THAT(Listen(options), IsOk());
  struct Case {
    std::string sent;
    std::string cn;
  };
  const Case cases[] = {
      {"api.test", "api.test"},       {"API.Test", "api.test"},
      {"x.wild.test", "wild.test"},   {"unknown.test", "default.test"},
      {"", "default.test"},           {"a.b.wild.test", "default.test"},  // one label only
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("SNI \"", c.sent, "\""));
    TlsClientOptions client_options = Verifying("");
    client_options.server_name = c.sent;
    Exchange x = RunExchange(client_options);
    ASSERT_THAT(x.server_handshake, IsOk());
    ASSERT_THAT(x.client.status, IsOk());
    EXPECT_EQ(x.client.peer_cn, c.cn);
    ASSERT_THAT(x.server_info, IsOk());
    EXPECT_TRUE(absl::EqualsIgnoreCase(x.server_info->server_name, c.sent))
        << x.server_info->server_name;
  }
}

// ---- Client certificates ----

TlsOptions WithClientCertificates(ClientCertificateMode mode) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.client_certificate = mode;
  options.client_ca_pem = pki().ca.cert_pem();
  return options;
}

TlsClientOptions PresentingCertificate(const TestCertificate& cert) {
  TlsClientOptions options = Verifying();
  options.cert_pem = cert.cert_pem;
  options.key_pem = cert.key_pem;
  return options;
}

class ClientCertificateTest : public TlsTest, public ::testing::WithParamInterface<TlsVersion> {
 protected:
  TlsOptions Options(ClientCertificateMode mode) const {
    TlsOptions options = WithClientCertificates(mode);
    options.min_version = options.max_version = GetParam();
    return options;
  }
};

TEST_P(ClientCertificateTest, RequiredRejectsAClientWithoutOne) {
  ASSERT_THAT(Listen(Options(ClientCertificateMode::kRequired)), IsOk());
  Exchange x = RunExchange(Verifying());
  EXPECT_THAT(x.server_handshake, StatusIs(absl::StatusCode::kUnauthenticated,
                                           "PEER_DID_NOT_RETURN_A_CERTIFICATE"));
  EXPECT_THAT(std::string(x.server_handshake.message()), StartsWith("handshake: TLS alert: "));
  EXPECT_THAT(x.client.status, Not(IsOk()));
}

TEST_P(ClientCertificateTest, RequiredAcceptsACertificateFromTheCaAndExposesIt) {
  ASSERT_THAT(Listen(Options(ClientCertificateMode::kRequired)), IsOk());
  Exchange x = RunExchange(PresentingCertificate(pki().client));
  ASSERT_THAT(x.server_handshake, IsOk());
  EXPECT_THAT(x.client.status, IsOk());
  ASSERT_THAT(x.server_peer, IsOk());
  EXPECT_THAT(x.server_peer->peer_certificate, Optional(pki().client.cert_der));
  EXPECT_EQ(CommonNameOfCertificate(*x.server_peer->peer_certificate), "alice");
}

TEST_P(ClientCertificateTest, RequiredRejectsACertificateFromAnotherCa) {
  ASSERT_THAT(Listen(Options(ClientCertificateMode::kRequired)), IsOk());
  Exchange x = RunExchange(PresentingCertificate(pki().stranger));
  EXPECT_THAT(x.server_handshake,
              StatusIs(absl::StatusCode::kUnauthenticated, "CERTIFICATE_VERIFY_FAILED"));
  EXPECT_THAT(std::string(x.server_handshake.message()), HasSubstr("unable to get local issuer certificate"));
  EXPECT_THAT(x.client.status, Not(IsOk()));
}

TEST_P(ClientCertificateTest, RequiredRejectsAnExpiredCertificate) {
  const TestCertificate expired = pki().ca.IssueClient(
      "expired", {.not_before_offset = absl::Hours(-48), .valid_for = absl::Hours(24)});
  ASSERT_THAT(Listen(Options(ClientCertificateMode::kRequired)), IsOk());
  Exchange x = RunExchange(PresentingCertificate(expired));
  EXPECT_THAT(x.server_handshake,
              StatusIs(absl::StatusCode::kUnauthenticated, "certificate has expired"));
}

TEST_P(ClientCertificateTest, OptionalAcceptsClientsWithAndWithout) {
  ASSERT_THAT(Listen(Options(ClientCertificateMode::kOptional)), IsOk());
  Exchange without = RunExchange(Verifying());
  ASSERT_THAT(without.server_handshake, IsOk());
  EXPECT_THAT(without.client.status, IsOk());
  ASSERT_THAT(without.server_peer, IsOk());
  EXPECT_EQ(without.server_peer->peer_certificate, std::nullopt);

  Exchange with = RunExchange(PresentingCertificate(pki().client));
  ASSERT_THAT(with.server_handshake, IsOk());
  EXPECT_THAT(with.client.status, IsOk());
  ASSERT_THAT(with.server_peer, IsOk());
  EXPECT_THAT(with.server_peer->peer_certificate, Optional(pki().client.cert_der));

  // Optional is not "anything goes": a certificate that is sent must verify.
  Exchange stranger = RunExchange(PresentingCertificate(pki().stranger));
  EXPECT_THAT(stranger.server_handshake, StatusIs(absl::StatusCode::kUnauthenticated));
}

INSTANTIATE_TEST_SUITE_P(Versions, ClientCertificateTest,
                         ::testing::Values(TlsVersion::kTls1_2, TlsVersion::kTls1_3),
                         [](const ::testing::TestParamInfo<TlsVersion>& info) {
                           return info.param == TlsVersion::kTls1_3 ? "Tls13" : "Tls12";
                         });

// ---- Session resumption ----

struct ResumptionCase {
  const char* name;
  TlsVersion version;
  bool client_tickets;  // false: TLS 1.2 resumes from the server's session-ID cache
};

class ResumptionTest : public TlsTest, public ::testing::WithParamInterface<ResumptionCase> {};

TEST_P(ResumptionTest, SecondConnectionResumesTheFirstSession) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.min_version = options.max_version = GetParam().version;
  ASSERT_THAT(Listen(options), IsOk());
  TlsClientOptions client_options = Verifying();
  client_options.session_tickets = GetParam().client_tickets;

  Exchange first = RunExchange(client_options);
  ASSERT_THAT(first.client.status, IsOk());
  ASSERT_THAT(first.server_info, IsOk());
  EXPECT_FALSE(first.server_info->session_resumed);
  EXPECT_FALSE(first.client.resumed);
  ASSERT_NE(first.client.session, nullptr) << "the server issued no session";

  client_options.session = first.client.session.get();
  Exchange second = RunExchange(client_options);
  ASSERT_THAT(second.client.status, IsOk());
  ASSERT_THAT(second.server_info, IsOk());
  EXPECT_TRUE(second.server_info->session_resumed);
  EXPECT_TRUE(second.client.resumed);
  EXPECT_EQ(second.client.version, first.client.version);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, ResumptionTest,
    ::testing::Values(ResumptionCase{"Tls13Tickets", TlsVersion::kTls1_3, true},
                      ResumptionCase{"Tls12Tickets", TlsVersion::kTls1_2, true},
                      ResumptionCase{"Tls12SessionCache", TlsVersion::kTls1_2, false}),
    [](const ::testing::TestParamInfo<ResumptionCase>& info) { return info.param.name; });

TEST_F(TlsTest, NoResumptionWhenTicketsAndCacheAreOff) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.session_tickets = false;
  options.session_cache_size = 0;
  options.max_version = TlsVersion::kTls1_2;
  ASSERT_THAT(Listen(options), IsOk());
  Exchange first = RunExchange(Verifying());
  ASSERT_THAT(first.client.status, IsOk());
  TlsClientOptions client_options = Verifying();
  client_options.session = first.client.session.get();  // may be null: nothing to offer
  Exchange second = RunExchange(client_options);
  ASSERT_THAT(second.server_info, IsOk());
  EXPECT_FALSE(second.server_info->session_resumed);
  EXPECT_FALSE(second.client.resumed);
}

TEST_F(TlsTest, SessionIsNotResumedUnderAnotherSniName) {
  const TestCertificate api = pki().ca.IssueServer("api.test");
  TlsOptions options = OptionsFor(pki().ec_server);
  options.sni_credentials["api.test"] = TlsCredentials::FromPem(api.chain_pem(), api.key_pem);
  ASSERT_THAT(Listen(options), IsOk());
  TlsClientOptions client_options = Verifying("");
  client_options.server_name = "ecdsa.test";
  Exchange first = RunExchange(client_options);
  ASSERT_THAT(first.client.status, IsOk());
  ASSERT_NE(first.client.session, nullptr);
  client_options.server_name = "api.test";
  client_options.session = first.client.session.get();
  Exchange second = RunExchange(client_options);
  ASSERT_THAT(second.client.status, IsOk());
  EXPECT_EQ(second.client.peer_cn, "api.test");
  ASSERT_THAT(second.server_info, IsOk());
  EXPECT_FALSE(second.server_info->session_resumed);
}

// Keys rotate every `rotation`: a ticket is good (and renewed) during the period after
// its key's, and dead after that.
TEST_F(TlsTest, TicketKeysRotateAndThePreviousKeyStillDecrypts) {
  const absl::Duration rotation = absl::Seconds(2);
  TlsOptions options = OptionsFor(pki().ec_server);
  options.max_version = TlsVersion::kTls1_2;  // one ticket per handshake, renewal visible
  options.session_cache_size = 0;             // only tickets can resume
  options.ticket_key_rotation = rotation;
  const absl::Time created = absl::Now();
  ASSERT_THAT(Listen(options), IsOk());

  Exchange first = RunExchange(Verifying());  // ticket under key 0
  ASSERT_THAT(first.client.status, IsOk());
  ASSERT_NE(first.client.session, nullptr);
  ASSERT_LT(absl::Now() - created, rotation) << "too slow for this test's timing";

  absl::SleepFor(created + rotation * 1.1 - absl::Now());
  TlsClientOptions again = Verifying();
  again.session = first.client.session.get();
  Exchange second = RunExchange(again);  // key 0 is now the previous key
  ASSERT_THAT(second.server_info, IsOk());
  EXPECT_TRUE(second.server_info->session_resumed);
  ASSERT_NE(second.client.session, nullptr) << "the ticket was not renewed";
  ASSERT_LT(absl::Now() - created, 2 * rotation) << "too slow for this test's timing";

  absl::SleepFor(created + rotation * 2.2 - absl::Now());
  Exchange third = RunExchange(again);  // key 0 has expired
  ASSERT_THAT(third.server_info, IsOk());
  EXPECT_FALSE(third.server_info->session_resumed);

  TlsClientOptions renewed = Verifying();
  renewed.session = second.client.session.get();
  Exchange fourth = RunExchange(renewed);  // the renewed ticket, under key 1
  ASSERT_THAT(fourth.server_info, IsOk());
  EXPECT_TRUE(fourth.server_info->session_resumed);
}

// ---- Protocol versions ----

TEST_F(TlsTest, OldProtocolVersionsAreRefused) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  for (uint16_t version : {TLS1_1_VERSION, TLS1_VERSION}) {
    SCOPED_TRACE(absl::StrCat("client speaks only 0x", absl::Hex(version)));
    TlsClientOptions client_options = Verifying();
    client_options.min_version = client_options.max_version = version;
    Exchange x = RunExchange(client_options);
    EXPECT_THAT(x.server_handshake, StatusIs(absl::StatusCode::kAborted,
                                             "handshake: TLS alert: protocol version (sent; UNSUPPORTED_PROTOCOL)"));
    EXPECT_THAT(std::string(x.server_handshake.message()), HasSubstr("UNSUPPORTED_PROTOCOL"));
    EXPECT_THAT(x.client.status, StatusIs(absl::StatusCode::kAborted, "PROTOCOL_VERSION"));
  }
}

TEST_F(TlsTest, MinimumVersionIsEnforced) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.min_version = TlsVersion::kTls1_3;
  ASSERT_THAT(Listen(options), IsOk());
  TlsClientOptions client_options = Verifying();
  client_options.max_version = TLS1_2_VERSION;
  Exchange x = RunExchange(client_options);
  EXPECT_THAT(x.server_handshake, StatusIs(absl::StatusCode::kAborted, "protocol version"));
}

// ---- Create: configuration errors ----

class TlsCreateTest : public ::testing::Test {};

TEST_F(TlsCreateTest, FromFilesWorks) {
  const std::string chain = WriteTestFile("chain.pem", pki().ec_server.chain_pem());
  const std::string key = WriteTestFile("key.pem", pki().ec_server.key_pem);
  EXPECT_THAT(TlsTransport::Create({.credentials = TlsCredentials::FromFiles(chain, key)}),
              IsOk());
}

TEST_F(TlsCreateTest, KeyThatDoesNotMatchTheCertificate) {
  for (TestKeyType type : {TestKeyType::kEcdsaP256, TestKeyType::kRsa2048}) {
    TlsOptions options;
    options.credentials =
        TlsCredentials::FromPem(pki().ec_server.chain_pem(), GenerateTestKeyPem(type));
    EXPECT_THAT(TlsTransport::Create(options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "credentials: the private key does not match the certificate"));
  }
  TlsOptions options = OptionsFor(pki().ec_server);
  options.sni_credentials["api.test"] =
      TlsCredentials::FromPem(pki().rsa_server.chain_pem(), pki().ec_server.key_pem);
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "sni_credentials[\"api.test\"]: the private key does not match"));
}

TEST_F(TlsCreateTest, MissingFilesAreNotFound) {
  const std::string chain = WriteTestFile("chain.pem", pki().ec_server.chain_pem());
  const std::string key = WriteTestFile("key.pem", pki().ec_server.key_pem);
  EXPECT_THAT(
      TlsTransport::Create({.credentials = TlsCredentials::FromFiles("/nonexistent/chain.pem", key)}),
      StatusIs(absl::StatusCode::kNotFound,
               "credentials.certificate_chain_file /nonexistent/chain.pem"));
  EXPECT_THAT(
      TlsTransport::Create({.credentials = TlsCredentials::FromFiles(chain, "/nonexistent/key.pem")}),
      StatusIs(absl::StatusCode::kNotFound, "credentials.private_key_file /nonexistent/key.pem"));
  TlsOptions options = OptionsFor(pki().ec_server);
  options.client_certificate = ClientCertificateMode::kRequired;
  options.client_ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kNotFound, "client_ca_file /nonexistent/ca.pem"));
}

TEST_F(TlsCreateTest, EncryptedKeys) {
  struct Case {
    const char* name;
    const TestCertificate* cert;
    bool traditional;
  };
  const Case cases[] = {{"ecdsa pkcs8", &pki().ec_server, false},
                        {"rsa pkcs8", &pki().rsa_server, false},
                        {"ecdsa traditional", &pki().ec_server, true},
                        {"rsa traditional", &pki().rsa_server, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string encrypted = EncryptTestKeyPem(c.cert->key_pem, "s3cret", c.traditional);
    EXPECT_THAT(encrypted, HasSubstr("ENCRYPTED"));
    TlsOptions options;
    options.credentials = TlsCredentials::FromPem(c.cert->chain_pem(), encrypted);
    EXPECT_THAT(TlsTransport::Create(options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         "the private key is encrypted and no "
                         "credentials.private_key_password was given"));
    options.credentials.private_key_password = "wrong";
    EXPECT_THAT(TlsTransport::Create(options),
                StatusIs(absl::StatusCode::kInvalidArgument, "cannot decrypt the private key"));
    options.credentials.private_key_password = "s3cret";
    EXPECT_THAT(TlsTransport::Create(options), IsOk());
  }
}

TEST_F(TlsCreateTest, EncryptedKeyServesHandshakes) {
  TlsOptions options;
  options.credentials = TlsCredentials::FromFiles(
      WriteTestFile("chain.pem", pki().rsa_server.chain_pem()),
      WriteTestFile("key.pem", EncryptTestKeyPem(pki().rsa_server.key_pem, "pw")), "pw");
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Listener> listener,
                       tls->Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo where, listener->LocalInfo());
  std::future<ClientSide> client = StartClient(where.port, Verifying(), PingPong);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptWithin(*listener));
  ASSERT_THAT(server->Handshake(kTestWait), IsOk());
  ServePingPong(*server);
  ClientSide side = client.get();
  EXPECT_THAT(side.status, IsOk());
  EXPECT_EQ(side.peer_cn, "rsa.test");
}

TEST_F(TlsCreateTest, BadPem) {
  const std::string& chain = pki().ec_server.chain_pem();
  const std::string& key = pki().ec_server.key_pem;
  EXPECT_THAT(TlsTransport::Create({.credentials = TlsCredentials::FromPem("garbage", key)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "credentials.certificate_chain_pem: no certificate found"));
  // A certificate block whose base64 was damaged.
  std::string damaged = pki().ec_server.cert_pem;
  damaged[damaged.size() / 2] = '*';
  EXPECT_THAT(TlsTransport::Create({.credentials = TlsCredentials::FromPem(damaged, key)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not valid PEM/X.509"));
  EXPECT_THAT(TlsTransport::Create({.credentials = TlsCredentials::FromPem(chain, "garbage")}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "credentials.private_key_pem: no private key found"));
  // A certificate given as the key.
  EXPECT_THAT(TlsTransport::Create({.credentials = TlsCredentials::FromPem(chain, chain)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "no private key found"));
  EXPECT_THAT(TlsTransport::Create({}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "credentials.certificate_chain: missing"));
  TlsOptions both = OptionsFor(pki().ec_server);
  both.credentials.certificate_chain_file = "/etc/hostname";
  EXPECT_THAT(TlsTransport::Create(both), StatusIs(absl::StatusCode::kInvalidArgument, "not both"));
}

TEST_F(TlsCreateTest, BadCaBundle) {
  TlsOptions options = WithClientCertificates(ClientCertificateMode::kRequired);
  options.client_ca_pem = "not a certificate";
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "client_ca_pem: no certificate found"));
  std::string damaged = pki().ca.cert_pem();
  damaged[damaged.size() / 2] = '*';
  options.client_ca_pem = pki().other_ca.cert_pem() + damaged;
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "client_ca_pem: certificate 2 is not valid PEM/X.509"));
  options.client_ca_pem = "";
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "no CA bundle verifies them"));
  options = OptionsFor(pki().ec_server);
  options.client_ca_pem = pki().ca.cert_pem();  // but client_certificate is kNone
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "client_certificate is kNone"));
}

TEST_F(TlsCreateTest, BadProtocolOptions) {
  TlsOptions options = OptionsFor(pki().ec_server);
  options.min_version = TlsVersion::kTls1_3;
  options.max_version = TlsVersion::kTls1_2;
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "min_version: higher than max_version"));
  options = OptionsFor(pki().ec_server);
  options.min_version = static_cast<TlsVersion>(TLS1_1_VERSION);
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "TLS 1.0 and 1.1 are refused"));
  options = OptionsFor(pki().ec_server);
  options.cipher_list = "NOT-A-CIPHER";
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "cipher_list: BoringSSL refuses"));
  options.cipher_list = "ECDHE-ECDSA-AES256-GCM-SHA384";
  EXPECT_THAT(TlsTransport::Create(options), IsOk());
  options = OptionsFor(pki().ec_server);
  options.alpn_protocols = {"h2", ""};
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "alpn_protocols"));
  options = OptionsFor(pki().ec_server);
  options.sni_credentials["bad name!"] = options.credentials;
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "sni_credentials: \"bad name!\""));
  options = OptionsFor(pki().ec_server);
  options.sni_credentials["A.test"] = options.credentials;
  options.sni_credentials["a.test"] = options.credentials;
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "listed twice"));
  options = OptionsFor(pki().ec_server);
  options.ticket_key_rotation = absl::ZeroDuration();
  EXPECT_THAT(TlsTransport::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument, "ticket_key_rotation"));
}

// ---- Handshakes that go wrong ----

TEST_F(TlsTest, StalledClientTimesOutWithoutHanging) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  // One client sends nothing at all, another the first bytes of a record and no more.
  for (absl::string_view sent : {absl::string_view(), absl::string_view("\x16\x03\x01", 3)}) {
    SCOPED_TRACE(absl::StrCat(sent.size(), " bytes sent"));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
    ASSERT_THAT(raw->WritePlain(sent), IsOk());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, Accept());
    // The non-blocking step reports what it waits for instead of blocking.
    EXPECT_THAT(server->HandshakeStep(), IsOkAndHolds(IoInterest::kRead));
    const absl::Time start = absl::Now();
    EXPECT_THAT(server->Handshake(absl::Milliseconds(200)),
                StatusIs(absl::StatusCode::kDeadlineExceeded, "handshake"));
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    EXPECT_THAT(server->GetConnectionInformation(),
                StatusIs(absl::StatusCode::kFailedPrecondition));
  }
}

TEST_F(TlsTest, GarbageFailsTheHandshakeAtOnce) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  const std::string binary = RandomBytes(600, 7);
  struct Case {
    std::string bytes;
    std::string reason;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "HTTP_REQUEST"},
      {std::string("\x16\x03\x01\x00\x05", 5) + "hello", ""},  // a ClientHello that is not
      {"\x80" + binary, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::CEscape(c.bytes.substr(0, 16)));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
    ASSERT_THAT(raw->WritePlain(c.bytes), IsOk());
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, Accept());
    const absl::Time start = absl::Now();
    absl::Status s = server->Handshake(kTestWait);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted, "handshake: TLS "));
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.reason));
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    // The failure sticks: no second attempt on a broken stream.
    EXPECT_EQ(server->HandshakeStep().status(), s);
  }
}

TEST_F(TlsTest, ClientThatHangsUpMidHandshakeIsPeerClosed) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
  raw->CloseTcp();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, Accept());
  EXPECT_THAT(server->Handshake(kTestWait),
              StatusIs(absl::StatusCode::kOutOfRange, "during the TLS handshake"));
}

TEST_F(TlsTest, IoBeforeTheHandshakeIsRefused) {
  ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, Accept());
  char buf[8];
  EXPECT_THAT(server->ReadSome(absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "handshake is not complete"));
  const absl::string_view data = "x";
  EXPECT_THAT(server->WriteSome(absl::MakeConstSpan(&data, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "handshake is not complete"));
  EXPECT_THAT(server->NegotiatedProtocol(), StatusIs(absl::StatusCode::kNotFound));
}

// ---- STARTTLS ----

TEST_F(TlsTest, StartTlsUpgradesAPlainConnection) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls,
                       TlsTransport::Create(OptionsFor(pki().ec_server)));
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo where, listener->LocalInfo());
  std::future<absl::Status> client = std::async(std::launch::async, [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<TestTlsClient>> c = TestTlsClient::Connect(where.port);
    if (!c.ok()) return c.status();
    if (absl::Status s = (*c)->WritePlain("STARTTLS\r\n"); !s.ok()) return s;
    absl::StatusOr<std::string> line = (*c)->ReadPlainLine();
    if (!line.ok()) return line.status();
    if (*line != "OK go ahead\r\n") return absl::InternalError(absl::StrCat("got ", *line));
    if (absl::Status s = (*c)->StartTls(Verifying()); !s.ok()) return s;
    if (absl::Status s = (*c)->Write("secret"); !s.ok()) return s;
    absl::StatusOr<std::string> reply = (*c)->Read(7);
    if (!reply.ok()) return reply.status();
    if (*reply != "private") return absl::InternalError(absl::StrCat("got ", *reply));
    return absl::OkStatus();
  });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> plain, AcceptWithin(*listener));
  EXPECT_FALSE(plain->Secure());
  EXPECT_THAT(plain->Recv(10, kTestWait), IsOkAndHolds(std::string("STARTTLS\r\n")));
  ASSERT_THAT(plain->Send("OK go ahead\r\n"), IsOk());
  const int fd = plain->fd();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> secure, tls->Upgrade(std::move(plain)));
  EXPECT_EQ(secure->fd(), fd);
  EXPECT_TRUE(secure->Secure());
  ASSERT_THAT(secure->Handshake(kTestWait), IsOk());
  EXPECT_THAT(secure->Recv(6, kTestWait), IsOkAndHolds(std::string("secret")));
  EXPECT_THAT(secure->Send("private"), IsOk());
  EXPECT_THAT(secure->GetConnectionInformation(), IsOk());
  EXPECT_THAT(client.get(), IsOk());
}

// The client sends its ClientHello right behind the command, and the server's plain
// socket has already read it (a Recv that timed out keeps what it read): the upgrade
// must hand those bytes to TLS, not lose them.
TEST_F(TlsTest, StartTlsKeepsBytesThePlainSocketAlreadyRead) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls,
                       TlsTransport::Create(OptionsFor(pki().ec_server)));
  TcpTransport tcp;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Listener> listener, tcp.Listen(0, {.address = "127.0.0.1"}));
  ASSERT_OK_AND_ASSIGN(SocketInfo where, listener->LocalInfo());
  std::future<absl::Status> client = std::async(std::launch::async, [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<TestTlsClient>> c = TestTlsClient::Connect(where.port);
    if (!c.ok()) return c.status();
    if (absl::Status s = (*c)->WritePlain("STARTTLS\r\n"); !s.ok()) return s;
    if (absl::Status s = (*c)->StartTls(Verifying()); !s.ok()) return s;
    if (absl::Status s = (*c)->Write("secret"); !s.ok()) return s;
    return absl::OkStatus();
  });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> plain, AcceptWithin(*listener));
  // Peek until the command and the whole ClientHello record are in the kernel.
  const absl::Time give_up = absl::Now() + kTestWait;
  for (;;) {
    char peek[4096];
    const ssize_t n = ::recv(plain->fd(), peek, sizeof(peek), MSG_PEEK);
    if (n >= 15) {
      const size_t record = 5 + ((static_cast<uint8_t>(peek[13]) << 8) | static_cast<uint8_t>(peek[14]));
      if (static_cast<size_t>(n) >= 10 + record) break;
    }
    ASSERT_LT(absl::Now(), give_up) << "the ClientHello never arrived";
    absl::SleepFor(absl::Milliseconds(2));
  }
  // A Recv for more than there is times out and keeps everything it read...
  EXPECT_THAT(plain->Recv(1 << 16, absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  // ...so the command comes from the kept bytes, and the ClientHello stays kept.
  EXPECT_THAT(plain->Recv(10, kTestWait), IsOkAndHolds(std::string("STARTTLS\r\n")));
  EXPECT_TRUE(plain->HasBufferedInput());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> secure, tls->Upgrade(std::move(plain)));
  EXPECT_TRUE(secure->HasBufferedInput()) << "the kept ClientHello is invisible to TLS";
  ASSERT_THAT(secure->Handshake(kTestWait), IsOk());
  EXPECT_THAT(secure->Recv(6, kTestWait), IsOkAndHolds(std::string("secret")));
  EXPECT_THAT(client.get(), IsOk());
}

TEST_F(TlsTest, UpgradeRefusesNoSocket) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls,
                       TlsTransport::Create(OptionsFor(pki().ec_server)));
  EXPECT_THAT(tls->Upgrade(nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
}

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

// ---- Credential reload ----

TEST_F(TlsTest, ReloadServesNewHandshakesAndKeepsLiveConnections) {
  const TestCertificate alpha = pki().ca.IssueServer("alpha.test");
  const TestCertificate beta = pki().ca.IssueServer("beta.test");
  ASSERT_THAT(Listen(OptionsFor(alpha)), IsOk());

  // A live connection on the old certificate, held open across the reload.
  absl::Notification reloaded;
  std::future<ClientSide> live =
      StartClient(port_, Verifying(), [&](TestTlsClient& c, ClientSide& side) -> absl::Status {
        if (absl::Status s = PingPong(c, side); !s.ok()) return s;
        if (!reloaded.WaitForNotificationWithTimeout(kTestWait)) {
          return absl::DeadlineExceededError("no reload");
        }
        if (absl::Status s = c.Write("after"); !s.ok()) return s;
        absl::StatusOr<std::string> got = c.Read(5);
        if (!got.ok()) return got.status();
        side.received = *got;
        return absl::OkStatus();
      });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> old_conn, AcceptHandshake());
  ServePingPong(*old_conn);

  ASSERT_THAT(transport_->ReloadCredentials(OptionsFor(beta)), IsOk());
  reloaded.Notify();
  Exchange fresh = RunExchange(Verifying());
  ASSERT_THAT(fresh.client.status, IsOk());
  EXPECT_EQ(fresh.client.peer_cn, "beta.test");

  EXPECT_THAT(old_conn->Recv(5, kTestWait), IsOkAndHolds(std::string("after")));
  EXPECT_THAT(old_conn->Send("still"), IsOk());
  ClientSide side = live.get();
  ASSERT_THAT(side.status, IsOk());
  EXPECT_EQ(side.peer_cn, "alpha.test");
  EXPECT_EQ(side.received, "still");

  // A reload that fails changes nothing.
  TlsOptions broken = OptionsFor(alpha);
  broken.credentials.private_key_pem = beta.key_pem;
  EXPECT_THAT(transport_->ReloadCredentials(broken),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not match"));
  Exchange after_failure = RunExchange(Verifying());
  ASSERT_THAT(after_failure.client.status, IsOk());
  EXPECT_EQ(after_failure.client.peer_cn, "beta.test");
}

TEST_F(TlsTest, ReloadRereadsTheFilesInForce) {
  const TestCertificate first = pki().ca.IssueServer("first.test");
  const TestCertificate renewed = pki().ca.IssueServer("renewed.test");
  const std::string chain = WriteTestFile("chain.pem", first.chain_pem());
  const std::string key = WriteTestFile("key.pem", first.key_pem);
  ASSERT_THAT(Listen({.credentials = TlsCredentials::FromFiles(chain, key)}), IsOk());
  Exchange before = RunExchange(Verifying());
  ASSERT_THAT(before.client.status, IsOk());
  EXPECT_EQ(before.client.peer_cn, "first.test");
  // The certificate is renewed on disk, then the server is told.
  {
    std::FILE* f = std::fopen(chain.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(renewed.chain_pem().c_str(), f);
    std::fclose(f);
    f = std::fopen(key.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(renewed.key_pem.c_str(), f);
    std::fclose(f);
  }
  ASSERT_THAT(transport_->ReloadCredentials(), IsOk());
  Exchange after = RunExchange(Verifying());
  ASSERT_THAT(after.client.status, IsOk());
  EXPECT_EQ(after.client.peer_cn, "renewed.test");
}

// Handshakes on several threads while the credentials flip: for ASan and TSan.
TEST_F(TlsTest, ConcurrentHandshakesDuringReloads) {
  const TestCertificate a = pki().ca.IssueServer("a.test");
  const TestCertificate b = pki().ca.IssueServer("b.test");
  ASSERT_THAT(Listen(OptionsFor(a)), IsOk());
  constexpr int kClients = 4;
  constexpr int kRounds = 8;
  std::atomic<bool> stop{false};
  std::thread reloader([&] {
    for (int i = 0; !stop.load(); ++i) {
      EXPECT_THAT(transport_->ReloadCredentials(OptionsFor(i % 2 == 0 ? b : a)), IsOk());
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  std::thread server([&] {
    std::vector<std::thread> handlers;
    for (int i = 0; i < kClients * kRounds; ++i) {
      absl::StatusOr<std::unique_ptr<Socket>> socket = Accept();
      if (!socket.ok()) {
        ADD_FAILURE() << socket.status();
        break;
      }
      handlers.emplace_back([s = *std::move(socket)] {
        ASSERT_THAT(s->Handshake(kTestWait), IsOk());
        ServePingPong(*s);
      });
    }
    for (std::thread& t : handlers) t.join();
  });
  std::vector<std::future<void>> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::async(std::launch::async, [&] {
      for (int r = 0; r < kRounds; ++r) {
        ClientSide side = StartClient(port_, Verifying(), PingPong).get();
        EXPECT_THAT(side.status, IsOk());
        EXPECT_THAT(side.peer_cn, AnyOf("a.test", "b.test"));
      }
    }));
  }
  for (auto& f : clients) f.get();
  server.join();
  stop = true;
  reloader.join();
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
