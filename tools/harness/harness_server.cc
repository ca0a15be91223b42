#include "tools/harness/harness_server.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "examples/daytime/daytime.h"
#include "examples/echo/echo.h"
#include "examples/http_hello/http_hello.h"
#include "examples/messenger/messenger.h"
#include "examples/proxy/proxy.h"
#include "server/inherited_listeners.h"
#include "tls/tls_client.h"
#include "tls/tls_options.h"
#include "tls/tls_transport.h"
#include "transport/proxy_protocol.h"
#include "transport/tcp_transport.h"

namespace islet::harness {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

absl::Status ChooseHandler(const HarnessConfig& config, ServerOptions& options) {
  const std::string& name = config.handler;
  if (!config.upstream.empty() && name != "proxy") return Bad("upstream", "needs --handler=proxy");
  if (config.upstream_tls && name != "proxy") return Bad("upstream_tls", "needs --handler=proxy");
  if (!config.upstream_tls) {
    if (!config.upstream_cacertfile.empty()) return Bad("upstream_cacertfile", "needs --upstream_tls");
    if (!config.upstream_server_name.empty()) {
      return Bad("upstream_server_name", "needs --upstream_tls");
    }
  }
  if (name == "echo") {
    options.handler_factory = HandlerFactoryOf<examples::EchoHandler>();
  } else if (name == "daytime") {
    options.handler_factory = HandlerFactoryOf<examples::DaytimeHandler>();
  } else if (name == "http_hello") {
    options.handler_factory = HandlerFactoryOf<examples::HttpHelloHandler>();
    examples::HttpHelloOptions http;
    http.head_timeout = config.head_timeout;
    options.handler_options = http;
  } else if (name == "proxy") {
    if (config.upstream.empty()) return Bad("upstream", "is required with --handler=proxy");
    // HOST:PORT, the host an IP literal ("[::1]:8080" for IPv6).
    const size_t colon = config.upstream.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(config.upstream.substr(colon + 1), &port) ||
        port <= 0 || port > 65535) {
      return Bad("upstream", absl::StrCat("\"", config.upstream, "\" is not HOST:PORT"));
    }
    std::string host = config.upstream.substr(0, colon);
    const bool v6 = absl::StartsWith(host, "[") && absl::EndsWith(host, "]");
    if (v6) host = host.substr(1, host.size() - 2);
    examples::ProxyOptions proxy;
    proxy.upstream = {.family = v6 ? AddressFamily::kIpv6 : AddressFamily::kIpv4,
                      .address = host,
                      .port = static_cast<uint16_t>(port)};
    if (config.upstream_tls) {
      OutboundTlsOptions tls;
      tls.ca_file = config.upstream_cacertfile;
      tls.server_name = config.upstream_server_name;
      absl::StatusOr<std::shared_ptr<TlsClient>> client = TlsClient::Create(std::move(tls));
      if (!client.ok()) {
        // The field names in TlsClient's messages become the flags they came from.
        const std::string flag = absl::StrContains(client.status().message(), "server_name")
                                     ? "upstream_server_name"
                                     : "upstream_cacertfile";
        return Bad(flag, client.status().message());
      }
      proxy.upstream_tls = *std::move(client);
    }
    options.handler_factory = HandlerFactoryOf<examples::ProxyHandler>();
    options.handler_options = proxy;
  } else if (name == "messenger") {
    options.handler_factory = HandlerFactoryOf<examples::MessengerHandler>();
    options.handler_options = std::make_shared<examples::MessengerRoom>(stdout);
  } else {
    return Bad("handler", absl::StrCat("\"", name, "\" is not one of echo, daytime, http_hello, messenger, proxy"));
  }
  return absl::OkStatus();
}

