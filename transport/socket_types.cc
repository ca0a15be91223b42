#include "transport/socket_types.h"

#include "absl/strings/str_cat.h"

namespace islet {

std::string SocketInfo::ToString() const {
  switch (family) {
    case AddressFamily::kIpv4:
      return absl::StrCat(address, ":", port);
    case AddressFamily::kIpv6:
      return absl::StrCat("[", address, "]:", port);
    case AddressFamily::kUnix:
      return absl::StrCat("unix:", address);
  }
  return address;
}

}  // namespace islet
