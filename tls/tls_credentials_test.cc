// Tests of the TLS transport's credentials: configuration errors at Create (keys,
// files, PEM, CA bundles, protocol options), client certificates, and reloading the
// credentials while serving. Shared fixture: tls_transport_test_util.h.
#include "tls/tls_transport.h"

#include <openssl/ssl.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
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
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::StartsWith;

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

}  // namespace
}  // namespace islet
