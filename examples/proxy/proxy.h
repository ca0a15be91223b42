// A TCP reverse proxy: every client connection gets its own connection to the upstream,
// opened on the client's worker (Connection::Open), and bytes are relayed both ways.
//
// - Backpressure both ways: when the side being written to holds more than high_water
//   bytes of queued output, the side being read from stops reading (PauseReading) until
//   that output has drained to low_water (NotifyWhenDrained -> HandleDrained). Memory
//   per pair is bounded whatever the speeds of the two peers.
// - The upstream connect is bounded by connect_timeout; until it is done the client's
//   input waits in the kernel (its reading is paused).
// - Idle: a pair that relays nothing for idle_timeout is closed, checked by a timer
//   (SendAfter). Each side alone would look idle during a one-way transfer, so their
//   own read timeouts are off.
// - Half-closes pass through: a peer that finishes sending (shutdown(SHUT_WR), as
//   `nc -N` does after its request) is heard as a half-close by the other side's
//   peer, after what is queued for it, and its answer still flows back. Once both
//   have finished, or when either side ends otherwise (a reset, an error, the idle
//   timer), the other is closed after its queued output is sent.
//
// - TLS on either side. Termination: give the server a TlsTransport (tls/tls_transport.h)
//   and the handler sees plaintext. To the upstream: upstream_tls, a TlsClient
//   (tls/tls_client.h) that verifies the upstream; its handshake is part of the connect,
//   under connect_timeout, and a failed one closes the client having sent it nothing.
//
//   ServerOptions options;
//   options.handler_factory = HandlerFactoryOf<ProxyHandler>();
//   options.handler_options = ProxyOptions{.upstream = {..., "127.0.0.1", 8080}};
//   options.transport = *TlsTransport::Create(...);             // optional: TLS clients
//   // optional: TLS upstream, ProxyOptions::upstream_tls = *TlsClient::Create(...)
#ifndef ISLET_EXAMPLES_PROXY_PROXY_H_
#define ISLET_EXAMPLES_PROXY_PROXY_H_

#include <any>
#include <cstddef>
#include <memory>

#include "absl/time/time.h"
#include "server/connection.h"
#include "server/handler.h"
#include "transport/socket_types.h"
#include "transport/transport.h"

namespace islet::examples {

struct ProxyOptions {
  SocketInfo upstream;  // an IP literal and port, or a unix path
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration idle_timeout = absl::Minutes(5);
  size_t high_water = 256 << 10;
  size_t low_water = 64 << 10;
  // Secures the upstream connections (TlsClient); null: plain TCP.
  std::shared_ptr<ClientSecurity> upstream_tls;
};

// What the two sides of one proxied connection share. Both live on one worker, so it
// needs no lock.
struct ProxyPair;

// Serves the client side; makes the upstream side itself.
class ProxyHandler : public Handler {
 public:
  // ServerOptions::handler_options must hold a ProxyOptions.
  explicit ProxyHandler(const std::any& options);
  ~ProxyHandler() override;

  HandlerResult HandleConnection(Connection& conn) override;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override;
  HandlerResult HandleDrained(Connection& conn) override;
  HandlerResult HandlePeerFinished(Connection& conn) override;
  HandlerResult HandleMessage(std::any& message, Connection& conn) override;
  void HandleClose(Connection& conn) override;
  void HandleError(const absl::Status& error, Connection& conn) override;
  void HandleShutdown(Connection& conn) override;
  void HandleTimeout(Connection& conn) override;

 private:
  std::shared_ptr<ProxyPair> pair_;
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_PROXY_PROXY_H_
