// Fuzzes the server side of the handshake: the TLS transport's (BoringSSL), and the TCP
// transport's pass-through one. A socketpair stands in for the network. The input's
// first byte picks the transport and the TLS configuration (ALPN, client certificates);
// the rest is client bytes in chunks (a length byte, then that many bytes). Each chunk
// is written, then HandshakeStep runs until the server waits for more. When the input is
// used up, the client hangs up and the handshake must end.
// Invariant: success or a clean error; never a crash, a leak, or a step loop that
// neither finishes nor waits.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "testing/test_certs.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// A handshake that neither finishes nor waits after this many steps is a hang.
constexpr int kMaxSteps = 256;

std::shared_ptr<TlsTransport> MakeTls(bool alpn, ClientCertificateMode client_certs) {
  static const TestCertificateAuthority* ca =
      new TestCertificateAuthority(TestCertificateAuthority::Create());
  static const TestCertificate* server = new TestCertificate(ca->IssueServer("localhost"));
  TlsOptions options;
  options.credentials = TlsCredentials::FromPem(server->chain_pem(), server->key_pem);
  if (alpn) options.alpn_protocols = {"h2", "http/1.1"};
  options.client_certificate = client_certs;
  if (client_certs != ClientCertificateMode::kNone) options.client_ca_pem = ca->cert_pem();
  absl::StatusOr<std::shared_ptr<TlsTransport>> tls = TlsTransport::Create(options);
  if (!tls.ok()) std::abort();
  return *tls;
}

// Four configurations, made once (process lifetime: libFuzzer never exits cleanly).
TlsTransport& Tls(uint8_t config) {
  static auto* all = new std::vector<std::shared_ptr<TlsTransport>>{
      MakeTls(false, ClientCertificateMode::kNone),
      MakeTls(true, ClientCertificateMode::kNone),
      MakeTls(true, ClientCertificateMode::kOptional),
      MakeTls(false, ClientCertificateMode::kRequired),
  };
  return *(*all)[config % all->size()];
}

// Reads and drops what the server wrote, so it never blocks on a full socket buffer.
void Drain(int fd) {
  char buf[16384];
  while (::recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

// Steps until the handshake finishes (true), fails (true), or waits for input (false).
bool StepUntilWaiting(Socket& server, int client) {
  for (int i = 0; i < kMaxSteps; ++i) {
    absl::StatusOr<IoInterest> step = server.HandshakeStep();
    Drain(client);
    if (!step.ok() || *step == IoInterest::kNone) return true;
    if (*step == IoInterest::kRead) return false;
    // kWrite: the drain above made room.
  }
  std::abort();  // neither done nor waiting: a hang
}

}  // namespace
}  // namespace islet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace islet;
  if (size == 0) return 0;
  const uint8_t config = data[0];
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    std::abort();
  }
  UniqueFd client(fds[1]);
  auto plain = std::make_unique<TcpSocket>(UniqueFd(fds[0]), AddressFamily::kUnix);
  std::unique_ptr<Socket> server;
  if ((config & 0x80) != 0) {
    server = std::move(plain);  // the pass-through handshake
  } else {
    absl::StatusOr<std::unique_ptr<TlsSocket>> tls = Tls(config).NewSocket(std::move(plain));
    if (!tls.ok()) std::abort();
    server = *std::move(tls);
  }
  bool ended = StepUntilWaiting(*server, client.get());
  size_t at = 1;
  while (!ended && at < size) {
    const size_t wanted = data[at++];
    const size_t n = std::min(wanted, size - at);
    if (n > 0 && ::send(client.get(), data + at, n, MSG_NOSIGNAL) < 0) std::abort();
    at += n;
    ended = StepUntilWaiting(*server, client.get());
  }
  if (!ended) {
    // Out of input: the client hangs up, and the handshake must now end.
    ::shutdown(client.get(), SHUT_WR);
    if (!StepUntilWaiting(*server, client.get())) std::abort();
  }
  server->Close();
  return 0;
}
