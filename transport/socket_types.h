// The value types the Transport interface trades in: Thousand Island's socket_info,
// socket_stats and way.
#ifndef ISLET_TRANSPORT_SOCKET_TYPES_H_
#define ISLET_TRANSPORT_SOCKET_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>

namespace islet {

enum class AddressFamily : uint8_t { kIpv4, kIpv6, kUnix };

// One end of a connection or a listener (Thousand Island's socket_info).
struct SocketInfo {
  AddressFamily family = AddressFamily::kIpv4;
  // "127.0.0.1", "::1", or the unix socket path ("" for an unnamed unix peer).
  std::string address;
  // 0 for unix sockets.
  uint16_t port = 0;
  // The peer's certificate in DER form, when a secure transport verified one
  // (Thousand Island's peercert; socket_info's ssl_cert before 1.0); always empty
  // from LocalInfo and for plain transports.
  std::optional<std::string> peer_certificate;

  // "127.0.0.1:4000", "[::1]:4000" or "unix:/run/app.sock".
  std::string ToString() const;
  bool operator==(const SocketInfo&) const = default;
};

// Counters for one socket (Thousand Island's socket_stats). Bytes are counted where the
// transport meets the wire: a secure transport counts ciphertext.
struct SocketStats {
  uint64_t bytes_received = 0;
  uint64_t receive_calls = 0;    // reads that returned data
  uint64_t largest_receive = 0;  // bytes in the largest single read
  uint64_t bytes_sent = 0;
  uint64_t send_calls = 0;       // writes that moved data
  uint64_t largest_send = 0;
  uint64_t send_pending = 0;     // bytes still in the kernel's send queue (SIOCOUTQ)

  void CountReceive(uint64_t n) {
    bytes_received += n;
    ++receive_calls;
    if (n > largest_receive) largest_receive = n;
  }
  void CountSend(uint64_t n) {
    bytes_sent += n;
    ++send_calls;
    if (n > largest_send) largest_send = n;
  }
};

// What a secure transport agreed in its handshake (Thousand Island's
// connection_information).
struct ConnectionInformation {
  std::string protocol_version;  // "TLSv1.3"
  std::string cipher;            // "TLS_AES_128_GCM_SHA256"
  std::string alpn;              // the negotiated protocol, "" when none
  std::string server_name;       // what the client asked for with SNI, "" when nothing
  bool session_resumed = false;
};

// The direction to shut down (Thousand Island's way).
enum class ShutdownWay : uint8_t { kRead, kWrite, kReadWrite };

}  // namespace islet

#endif  // ISLET_TRANSPORT_SOCKET_TYPES_H_
