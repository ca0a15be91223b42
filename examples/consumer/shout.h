// Shout: every line comes back in capitals. Plain TCP, or TLS when credentials are given.
#ifndef CONSUMER_SHOUT_H_
#define CONSUMER_SHOUT_H_

#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "server/server.h"
#include "tls/tls_options.h"

namespace consumer {

absl::StatusOr<std::unique_ptr<islet::Server>> StartShoutServer(
    uint16_t port, std::optional<islet::TlsCredentials> tls = std::nullopt);

}  // namespace consumer

#endif  // CONSUMER_SHOUT_H_
