// The plain TCP transport (and unix-domain stream sockets): non-blocking sockets driven
// through epoll by the server, with the blocking calls of Thousand Island's Transport
// behaviour built on poll(2).
//
//   TcpTransport tcp;
//   auto listener = tcp.Listen(0, {.address = "127.0.0.1"});
//   auto socket = (*listener)->Accept();
//   (*socket)->Send("hello\n");
//
// Every descriptor is non-blocking and close-on-exec. Secure() is false, the handshake
// completes at once and NegotiatedProtocol is always NotFound.
#ifndef ISLET_TRANSPORT_TCP_TRANSPORT_H_
#define ISLET_TRANSPORT_TCP_TRANSPORT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

class TcpTransport : public Transport {
 public:
  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                   const ListenOptions& options) override;
  bool Secure() const override { return false; }
  absl::string_view Name() const override { return "tcp"; }
};

// A connected stream socket (TCP over IPv4/IPv6, or unix-domain).
class TcpSocket : public Socket {
 public:
  // Takes a connected, non-blocking descriptor.
  TcpSocket(UniqueFd fd, AddressFamily family);

  // Connects to `endpoint` (an IP literal and port, or a unix path) within `timeout`.
  // For clients: tests, proxies, the benchmarks.
  static absl::StatusOr<std::unique_ptr<TcpSocket>> Connect(const SocketInfo& endpoint,
                                                            absl::Duration timeout);

  absl::Status Shutdown(ShutdownWay way) override;
  void Close() override { fd_.reset(); }
  bool IsClosed() const override { return !fd_.valid(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override;
  absl::StatusOr<SocketInfo> PeerInfo() const override;
  absl::StatusOr<SocketStats> GetStat() const override;
  int fd() const override { return fd_.get(); }
  absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) override;
  absl::StatusOr<size_t> SendfileSome(int file_fd, uint64_t offset, size_t length) override;

  AddressFamily family() const { return family_; }

 protected:
  absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) override;
  absl::Status ApplyOption(const SocketOption& option) override;
  absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const override;

 private:
  UniqueFd fd_;
  AddressFamily family_;
  SocketStats stats_;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_TCP_TRANSPORT_H_
