#include "tools/harness/harness_server.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "examples/daytime/daytime.h"
#include "examples/echo/echo.h"
#include "examples/http_hello/http_hello.h"
#include "examples/messenger/messenger.h"

namespace islet::harness {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

absl::Status ChooseHandler(const std::string& name, ServerOptions& options) {
  if (name == "echo") {
    options.handler_factory = HandlerFactoryOf<examples::EchoHandler>();
  } else if (name == "daytime") {
    options.handler_factory = HandlerFactoryOf<examples::DaytimeHandler>();
  } else if (name == "http_hello") {
    options.handler_factory = HandlerFactoryOf<examples::HttpHelloHandler>();
    options.handler_options = examples::HttpHelloOptions{};
  } else if (name == "messenger") {
    options.handler_factory = HandlerFactoryOf<examples::MessengerHandler>();
    options.handler_options = std::make_shared<examples::MessengerRoom>(stdout);
  } else {
    return Bad("handler", absl::StrCat("\"", name, "\" is not one of echo, daytime, http_hello, messenger"));
  }
  return absl::OkStatus();
}

absl::Status ChooseTransport(const HarnessConfig& config, ServerOptions& options) {
  if (config.transport == "tcp") return absl::OkStatus();
  if (config.transport == "tls") {
    return Bad("transport", "tls is not available in this build yet");
  }
  return Bad("transport", absl::StrCat("\"", config.transport, "\" is not one of tcp, tls"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<HarnessServer>> HarnessServer::Start(const HarnessConfig& config) {
  absl::StatusOr<LogLevel> level = ParseLogLevel(config.log);
  if (!level.ok()) return Bad("log", level.status().message());
  ServerOptions options;
  options.name = "harness";
  options.port = config.port;
  options.transport_options.address = config.ip;
  options.transport_options.unix_path = config.unix_socket;
  options.num_acceptors = config.num_acceptors;
  options.num_listen_sockets = config.num_listen_sockets;
  options.num_workers = config.num_workers;
  options.num_connections = config.num_connections;
  options.max_connections_retry_wait = config.max_connections_retry_wait;
  options.max_connections_retry_count = config.max_connections_retry_count;
  options.read_timeout = config.read_timeout;
  options.handshake_timeout = config.handshake_timeout;
  options.shutdown_timeout = config.shutdown_timeout;
  absl::Status s = ChooseHandler(config.handler, options);
  if (s.ok()) s = ChooseTransport(config, options);
  if (!s.ok()) return s;

  auto harness = std::unique_ptr<HarnessServer>(new HarnessServer());
  // The logger comes first so the listener's start is logged too.
  harness->logger_ = std::make_unique<TelemetryLogger>(*level);
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  if (!server.ok()) return server.status();
  harness->server_ = *std::move(server);
  absl::StatusOr<SocketInfo> where = harness->server_->ListenerInfo();
  if (!where.ok()) return where.status();
  harness->listening_ =
      where->family == AddressFamily::kUnix ? where->address : where->ToString();
  return harness;
}

}  // namespace islet::harness
