// The POSIX plumbing shared by socket-based transports: addresses and options on a
// raw descriptor. Internal to transports; handlers never see it.
#ifndef ISLET_TRANSPORT_POSIX_SOCKET_H_
#define ISLET_TRANSPORT_POSIX_SOCKET_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"

namespace islet {

struct PosixAddress {
  sockaddr_storage storage = {};
  socklen_t length = 0;
  AddressFamily family = AddressFamily::kIpv4;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int domain() const;
};

// An IP literal ("" means 0.0.0.0) and port. InvalidArgument for anything else:
// names are not resolved here.
absl::StatusOr<PosixAddress> IpAddress(const std::string& ip, uint16_t port);
// A unix-domain path; a leading '@' names an abstract socket.
absl::StatusOr<PosixAddress> UnixAddress(const std::string& path);
// The address of `info` (an IP endpoint or a unix path).
absl::StatusOr<PosixAddress> AddressOf(const SocketInfo& info);

SocketInfo InfoFromAddress(const sockaddr* address, socklen_t length);
absl::StatusOr<SocketInfo> LocalInfoOfFd(int fd);
absl::StatusOr<SocketInfo> PeerInfoOfFd(int fd);

// Whether `name` means anything for a socket of `family` (nodelay does not on unix).
bool OptionAppliesTo(SocketOptionName name, AddressFamily family);
// Sets or reads one validated option on a descriptor (send_timeout excluded: it is
// not a kernel option).
absl::Status ApplyOptionToFd(int fd, AddressFamily family, const SocketOption& option);
absl::StatusOr<SocketOption> ReadOptionFromFd(int fd, AddressFamily family,
                                              SocketOptionName name);

}  // namespace islet

#endif  // ISLET_TRANSPORT_POSIX_SOCKET_H_
