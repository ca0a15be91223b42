// Building PROXY protocol headers for tests: what a balancer would send.
//
//   std::string v2 = ProxyV2Builder().Inet("203.0.113.7", 51000, "10.0.0.1", 443)
//                        .Tlv(ProxyTlv::kAlpn, "h2").Crc32c().Build();
#ifndef ISLET_TRANSPORT_PROXY_HEADER_TEST_UTIL_H_
#define ISLET_TRANSPORT_PROXY_HEADER_TEST_UTIL_H_

#include <arpa/inet.h>

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "transport/proxy_header.h"

namespace islet {

class ProxyV2Builder {
 public:
  ProxyV2Builder& VersionCommand(uint8_t byte) { version_command_ = byte; return *this; }
  ProxyV2Builder& Local() { version_command_ = 0x20; return *this; }
  ProxyV2Builder& Family(uint8_t byte) { family_ = byte; return *this; }
  // The address block as is (for lengths the family does not match).
  ProxyV2Builder& Addresses(std::string block) { addresses_ = std::move(block); return *this; }

  ProxyV2Builder& Inet(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
    family_ = 0x11;
    addresses_ = Ip(AF_INET, src) + Ip(AF_INET, dst) + Port(sport) + Port(dport);
    return *this;
  }
  ProxyV2Builder& Inet6(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
    family_ = 0x21;
    addresses_ = Ip(AF_INET6, src) + Ip(AF_INET6, dst) + Port(sport) + Port(dport);
    return *this;
  }
  ProxyV2Builder& Unix(absl::string_view src, absl::string_view dst) {
    family_ = 0x31;
    addresses_ = Path(src) + Path(dst);
    return *this;
  }
  ProxyV2Builder& Tlv(uint8_t type, absl::string_view value) {
    tlvs_ += TlvBytes(type, value);
    return *this;
  }
  // An SSL TLV: client flags, verify result, then sub-TLVs as given (TlvBytes).
  ProxyV2Builder& Ssl(uint8_t client, uint32_t verify, absl::string_view sub_tlvs) {
    std::string value(1, static_cast<char>(client));
    value += Be32(verify);
    value.append(sub_tlvs.data(), sub_tlvs.size());
    return Tlv(0x20, value);
  }
  // A CRC32C TLV last, computed over the finished header (or `wrong` when set).
  ProxyV2Builder& Crc32c(bool wrong = false) {
    crc_ = true;
    crc_wrong_ = wrong;
    return *this;
  }
  // Extra bytes appended to the length field's value (a header that claims more).
  ProxyV2Builder& ExtraLength(int extra) { extra_length_ = extra; return *this; }

  std::string Build() const {
    std::string body = addresses_ + tlvs_;
    size_t crc_at = 0;
    if (crc_) {
      crc_at = kProxyV2FixedLength + body.size() + 3;
      body += TlvBytes(0x03, std::string(4, '\0'));
    }
    std::string out(kProxyV2Signature);
    out.push_back(static_cast<char>(version_command_));
    out.push_back(static_cast<char>(family_));
    out += Port(static_cast<uint16_t>(body.size() + extra_length_));
    out += body;
    if (crc_) {
      uint32_t crc = islet::Crc32c(out);
      if (crc_wrong_) crc ^= 1;
      out.replace(crc_at, 4, Be32(crc));
    }
    return out;
  }

  static std::string TlvBytes(uint8_t type, absl::string_view value) {
    std::string out(1, static_cast<char>(type));
    out += Port(static_cast<uint16_t>(value.size()));
    out.append(value.data(), value.size());
    return out;
  }

 private:
  static std::string Ip(int family, const char* text) {
    char binary[16] = {};
    inet_pton(family, text, binary);
    return std::string(binary, family == AF_INET ? 4 : 16);
  }
  static std::string Port(uint16_t port) {
    return {static_cast<char>(port >> 8), static_cast<char>(port & 0xFF)};
  }
  static std::string Be32(uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
  }
  static std::string Path(absl::string_view path) {
    std::string out(path);
    out.resize(108, '\0');
    return out;
  }

  uint8_t version_command_ = 0x21;
  uint8_t family_ = 0x00;
  std::string addresses_;
  std::string tlvs_;
  bool crc_ = false;
  bool crc_wrong_ = false;
  int extra_length_ = 0;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_PROXY_HEADER_TEST_UTIL_H_
