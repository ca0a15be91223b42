#include "transport/posix_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "transport/errors.h"

namespace islet {
namespace {

absl::Status SetInt(int fd, int level, int name, int value, SocketOptionName option) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
    return PosixError(errno, absl::StrCat("setopts: ", SocketOptionNameString(option)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GetInt(int fd, int level, int name, SocketOptionName option) {
  int value = 0;
  socklen_t length = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &length) != 0) {
    return PosixError(errno, absl::StrCat("getopts: ", SocketOptionNameString(option)));
  }
  return value;
}

struct LevelAndName {
  int level;
  int name;
};

// The (level, optname) pair for the options that are one int on the wire.
bool IntOption(SocketOptionName option, AddressFamily family, LevelAndName* out) {
  switch (option) {
    case SocketOptionName::kNoDelay:
      *out = {IPPROTO_TCP, TCP_NODELAY};
      return true;
    case SocketOptionName::kKeepAlive:
      *out = {SOL_SOCKET, SO_KEEPALIVE};
      return true;
    case SocketOptionName::kKeepIdle:
      *out = {IPPROTO_TCP, TCP_KEEPIDLE};
      return true;
    case SocketOptionName::kKeepInterval:
      *out = {IPPROTO_TCP, TCP_KEEPINTVL};
      return true;
    case SocketOptionName::kKeepCount:
      *out = {IPPROTO_TCP, TCP_KEEPCNT};
      return true;
    case SocketOptionName::kRecvBuffer:
      *out = {SOL_SOCKET, SO_RCVBUF};
      return true;
    case SocketOptionName::kSendBuffer:
      *out = {SOL_SOCKET, SO_SNDBUF};
      return true;
    case SocketOptionName::kTos:
      *out = family == AddressFamily::kIpv6 ? LevelAndName{IPPROTO_IPV6, IPV6_TCLASS}
                                            : LevelAndName{IPPROTO_IP, IP_TOS};
      return true;
    case SocketOptionName::kPriority:
      *out = {SOL_SOCKET, SO_PRIORITY};
      return true;
    case SocketOptionName::kReuseAddress:
      *out = {SOL_SOCKET, SO_REUSEADDR};
      return true;
    default:
      return false;
  }
}

bool IsBufferOption(SocketOptionName name) {
  return name == SocketOptionName::kRecvBuffer || name == SocketOptionName::kSendBuffer;
}

}  // namespace

int PosixAddress::domain() const {
  switch (family) {
    case AddressFamily::kIpv4:
      return AF_INET;
    case AddressFamily::kIpv6:
      return AF_INET6;
    case AddressFamily::kUnix:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

absl::StatusOr<PosixAddress> IpAddress(const std::string& ip, uint16_t port) {
  PosixAddress out;
  const std::string literal = ip.empty() ? "0.0.0.0" : ip;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (::inet_pton(AF_INET, literal.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    out.family = AddressFamily::kIpv4;
    return out;
  }
  out.storage = {};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  std::string bare = literal;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  if (::inet_pton(AF_INET6, bare.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    out.family = AddressFamily::kIpv6;
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("address: \"", ip, "\" is not an IPv4 or IPv6 literal"));
}

absl::StatusOr<PosixAddress> UnixAddress(const std::string& path) {
  PosixAddress out;
  auto* un = reinterpret_cast<sockaddr_un*>(&out.storage);
  if (path.empty() || path.size() >= sizeof(un->sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unix socket path: \"", path, "\" must have 1 to ", sizeof(un->sun_path) - 1,
        " characters"));
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  if (path[0] == '@') un->sun_path[0] = '\0';  // abstract namespace
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                      (path[0] == '@' ? 0 : 1));
  out.family = AddressFamily::kUnix;
  return out;
}

absl::StatusOr<PosixAddress> AddressOf(const SocketInfo& info) {
  if (info.family == AddressFamily::kUnix) return UnixAddress(info.address);
  return IpAddress(info.address, info.port);
}

SocketInfo InfoFromAddress(const sockaddr* address, socklen_t length) {
  SocketInfo info;
  char text[INET6_ADDRSTRLEN] = {};
  switch (address->sa_family) {
    case AF_INET: {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
      ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
      info.family = AddressFamily::kIpv4;
      info.address = text;
      info.port = ntohs(v4->sin_port);
      break;
    }
    case AF_INET6: {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
      info.family = AddressFamily::kIpv6;
      info.address = text;
      info.port = ntohs(v6->sin6_port);
      break;
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(address);
      info.family = AddressFamily::kUnix;
      const size_t offset = offsetof(sockaddr_un, sun_path);
      if (length > offset) {
        size_t n = length - offset;
        if (un->sun_path[0] == '\0') {
          info.address = "@" + std::string(un->sun_path + 1, n - 1);
        } else {
          info.address = std::string(un->sun_path, strnlen(un->sun_path, n));
        }
      }
      break;
    }
    default:
      break;
  }
  return info;
}

absl::StatusOr<SocketInfo> LocalInfoOfFd(int fd) {
  sockaddr_storage storage = {};
  socklen_t length = sizeof(storage);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return PosixError(errno, "local_info");
  }
  return InfoFromAddress(reinterpret_cast<sockaddr*>(&storage), length);
}

absl::StatusOr<SocketInfo> PeerInfoOfFd(int fd) {
  sockaddr_storage storage = {};
  socklen_t length = sizeof(storage);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return PosixError(errno, "peer_info");
  }
  return InfoFromAddress(reinterpret_cast<sockaddr*>(&storage), length);
}

bool OptionAppliesTo(SocketOptionName name, AddressFamily family) {
  if (family != AddressFamily::kUnix) return true;
  switch (name) {
    case SocketOptionName::kNoDelay:
    case SocketOptionName::kKeepIdle:
    case SocketOptionName::kKeepInterval:
    case SocketOptionName::kKeepCount:
    case SocketOptionName::kTos:
      return false;
    default:
      return true;
  }
}

absl::Status ApplyOptionToFd(int fd, AddressFamily family, const SocketOption& option) {
  const SocketOptionName name = option.name();
  if (!OptionAppliesTo(name, family)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "setopts: ", SocketOptionNameString(name), ": not available on a unix socket"));
  }
  const int64_t value = option.value();
  if (name == SocketOptionName::kBlocking) {
    // Validation admits only `false`; make sure the descriptor agrees.
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) return PosixError(errno, "setopts: blocking");
    if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      return PosixError(errno, "setopts: blocking");
    }
    return absl::OkStatus();
  }
  if (name == SocketOptionName::kLinger) {
    struct linger l = {};
    l.l_onoff = value >= 0 ? 1 : 0;
    l.l_linger = value >= 0 ? static_cast<int>(value) : 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0) {
      return PosixError(errno, "setopts: linger");
    }
    return absl::OkStatus();
  }
  LevelAndName ln;
  if (!IntOption(name, family, &ln)) {
    return absl::InvalidArgumentError(
        absl::StrCat("setopts: ", SocketOptionNameString(name), ": not a socket option"));
  }
  if (name == SocketOptionName::kTos && family == AddressFamily::kIpv4) {
    // Linux derives SO_PRIORITY from IP_TOS as a side effect; an option must change
    // only itself, so the priority is put back.
    absl::StatusOr<int> priority = GetInt(fd, SOL_SOCKET, SO_PRIORITY, SocketOptionName::kPriority);
    if (!priority.ok()) return priority.status();
    absl::Status set = SetInt(fd, ln.level, ln.name, static_cast<int>(value), name);
    if (!set.ok()) return set;
    return SetInt(fd, SOL_SOCKET, SO_PRIORITY, *priority, SocketOptionName::kPriority);
  }
  return SetInt(fd, ln.level, ln.name, static_cast<int>(value), name);
}

