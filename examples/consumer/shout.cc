#include "shout.h"

#include <cctype>
#include <string>

#include "tls/tls_transport.h"

namespace consumer {
namespace {

class Shout : public islet::Handler {
 public:
  islet::HandlerResult HandleData(absl::string_view data, islet::Connection& conn) override {
    std::string loud(data);
    for (char& c : loud) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    absl::Status sent = conn.Send(loud);
    return sent.ok() ? islet::HandlerResult::Continue() : islet::HandlerResult::Error(sent);
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<islet::Server>> StartShoutServer(
    uint16_t port, std::optional<islet::TlsCredentials> tls) {
  islet::ServerOptions options;
  options.port = port;
  options.transport_options.address = "127.0.0.1";
  options.handler_factory = islet::HandlerFactoryOf<Shout>();
  if (tls.has_value()) {
    auto transport = islet::TlsTransport::Create({.credentials = *tls});
    if (!transport.ok()) return transport.status();
    options.transport = *transport;
  }
  return islet::Server::Start(std::move(options));
}

}  // namespace consumer
