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

#include <sys/socket.h>

#include <array>
#include <cstdint>
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
  // See Transport::Adopt. The listener's LocalInfo answers from the socket (getsockname),
  // a unix socket's path included.
  absl::StatusOr<std::unique_ptr<Listener>> Adopt(UniqueFd fd,
                                                  const ListenOptions& options) override;
  bool Secure() const override { return false; }
  absl::string_view Name() const override { return "tcp"; }
};

// What Adopt checks of a descriptor: a socket (InvalidArgument "descriptor 3 is not a
// socket" otherwise), of type SOCK_STREAM, of family IPv4, IPv6 or unix, listening.
// Returns the address it is bound to (a unix socket's path as getsockname gives it).
absl::StatusOr<SocketInfo> ListeningSocketInfo(int fd);

// A connected stream socket (TCP over IPv4/IPv6, or unix-domain).
class TcpSocket : public Socket {
 public:
  // Takes a connected, non-blocking descriptor.
  TcpSocket(UniqueFd fd, AddressFamily family);
  // The same for a descriptor accept(2) returned, with the peer's address it gave
  // (`peer`, `peer_length`): PeerInfo answers from it, so a peer that has reset the
  // connection since (and left getpeername(2) nothing) is still reported. Kept for IPv4
  // and IPv6 peers; a unix peer is asked of the descriptor as before.
  TcpSocket(UniqueFd fd, AddressFamily family, const sockaddr* peer, socklen_t peer_length);

  // Connects to `endpoint` (an IP literal and port, or a unix path) within `timeout`.
  // For clients: tests, proxies, the benchmarks.
  static absl::StatusOr<std::unique_ptr<TcpSocket>> Connect(const SocketInfo& endpoint,
                                                            absl::Duration timeout);
  // Starts connecting to `endpoint` (an IP literal and port, or a unix path) without
  // waiting, for an event loop: HandshakeStep finishes the connect (kWrite while it is
  // under way; the connect's error, such as a refusal, if it failed). The caller bounds
  // it in time.
  static absl::StatusOr<std::unique_ptr<TcpSocket>> StartConnect(const SocketInfo& endpoint);

  // Finishes a connect begun by StartConnect; kNone at once for any other socket.
  absl::StatusOr<IoInterest> HandshakeStep() override;

  absl::Status Shutdown(ShutdownWay way) override;
  // Unsent bytes of an attached output go to the kernel first (OutputChannel).
  void Close() override;
  bool IsClosed() const override { return !fd_.valid(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override;
  absl::StatusOr<SocketInfo> PeerInfo() const override;
  absl::StatusOr<SocketStats> GetStat() const override;
  int fd() const override { return fd_.get(); }
  absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) override;
  absl::StatusOr<size_t> SendfileSome(int file_fd, uint64_t offset, size_t length) override;
  // Not while a StartConnect is under way.
  bool AttachInput(InputChannel* input) override;
  bool AttachOutput(OutputChannel* output) override;
  bool HasPendingOutput() const override { return output_ != nullptr && output_->unsent() > 0; }
  absl::Status WaitWritable(absl::Duration deadline, absl::string_view op) override;
  // kWrite while an attached output holds unsent bytes (they go before the FIN).
  absl::StatusOr<IoInterest> ShutdownStep(ShutdownWay way) override;

  AddressFamily family() const { return family_; }

 protected:
  absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) override;
  bool TransportHasBufferedInput() const override;
  absl::string_view TakeTransportInput() override;
  absl::Status ApplyOption(const SocketOption& option) override;
  absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const override;

 private:
  // SocketStats less send_pending (read from the kernel when asked), the largest single
  // transfers in 32 bits (Linux moves less than 2 GiB a call): so the peer's address
  // fits in the size the counters alone took (120 bytes with libstdc++, one malloc
  // size class), and an idle connection costs no more for it.
  struct Counters {
    uint64_t bytes_received = 0;
    uint64_t receive_calls = 0;
    uint64_t bytes_sent = 0;
    uint64_t send_calls = 0;
    uint32_t largest_receive = 0;
    uint32_t largest_send = 0;

    void CountReceive(size_t n);
    void CountSend(size_t n);
  };

  UniqueFd fd_;
  InputChannel* input_ = nullptr;  // AttachInput's; read before the descriptor
  OutputChannel* output_ = nullptr;  // AttachOutput's; written instead of it
  AddressFamily family_;
  bool connecting_ = false;  // StartConnect's connect is under way
  uint16_t peer_port_ = 0;  // host order; 0: no address kept (see the constructor)
  std::array<uint8_t, 16> peer_address_{};  // in_addr (first 4 bytes) or in6_addr
  Counters counters_;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_TCP_TRANSPORT_H_
