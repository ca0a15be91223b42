#include "server/server_options.h"

#include "absl/strings/str_cat.h"

namespace islet {
namespace {

absl::Status Bad(absl::string_view option, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("server options: ", option, ": ", why));
}

bool PositiveFinite(absl::Duration d) {
  return d > absl::ZeroDuration() && d != absl::InfiniteDuration();
}

}  // namespace

absl::Status ValidateServerOptions(const ServerOptions& o) {
  if (!o.handler_factory) return Bad("handler_factory", "is required");
  if (o.num_acceptors < 1) return Bad("num_acceptors", "must be at least 1");
  if (o.num_listen_sockets < 1) return Bad("num_listen_sockets", "must be at least 1");
  if (o.num_listen_sockets > o.num_acceptors) {
    return Bad("num_listen_sockets",
               absl::StrCat(o.num_listen_sockets, " exceeds num_acceptors (",
                            o.num_acceptors, "): a listener needs an acceptor"));
  }
  if (!o.listen_fds.empty()) {
    if (static_cast<int>(o.listen_fds.size()) != o.num_listen_sockets) {
      return Bad("listen_fds", absl::StrCat(o.listen_fds.size(), " sockets given, but ",
                                            "num_listen_sockets is ", o.num_listen_sockets));
    }
    for (int fd : o.listen_fds) {
      if (fd < 0) return Bad("listen_fds", absl::StrCat("descriptor ", fd, " is not valid"));
    }
  } else if (o.num_listen_sockets > 1 && !o.transport_options.unix_path.empty()) {
    return Bad("num_listen_sockets", "SO_REUSEPORT does not apply to unix sockets");
  }
  if (o.num_workers < 0) return Bad("num_workers", "must be 0 (one per core) or more");
  if (absl::StatusOr<EventLoopKind> kind = ResolveEventLoopKind(o.event_loop); !kind.ok()) {
    return Bad("event_loop", kind.status().message());
  }
  if (o.num_connections < 1 && o.num_connections != ServerOptions::kUnlimited) {
    return Bad("num_connections", "must be at least 1, or kUnlimited");
  }
  if (o.max_connections < 1 && o.max_connections != ServerOptions::kUnlimited) {
    return Bad("max_connections", "must be at least 1, or kUnlimited");
  }
  if (o.max_connections_per_peer < 0) {
    return Bad("max_connections_per_peer", "must not be negative (0: no limit)");
  }
  if (o.descriptor_reserve < 0) {
    return Bad("descriptor_reserve", "must not be negative");
  }
  if (o.max_connections_retry_wait < absl::ZeroDuration() ||
      o.max_connections_retry_wait == absl::InfiniteDuration()) {
    return Bad("max_connections_retry_wait", "must be finite and not negative");
  }
  if (o.max_connections_retry_count < 0) {
    return Bad("max_connections_retry_count", "must not be negative");
  }
  if (o.read_timeout <= absl::ZeroDuration()) {
    return Bad("read_timeout", "must be positive (or absl::InfiniteDuration())");
  }
  if (!PositiveFinite(o.handshake_timeout)) {
    return Bad("handshake_timeout", "must be positive and finite");
  }
  if (o.shutdown_grace < absl::ZeroDuration() || o.shutdown_grace == absl::InfiniteDuration()) {
    return Bad("shutdown_grace", "must be finite and not negative");
  }
  if (o.shutdown_timeout < absl::ZeroDuration() ||
      o.shutdown_timeout == absl::InfiniteDuration()) {
    return Bad("shutdown_timeout", "must be finite and not negative");
  }
  if (!PositiveFinite(o.send_timeout)) return Bad("send_timeout", "must be positive and finite");
  if (o.linger_timeout < absl::ZeroDuration() || o.linger_timeout == absl::InfiniteDuration()) {
    return Bad("linger_timeout", "must be finite and not negative");
  }
  // Written so that NaN fails too.
  if (!(o.overload_scale_from > 0 && o.overload_scale_from <= 1)) {
    return Bad("overload_scale_from", "must be more than 0 and at most 1");
  }
  if (o.overload_timeout_floor <= absl::ZeroDuration()) {
    return Bad("overload_timeout_floor", "must be positive (absl::InfiniteDuration(): off)");
  }
  if (o.send_queue_high_water == 0) return Bad("send_queue_high_water", "must be positive");
  if (o.max_pending_messages == 0) return Bad("max_pending_messages", "must be positive");
  if (o.send_queue_limit < o.send_queue_high_water) {
    return Bad("send_queue_limit", "must be at least send_queue_high_water");
  }
  if (o.transport_options.backlog < 1) return Bad("transport_options.backlog", "must be positive");
  return absl::OkStatus();
}

}  // namespace islet
