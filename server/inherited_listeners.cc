#include "server/inherited_listeners.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

std::optional<std::string> Env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// An IP literal in a canonical form, so "::1" and "0::1" compare equal; the text as
// given when it is no literal.
std::string CanonicalAddress(const std::string& text) {
  in6_addr v6;
  in_addr v4;
  char out[INET6_ADDRSTRLEN];
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1 &&
      ::inet_ntop(AF_INET, &v4, out, sizeof(out)) != nullptr) {
    return out;
  }
  std::string bare = text;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  if (::inet_pton(AF_INET6, bare.c_str(), &v6) == 1 &&
      ::inet_ntop(AF_INET6, &v6, out, sizeof(out)) != nullptr) {
    return out;
  }
  return text;
}

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(what); }

}  // namespace

absl::StatusOr<std::vector<InheritedListener>> TakeInheritedListeners() {
  const std::optional<std::string> pid_text = Env("LISTEN_PID");
  const std::optional<std::string> count_text = Env("LISTEN_FDS");
  const std::optional<std::string> names_text = Env("LISTEN_FDNAMES");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");

  std::vector<InheritedListener> taken;
  if (!pid_text.has_value() || !count_text.has_value()) return taken;
  int64_t pid = 0;
  if (!absl::SimpleAtoi(*pid_text, &pid) || pid <= 0) {
    return Bad(absl::StrCat("LISTEN_PID: \"", *pid_text, "\" is not a process id"));
  }
  if (pid != ::getpid()) return taken;  // meant for another process
  int count = 0;
  if (!absl::SimpleAtoi(*count_text, &count) || count < 0 || count > 4096) {
    return Bad(absl::StrCat("LISTEN_FDS: \"", *count_text, "\" is not a descriptor count"));
  }
  // Ours from here on, whatever follows: wrapped at once, so an error closes them, and
  // close-on-exec before anything else, as sd_listen_fds does.
  for (int i = 0; i < count; ++i) {
    const int fd = kFirstInheritedFd + i;
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      return Bad(absl::StrCat("LISTEN_FDS=", count, ": descriptor ", fd, " is not open (",
                              std::strerror(errno), ")"));
    }
    taken.push_back({.name = "unknown", .fd = UniqueFd(fd), .local = {}});
  }
  if (names_text.has_value()) {
    std::vector<std::string> names = absl::StrSplit(*names_text, ':');
    if (names.size() != static_cast<size_t>(count)) {
      return Bad(absl::StrCat("LISTEN_FDNAMES: \"", *names_text, "\" has ", names.size(),
                              " names for LISTEN_FDS=", count, " descriptors"));
    }
    for (int i = 0; i < count; ++i) taken[static_cast<size_t>(i)].name = names[static_cast<size_t>(i)];
  }
  for (InheritedListener& listener : taken) {
    absl::StatusOr<SocketInfo> local = ListeningSocketInfo(listener.fd.get());
    if (!local.ok()) {
      return Bad(absl::StrCat("LISTEN_FDS: ", local.status().message(), " (named \"",
                              listener.name, "\"); a listening stream socket is needed"));
    }
    listener.local = *std::move(local);
  }
  return taken;
}

absl::Status CheckListenersMatch(absl::Span<const SocketInfo> sockets,
                                 const ServerOptions& options) {
  if (static_cast<int>(sockets.size()) != options.num_listen_sockets) {
    return Bad(absl::StrCat(sockets.size(), " listening sockets given, but the server is asked for ",
                            options.num_listen_sockets, " (num_listen_sockets)"));
  }
  const ListenOptions& want = options.transport_options;
  for (size_t i = 0; i < sockets.size(); ++i) {
    const SocketInfo& got = sockets[i];
    const std::string where = absl::StrCat("socket ", i + 1, " is ",
                                           got.family == AddressFamily::kUnix
                                               ? absl::StrCat("the unix socket ", got.address)
                                               : absl::StrCat("bound to ", got.ToString()));
    if (!want.unix_path.empty()) {
      if (got.family != AddressFamily::kUnix || got.address != want.unix_path) {
        return Bad(absl::StrCat(where, ", but the server is asked for the unix socket ",
                                want.unix_path));
      }
      continue;
    }
    const std::string address = CanonicalAddress(want.address.empty() ? "0.0.0.0" : want.address);
    if (got.family == AddressFamily::kUnix || CanonicalAddress(got.address) != address) {
      return Bad(absl::StrCat(where, ", but the server is asked for address ", address));
    }
    if (options.port != 0 && got.port != options.port) {
      return Bad(absl::StrCat(where, ", but the server is asked for port ", options.port));
    }
  }
  return absl::OkStatus();
}

}  // namespace islet
