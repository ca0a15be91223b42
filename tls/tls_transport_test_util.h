// What the TLS transport tests (tls_*_test.cc over loopback sockets) share: the test
// PKI, a BoringSSL client running a script in its own thread, and TlsTest, a fixture
// listening with TLS that accepts and handshakes.
//
//   ASSERT_THAT(Listen(OptionsFor(pki().ec_server)), IsOk());
//   std::future<ClientSide> client = StartClient(port_, Verifying(), PingPong);
//   ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, AcceptHandshake());
//   ServePingPong(*server);
//   EXPECT_THAT(client.get().status, IsOk());
//
// Every wait is bounded: blocking server calls carry kTestWait, the client's socket has
// SO_RCVTIMEO/SO_SNDTIMEO, and calls meant to time out use short timeouts whose code,
// not their duration, is asserted (with a loose upper bound on the time they took).
#ifndef ISLET_TLS_TLS_TRANSPORT_TEST_UTIL_H_
#define ISLET_TLS_TLS_TRANSPORT_TEST_UTIL_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_options.h"
#include "transport/socket_types.h"
#include "transport/transport.h"

namespace islet {

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

const Pki& pki();

// A client that verifies the server against the test CA and the name `host`.
TlsClientOptions Verifying(const std::string& host = "localhost");

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
                                    ClientScript script = {});

// Client half of the usual exchange: "ping" out, "pong" back (by which time a TLS 1.3
// client has also received its session tickets).
absl::Status PingPong(TestTlsClient& client, ClientSide& side);

// Server half of it.
void ServePingPong(Socket& socket);

// Waits for the client to read until the server closes; used to hold a client open.
absl::Status ReadUntilClosed(TestTlsClient& client, ClientSide& side);

// ---- The server side ----

class TlsTest : public TlsListenerTest {
 protected:
  absl::StatusOr<std::unique_ptr<Socket>> Accept() { return AcceptWithin(*listener_); }

  // Accepts one connection and completes its handshake.
  absl::StatusOr<std::unique_ptr<Socket>> AcceptHandshake();

  // One connection with the ping/pong exchange; returns what each side saw.
  struct Exchange {
    ClientSide client;
    absl::StatusOr<ConnectionInformation> server_info = absl::UnknownError("no connection");
    absl::StatusOr<SocketInfo> server_peer = absl::UnknownError("no connection");
    absl::Status server_handshake = absl::UnknownError("no connection");
  };
  Exchange RunExchange(const TlsClientOptions& options);
};

}  // namespace islet

#endif  // ISLET_TLS_TLS_TRANSPORT_TEST_UTIL_H_