absl::Status ChooseTransport(const HarnessConfig& config, ServerOptions& options,
                             std::shared_ptr<TlsTransport>* tls_transport) {
  if (config.transport == "tcp") {
    for (absl::string_view flag : {"certfile", "keyfile", "cacertfile"}) {
      const std::string& value = flag == "certfile"  ? config.certfile
                                 : flag == "keyfile" ? config.keyfile
                                                     : config.cacertfile;
      if (!value.empty()) return Bad(flag, "needs --transport=tls");
    }
    if (!config.alpn.empty()) return Bad("alpn", "needs --transport=tls");
    if (config.verify_peer != "none") return Bad("verify_peer", "needs --transport=tls");
    return absl::OkStatus();
  }
  if (config.transport != "tls") {
    return Bad("transport", absl::StrCat("\"", config.transport, "\" is not one of tcp, tls"));
  }
  if (config.certfile.empty()) return Bad("certfile", "is required with --transport=tls");
  // A certificate file usually holds its key too; --keyfile defaults to it.
  const std::string keyfile = config.keyfile.empty() ? config.certfile : config.keyfile;
  TlsOptions tls;
  tls.credentials = TlsCredentials::FromFiles(config.certfile, keyfile);
  tls.alpn_protocols = config.alpn;
  if (config.verify_peer == "none") {
    tls.client_certificate = ClientCertificateMode::kNone;
  } else if (config.verify_peer == "optional") {
    tls.client_certificate = ClientCertificateMode::kOptional;
  } else if (config.verify_peer == "required") {
    tls.client_certificate = ClientCertificateMode::kRequired;
  } else {
    return Bad("verify_peer", absl::StrCat("\"", config.verify_peer,
                                           "\" is not one of none, optional, required"));
  }
  if (tls.client_certificate != ClientCertificateMode::kNone) {
    if (config.cacertfile.empty()) return Bad("cacertfile", "is required with --verify_peer");
    tls.client_ca_file = config.cacertfile;
  } else if (!config.cacertfile.empty()) {
    return Bad("cacertfile", "needs --verify_peer=optional or required");
  }
  absl::StatusOr<std::shared_ptr<TlsTransport>> transport = TlsTransport::Create(std::move(tls));
  if (!transport.ok()) return transport.status();
  *tls_transport = *transport;
  options.transport = *std::move(transport);
  return absl::OkStatus();
}

// Sockets passed in (systemd, a predecessor) replace listening, when they are the ones
// the flags ask for.
absl::Status AdoptListeners(const HarnessConfig& config, ServerOptions& options) {
  if (config.listen_fds.empty()) return absl::OkStatus();
  std::vector<SocketInfo> sockets;
  for (int fd : config.listen_fds) {
    absl::StatusOr<SocketInfo> local = ListeningSocketInfo(fd);
    if (!local.ok()) return local.status();
    sockets.push_back(*std::move(local));
  }
  absl::Status match = CheckListenersMatch(sockets, options);
  if (!match.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the listening sockets passed in do not match the flags: ", match.message()));
  }
  options.listen_fds = config.listen_fds;
  return absl::OkStatus();
}

// Wraps the chosen transport in the PROXY protocol when asked to.
absl::Status ChooseProxyProtocol(const HarnessConfig& config, ServerOptions& options) {
  if (config.proxy_protocol == "off") {
    if (!config.proxy_trusted.empty()) return Bad("proxy_trusted", "needs --proxy_protocol");
    if (config.proxy_optional) return Bad("proxy_optional", "needs --proxy_protocol");
    return absl::OkStatus();
  }
  ProxyProtocolOptions proxy;
  if (config.proxy_protocol == "v1") {
    proxy.versions = ProxyProtocolOptions::Versions::kV1;
  } else if (config.proxy_protocol == "v2") {
    proxy.versions = ProxyProtocolOptions::Versions::kV2;
  } else if (config.proxy_protocol == "any") {
    proxy.versions = ProxyProtocolOptions::Versions::kAny;
  } else {
    return Bad("proxy_protocol", absl::StrCat("\"", config.proxy_protocol,
                                              "\" is not one of off, v1, v2, any"));
  }
  if (config.proxy_trusted.empty() && config.unix_socket.empty()) {
    return Bad("proxy_trusted", "is required with --proxy_protocol: the balancers' networks");
  }
  proxy.trusted_networks = config.proxy_trusted;
  // On a unix socket only local processes connect: the balancer, whoever the socket's
  // permissions let in.
  proxy.trust_unix_peers = !config.unix_socket.empty();
  proxy.mode = config.proxy_optional ? ProxyProtocolOptions::Mode::kOptional
                                     : ProxyProtocolOptions::Mode::kRequired;
  std::shared_ptr<Transport> inner = options.transport;
  if (inner == nullptr) inner = std::make_shared<TcpTransport>();
  absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> transport =
      ProxyProtocolTransport::Create(std::move(inner), std::move(proxy));
  if (!transport.ok()) {
    absl::string_view why = transport.status().message();
    absl::ConsumePrefix(&why, "proxy_protocol: trusted_networks: ");
    return Bad("proxy_trusted", why);
  }
  options.transport = *std::move(transport);
  return absl::OkStatus();
}

}  // namespace