absl::StatusOr<SocketOption> ReadOptionFromFd(int fd, AddressFamily family,
                                              SocketOptionName name) {
  if (!OptionAppliesTo(name, family)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "getopts: ", SocketOptionNameString(name), ": not available on a unix socket"));
  }
  if (name == SocketOptionName::kBlocking) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0) return PosixError(errno, "getopts: blocking");
    return SocketOption::Blocking((flags & O_NONBLOCK) == 0);
  }
  if (name == SocketOptionName::kLinger) {
    struct linger l = {};
    socklen_t length = sizeof(l);
    if (::getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &length) != 0) {
      return PosixError(errno, "getopts: linger");
    }
    return SocketOption::Raw(name, l.l_onoff ? l.l_linger : -1);
  }
  LevelAndName ln;
  if (!IntOption(name, family, &ln)) {
    return absl::InvalidArgumentError(
        absl::StrCat("getopts: ", SocketOptionNameString(name), ": not a socket option"));
  }
  absl::StatusOr<int> value = GetInt(fd, ln.level, ln.name, name);
  if (!value.ok()) return value.status();
  // Linux doubles a requested buffer size for its bookkeeping; report what was asked.
  int64_t v = IsBufferOption(name) ? *value / 2 : *value;
  if (name == SocketOptionName::kNoDelay || name == SocketOptionName::kKeepAlive ||
      name == SocketOptionName::kReuseAddress) {
    v = v != 0;
  }
  return SocketOption::Raw(name, v);
}

}  // namespace islet
