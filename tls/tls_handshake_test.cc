// Tests of TLS handshakes over loopback sockets, against the BoringSSL client of
// testing/tls_test_util.h running in a thread of the test: each key type and version,
// ALPN, SNI, session resumption, refused versions, handshakes that go wrong, and
// STARTTLS. Shared fixture: tls_transport_test_util.h.
#include "tls/tls_transport.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport_test_util.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

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

// A plain TCP listener and a TLS transport to upgrade its connections with; the client
// connects in the clear and sends "STARTTLS\r\n" first.
class StartTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tls_, TlsTransport::Create(OptionsFor(pki().ec_server)));
    ASSERT_OK_AND_ASSIGN(plain_listener_, tcp_.Listen(0, {.address = "127.0.0.1"}));
    ASSERT_OK_AND_ASSIGN(SocketInfo where, plain_listener_->LocalInfo());
    plain_port_ = where.port;
  }

  // Runs `then` on a client that has connected and sent the command in the clear.
  std::future<absl::Status> ClientSendingStartTls(
      std::function<absl::Status(TestTlsClient&)> then) {
    return std::async(std::launch::async, [port = plain_port_, then]() -> absl::Status {
      absl::StatusOr<std::unique_ptr<TestTlsClient>> c = TestTlsClient::Connect(port);
      if (!c.ok()) return c.status();
      if (absl::Status s = (*c)->WritePlain("STARTTLS\r\n"); !s.ok()) return s;
      return then(**c);
    });
  }

  std::shared_ptr<TlsTransport> tls_;
  TcpTransport tcp_;
  std::unique_ptr<Listener> plain_listener_;
  uint16_t plain_port_ = 0;
};

TEST_F(StartTlsTest, StartTlsUpgradesAPlainConnection) {
  std::future<absl::Status> client = ClientSendingStartTls([](TestTlsClient& c) -> absl::Status {
    absl::StatusOr<std::string> line = c.ReadPlainLine();
    if (!line.ok()) return line.status();
    if (*line != "OK go ahead\r\n") return absl::InternalError(absl::StrCat("got ", *line));
    if (absl::Status s = c.StartTls(Verifying()); !s.ok()) return s;
    if (absl::Status s = c.Write("secret"); !s.ok()) return s;
    absl::StatusOr<std::string> reply = c.Read(7);
    if (!reply.ok()) return reply.status();
    if (*reply != "private") return absl::InternalError(absl::StrCat("got ", *reply));
    return absl::OkStatus();
  });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> plain, AcceptWithin(*plain_listener_));
  EXPECT_FALSE(plain->Secure());
  EXPECT_THAT(plain->Recv(10, kTestWait), IsOkAndHolds(std::string("STARTTLS\r\n")));
  ASSERT_THAT(plain->Send("OK go ahead\r\n"), IsOk());
  const int fd = plain->fd();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> secure, tls_->Upgrade(std::move(plain)));
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
TEST_F(StartTlsTest, StartTlsKeepsBytesThePlainSocketAlreadyRead) {
  std::future<absl::Status> client = ClientSendingStartTls([](TestTlsClient& c) -> absl::Status {
    if (absl::Status s = c.StartTls(Verifying()); !s.ok()) return s;
    return c.Write("secret");
  });
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> plain, AcceptWithin(*plain_listener_));
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
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> secure, tls_->Upgrade(std::move(plain)));
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

}  // namespace
}  // namespace islet