absl::Status HarnessServer::ReloadCredentials() {
  if (tls_ == nullptr) {
    return absl::FailedPreconditionError("no credentials to reload without --transport=tls");
  }
  return tls_->ReloadCredentials();
}

absl::StatusOr<std::unique_ptr<HarnessServer>> HarnessServer::Start(const HarnessConfig& config) {
  absl::StatusOr<LogLevel> level = ParseLogLevel(config.log);
  if (!level.ok()) return Bad("log", level.status().message());
  absl::StatusOr<LogFormat> format = ParseLogFormat(config.log_format);
  if (!format.ok()) return Bad("log_format", format.status().message());
  if (config.metrics_port > 65535) return Bad("metrics_port", "must be at most 65535");
  ServerOptions options;
  options.name = "harness";
  options.port = config.port;
  options.transport_options.address = config.ip;
  options.transport_options.unix_path = config.unix_socket;
  options.num_acceptors = config.num_acceptors;
  options.num_listen_sockets = config.num_listen_sockets;
  options.num_workers = config.num_workers;
  options.event_loop = config.event_loop;
  options.num_connections = config.num_connections;
  options.max_connections_retry_wait = config.max_connections_retry_wait;
  options.max_connections_retry_count = config.max_connections_retry_count;
  options.read_timeout = config.read_timeout;
  options.handshake_timeout = config.handshake_timeout;
  options.shutdown_timeout = config.shutdown_timeout;
  options.shutdown_grace = config.shutdown_grace;
  options.max_connections = config.max_connections;
  options.descriptor_reserve = config.descriptor_reserve;
  options.max_connections_per_peer = config.max_connections_per_peer;
  options.max_pending_messages =
      config.max_pending_messages > 0 ? static_cast<size_t>(config.max_pending_messages) : 0;
  options.linger_timeout = config.linger_timeout;
  options.overload_scale_from = config.overload_scale_from;
  options.overload_timeout_floor = config.overload_timeout_floor;
  options.output_budget = config.output_budget > 0 ? static_cast<size_t>(config.output_budget) : 0;
  auto harness = std::unique_ptr<HarnessServer>(new HarnessServer());
  absl::Status s = ChooseHandler(config, options);
  if (s.ok()) s = ChooseTransport(config, options, &harness->tls_);
  if (s.ok()) s = ChooseProxyProtocol(config, options);
  if (s.ok()) s = AdoptListeners(config, options);
  if (!s.ok()) return s;

  // The logger comes first so the listener's start is logged too.
  harness->logger_ = std::make_unique<TelemetryLogger>(
      TelemetryLogger::Options{.level = *level, .format = *format});
  if (config.metrics_port >= 0) harness->metrics_ = std::make_unique<ServerMetrics>(options.name);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  if (!server.ok()) return server.status();
  harness->server_ = *std::move(server);
  absl::StatusOr<SocketInfo> where = harness->server_->ListenerInfo();
  if (!where.ok()) return where.status();
  harness->listening_ =
      where->family == AddressFamily::kUnix ? where->address : where->ToString();
  if (harness->metrics_ != nullptr) {
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint = MetricsEndpoint::Start(
        {.address = config.metrics_ip, .port = static_cast<uint16_t>(config.metrics_port)},
        *harness->metrics_, harness->server_.get());
    if (!endpoint.ok()) {
      return absl::Status(endpoint.status().code(),
                          absl::StrCat("--metrics_port: ", endpoint.status().message()));
    }
    harness->endpoint_ = *std::move(endpoint);
    harness->metrics_listening_ = harness->endpoint_->local().ToString();
  }
  return harness;
}

}  // namespace islet::harness
