// What the load tools share: the --target flag (an IPv4 literal and a port, as
// "127.0.0.1:4000"), and raising the descriptor limit for many connections.
#ifndef ISLET_TOOLS_BENCH_LOAD_TARGET_H_
#define ISLET_TOOLS_BENCH_LOAD_TARGET_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace islet::bench {

// Fills `addr` from "IPV4:PORT"; false when `target` is not one (port 1..65535).
inline bool ParseLoadTarget(const std::string& target, sockaddr_in* addr) {
  std::vector<std::string> parts = absl::StrSplit(target, ':');
  int port = 0;
  *addr = {};
  addr->sin_family = AF_INET;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port) || port <= 0 || port > 65535 ||
      inet_pton(AF_INET, parts[0].c_str(), &addr->sin_addr) != 1) {
    return false;
  }
  addr->sin_port = htons(static_cast<uint16_t>(port));
  return true;
}

// Creates the (empty) file `path`, which a script waits for; nothing when empty.
inline void TouchReadyFile(const std::string& path) {
  if (path.empty()) return;
  FILE* f = std::fopen(path.c_str(), "w");
  if (f != nullptr) std::fclose(f);
}

// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the limit now in
// force.
inline rlim_t RaiseDescriptorLimit() {
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_LOAD_TARGET_H_
