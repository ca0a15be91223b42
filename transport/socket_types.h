// The value types the Transport interface trades in: Thousand Island's socket_info,
// socket_stats and way, and the PROXY protocol header a connection may begin with.
#ifndef ISLET_TRANSPORT_SOCKET_TYPES_H_
#define ISLET_TRANSPORT_SOCKET_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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

// One TLV (type-length-value) of a PROXY protocol v2 header, its value raw.
struct ProxyTlv {
  // The types HAProxy's proxy-protocol.txt defines (PP2_TYPE_*, PP2_SUBTYPE_SSL_*).
  static constexpr uint8_t kAlpn = 0x01;
  static constexpr uint8_t kAuthority = 0x02;
  static constexpr uint8_t kCrc32c = 0x03;
  static constexpr uint8_t kNoop = 0x04;
  static constexpr uint8_t kUniqueId = 0x05;
  static constexpr uint8_t kSsl = 0x20;
  static constexpr uint8_t kSslVersion = 0x21;
  static constexpr uint8_t kSslCn = 0x22;
  static constexpr uint8_t kSslCipher = 0x23;
  static constexpr uint8_t kSslSigAlg = 0x24;
  static constexpr uint8_t kSslKeyAlg = 0x25;
  static constexpr uint8_t kNetns = 0x30;

  uint8_t type = 0;
  std::string value;

  bool operator==(const ProxyTlv&) const = default;
};

// What a PROXY v2 header's SSL TLV says about the client's connection to the proxy
// (the proxy terminated TLS).
struct ProxySslInfo {
  // The client's flags (PP2_CLIENT_*).
  static constexpr uint8_t kClientSsl = 0x01;       // the client connected over TLS
  static constexpr uint8_t kClientCertConn = 0x02;  // it sent a certificate on this connection
  static constexpr uint8_t kClientCertSess = 0x04;  // ... or on the session it resumed

  uint8_t client = 0;
  // 0 when the client's certificate was presented and verified.
  uint32_t verify = 0;
  // The sub-TLVs that were present ("" when absent): "TLSv1.3", the certificate's
  // Common Name, "ECDHE-RSA-AES128-GCM-SHA256", "SHA256", "RSA2048".
  std::string version;
  std::string cn;
  std::string cipher;
  std::string sig_alg;
  std::string key_alg;
  // Every sub-TLV in order, raw, the ones above and unknown ones alike.
  std::vector<ProxyTlv> tlvs;

  bool operator==(const ProxySslInfo&) const = default;
};

// The PROXY protocol header (HAProxy's proxy-protocol.txt, v1 or v2) a connection
// began with, as ProxyProtocolTransport (transport/proxy_protocol.h) read it.
struct ProxyHeader {
  enum class Command : uint8_t {
    kLocal,  // v2 LOCAL: the proxy's own connection (a health check), nothing relayed
    kProxy,  // relayed for a client (v1 always)
  };

  uint8_t version = 1;  // 1 or 2
  Command command = Command::kProxy;
  // The original client and the address it connected to. Absent for LOCAL, v1
  // UNKNOWN and v2 UNSPEC: the connection's own addresses apply then.
  std::optional<SocketInfo> source;
  std::optional<SocketInfo> destination;
  // The connection's real peer: the proxy (filled in by the transport, not the parser).
  SocketInfo proxy;
  // v2: every TLV in order, raw, known and unknown alike; the known ones also below.
  std::vector<ProxyTlv> tlvs;
  std::optional<std::string> alpn;       // PP2_TYPE_ALPN: the protocol the client chose
  std::optional<std::string> authority;  // PP2_TYPE_AUTHORITY: the host name (SNI)
  std::optional<std::string> unique_id;  // PP2_TYPE_UNIQUE_ID: at most 128 bytes
  std::optional<std::string> netns;      // PP2_TYPE_NETNS: the proxy's network namespace
  std::optional<ProxySslInfo> ssl;       // PP2_TYPE_SSL
  // A CRC32C TLV was present and matched (a mismatch refuses the header).
  bool crc32c_verified = false;
  // Bytes the header took on the wire.
  size_t length = 0;

  bool operator==(const ProxyHeader&) const = default;
};

// The direction to shut down (Thousand Island's way).
enum class ShutdownWay : uint8_t { kRead, kWrite, kReadWrite };

}  // namespace islet

#endif  // ISLET_TRANSPORT_SOCKET_TYPES_H_
