// Fuzzes Socket::SetOptions / GetOptions on real connected sockets (TCP over IPv4, and
// unix). Invariants: a refused list changes nothing; after an accepted list, every
// option reads back as the last value the list gave it, and every other is unchanged.
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

#include "transport/socket_options.h"
#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace islet {
namespace {

struct Pair {
  std::unique_ptr<Socket> socket;
  AddressFamily family;
};

std::unique_ptr<Socket> TcpPair() {
  TcpTransport tcp;
  auto listener = tcp.Listen(0, {.address = "127.0.0.1"});
  if (!listener.ok()) std::abort();
  auto client = TcpSocket::Connect(*(*listener)->LocalInfo(), absl::Seconds(10));
  auto accepted = (*listener)->Accept();
  if (!client.ok() || !accepted.ok()) std::abort();
  static auto* keep = new std::vector<std::unique_ptr<Socket>>();  // the other ends
  keep->push_back(*std::move(client));
  return *std::move(accepted);
}

std::unique_ptr<Socket> UnixPair() {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  static auto* keep = new std::vector<std::unique_ptr<Socket>>();
  keep->push_back(std::make_unique<TcpSocket>(UniqueFd(fds[1]), AddressFamily::kUnix));
  return std::make_unique<TcpSocket>(UniqueFd(fds[0]), AddressFamily::kUnix);
}

Pair& Sockets(bool unix) {
  static Pair* tcp = new Pair{TcpPair(), AddressFamily::kIpv4};
  static Pair* un = new Pair{UnixPair(), AddressFamily::kUnix};
  return unix ? *un : *tcp;
}

// Every option that can be read on this family, with its value.
std::map<SocketOptionName, int64_t> Snapshot(Socket& s) {
  std::map<SocketOptionName, int64_t> out;
  for (int i = 0; i < kSocketOptionNameCount; ++i) {
    const auto name = static_cast<SocketOptionName>(i);
    auto value = s.GetOptions({name});
    if (value.ok()) out[name] = (*value)[0].value();
  }
  return out;
}

// Values skewed toward the interesting ones: the edges of each range.
int64_t DecodeValue(const uint8_t*& p, const uint8_t* end) {
  auto take = [&]() -> uint8_t { return p < end ? *p++ : 0; };
  const uint8_t kind = take();
  const int64_t small = take();
  switch (kind % 8) {
    case 0: return -1;
    case 1: return 0;
    case 2: return 1;
    case 3: return small;
    case 4: return small * 4;
    case 5: return 4096 + small * 512;
    case 6: return static_cast<int64_t>(take()) << 24 | small << 8 | take();
    default: {
      uint64_t raw = 0;
      for (int i = 0; i < 8; ++i) raw = raw << 8 | take();
      return static_cast<int64_t>(raw);
    }
  }
}

}  // namespace
}  // namespace islet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace islet;
  if (size == 0) return 0;
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  Pair& pair = Sockets((*p++ & 1) != 0);
  std::vector<SocketOption> options;
  while (p < end && options.size() < 16) {
    // A few names past the end: unknown options must be refused, not crash.
    const auto name = static_cast<SocketOptionName>(*p++ % (kSocketOptionNameCount + 2));
    options.push_back(SocketOption::Raw(name, DecodeValue(p, end)));
  }
  const auto before = Snapshot(*pair.socket);
  const absl::Status set = pair.socket->SetOptions(options);
  const auto after = Snapshot(*pair.socket);
  if (!set.ok()) {
    if (after != before) std::abort();  // a refused list changed something
    return 0;
  }
  auto expected = before;
  for (const SocketOption& o : options) expected[o.name()] = o.value();
  if (after != expected) std::abort();  // an accepted option did not read back
  // Put the defaults back so every input starts from the same sockets.
  std::vector<SocketOption> restore;
  for (const auto& [name, value] : before) restore.push_back(SocketOption::Raw(name, value));
  if (!pair.socket->SetOptions(restore).ok()) std::abort();
  return 0;
}
