#include "server/event_loop_kind.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace islet {

absl::string_view EventLoopKindName(EventLoopKind kind) {
  switch (kind) {
    case EventLoopKind::kDefault:
      return "default";
    case EventLoopKind::kEpoll:
      return "epoll";
    case EventLoopKind::kIoUring:
      return "io_uring";
  }
  return "unknown";
}

std::optional<EventLoopKind> ParseEventLoopKind(absl::string_view name) {
  for (EventLoopKind kind :
       {EventLoopKind::kDefault, EventLoopKind::kEpoll, EventLoopKind::kIoUring}) {
    if (name == EventLoopKindName(kind)) return kind;
  }
  return std::nullopt;
}

absl::StatusOr<EventLoopKind> ResolveEventLoopKind(EventLoopKind kind) {
  if (kind != EventLoopKind::kDefault) return kind;
  const char* env = std::getenv("ISLET_EVENT_LOOP");
  if (env == nullptr || *env == '\0') return EventLoopKind::kEpoll;
  std::optional<EventLoopKind> parsed = ParseEventLoopKind(env);
  if (!parsed.has_value() || *parsed == EventLoopKind::kDefault) {
    return absl::InvalidArgumentError(absl::StrCat(
        "event loop: ISLET_EVENT_LOOP is \"", env, "\"; it must be epoll or io_uring"));
  }
  return *parsed;
}

}  // namespace islet
