#include "tls/tls_transport_test_util.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace islet {

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

TlsClientOptions Verifying(const std::string& host) {
  TlsClientOptions options;
  options.ca_pem = pki().ca.cert_pem();
  options.verify_host = host;
  return options;
}

// ---- The client side ----

std::future<ClientSide> StartClient(uint16_t port, TlsClientOptions options,
                                    ClientScript script) {
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

absl::Status PingPong(TestTlsClient& client, ClientSide& side) {
  if (absl::Status s = client.Write("ping"); !s.ok()) return s;
  absl::StatusOr<std::string> got = client.Read(4);
  if (!got.ok()) return got.status();
  side.received = *got;
  return absl::OkStatus();
}

void ServePingPong(Socket& socket) {
  absl::StatusOr<std::string> got = socket.Recv(4, kTestWait);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "ping");
  EXPECT_THAT(socket.Send("pong"), IsOk());
}

absl::Status ReadUntilClosed(TestTlsClient& client, ClientSide& side) {
  absl::StatusOr<std::string> rest = client.ReadToEnd();
  if (!rest.ok()) return rest.status();
  side.received += *rest;
  return absl::OkStatus();
}

// ---- The server side ----

absl::StatusOr<std::unique_ptr<Socket>> TlsTest::AcceptHandshake() {
  absl::StatusOr<std::unique_ptr<Socket>> socket = Accept();
  if (!socket.ok()) return socket.status();
  if (absl::Status s = (*socket)->Handshake(kTestWait); !s.ok()) return s;
  return socket;
}

TlsTest::Exchange TlsTest::RunExchange(const TlsClientOptions& options) {
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

}  // namespace islet
