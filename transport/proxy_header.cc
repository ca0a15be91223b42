#include "transport/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace islet {
namespace {

constexpr size_t kInetBlock = 12;      // two in_addr, two ports
constexpr size_t kInet6Block = 36;     // two in6_addr, two ports
constexpr size_t kUnixPathLength = 108;
constexpr size_t kUnixBlock = 2 * kUnixPathLength;
constexpr size_t kMaxUniqueId = 128;
constexpr size_t kSslFixed = 5;        // client (1 byte), verify (4 bytes)

absl::Status V1Error(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("PROXY v1: ", why));
}
absl::Status V2Error(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("PROXY v2: ", why));
}

// The printable form of a field, for error messages: a peer's bytes never reach a log
// raw.
std::string Quoted(absl::string_view field) {
  std::string out = "\"";
  for (char c : field.substr(0, 48)) {
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(c));
    }
  }
  if (field.size() > 48) out += "...";
  return out + "\"";
}

uint16_t Be16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}
uint32_t Be32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

// ---- v1 ----

// A port: decimal, 0-65535, no sign, no leading zero.
std::optional<uint16_t> ParseV1Port(absl::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 0xFFFF) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// An address of the family: inet_pton's grammar (dotted quad without leading zeros;
// any IPv6 text form), returned in canonical form.
std::optional<std::string> ParseV1Address(absl::string_view text, int family) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  const std::string copy(text);
  std::array<unsigned char, sizeof(in6_addr)> binary;
  if (inet_pton(family, copy.c_str(), binary.data()) != 1) return std::nullopt;
  char canonical[INET6_ADDRSTRLEN];
  if (inet_ntop(family, binary.data(), canonical, sizeof(canonical)) == nullptr) {
    return std::nullopt;
  }
  return std::string(canonical);
}

absl::StatusOr<std::optional<ProxyHeader>> ParseV1(absl::string_view data) {
  const size_t lf = data.substr(0, kProxyV1MaxLength).find('\n');
  if (lf == absl::string_view::npos) {
    if (data.size() >= kProxyV1MaxLength) {
      return V1Error(absl::StrCat("no CRLF within ", kProxyV1MaxLength, " bytes"));
    }
    // A CR must be the end of the line: one followed by anything else is refused now.
    const size_t cr = data.find('\r');
    if (cr != absl::string_view::npos && cr + 1 < data.size()) {
      return V1Error("a CR not followed by LF");
    }
    return std::nullopt;
  }
  if (lf == 0 || data[lf - 1] != '\r') return V1Error("the line ends in LF without CR");
  const absl::string_view line = data.substr(0, lf - 1);  // without CRLF
  if (line.find('\r') != absl::string_view::npos) return V1Error("a CR inside the line");
  if (!absl::StartsWith(line, kProxyV1Prefix)) {
    return V1Error("the line does not begin with \"PROXY \"");
  }
  ProxyHeader header;
  header.version = 1;
  header.command = ProxyHeader::Command::kProxy;
  header.length = lf + 1;
  const absl::string_view rest = line.substr(kProxyV1Prefix.size());
  // UNKNOWN: the specification has the receiver ignore the rest of the line.
  if (rest == "UNKNOWN" || absl::StartsWith(rest, "UNKNOWN ")) return header;
  const std::vector<absl::string_view> fields = absl::StrSplit(rest, ' ');
  if (fields[0] != "TCP4" && fields[0] != "TCP6") {
    return V1Error(absl::StrCat("unknown protocol ", Quoted(fields[0]),
                                " (TCP4, TCP6 or UNKNOWN)"));
  }
  if (fields.size() != 5) {
    return V1Error(absl::StrCat("expected 5 fields separated by single spaces after \"PROXY\", got ",
                                fields.size(), " in ", Quoted(rest)));
  }
  const bool v4 = fields[0] == "TCP4";
  const int family = v4 ? AF_INET : AF_INET6;
  SocketInfo source, destination;
  source.family = destination.family = v4 ? AddressFamily::kIpv4 : AddressFamily::kIpv6;
  const char* names[] = {"source address", "destination address"};
  SocketInfo* ends[] = {&source, &destination};
  for (int i = 0; i < 2; ++i) {
    std::optional<std::string> address = ParseV1Address(fields[1 + i], family);
    if (!address) {
      return V1Error(absl::StrCat("bad ", names[i], " ", Quoted(fields[1 + i]), " for ",
                                  fields[0]));
    }
    ends[i]->address = *std::move(address);
    std::optional<uint16_t> port = ParseV1Port(fields[3 + i]);
    if (!port) {
      return V1Error(absl::StrCat("bad ", i == 0 ? "source" : "destination", " port ",
                                  Quoted(fields[3 + i]),
                                  " (decimal 0-65535, no sign or leading zero)"));
    }
    ends[i]->port = *port;
  }
  header.source = std::move(source);
  header.destination = std::move(destination);
  return header;
}

// ---- v2 ----

std::string UnixPath(const char* p) {
  absl::string_view path(p, kUnixPathLength);
  return std::string(path.substr(0, path.find('\0')));
}

SocketInfo IpEnd(int family, const char* address, const char* port) {
  SocketInfo info;
  info.family = family == AF_INET ? AddressFamily::kIpv4 : AddressFamily::kIpv6;
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(family, address, text, sizeof(text)) != nullptr) info.address = text;
  info.port = Be16(port);
  return info;
}

// The sub-TLVs of an SSL TLV's value, after its fixed part.
absl::Status ParseSsl(absl::string_view value, ProxySslInfo& ssl) {
  if (value.size() < kSslFixed) {
    return V2Error(absl::StrCat("SSL TLV of ", value.size(), " bytes; it needs at least ",
                                kSslFixed));
  }
  ssl.client = static_cast<uint8_t>(value[0]);
  ssl.verify = Be32(value.data() + 1);
  size_t at = kSslFixed;
  while (at < value.size()) {
    if (value.size() - at < 3) return V2Error("SSL sub-TLV header cut short");
    const uint8_t type = static_cast<uint8_t>(value[at]);
    const size_t length = Be16(value.data() + at + 1);
    if (value.size() - at - 3 < length) {
      return V2Error(absl::StrFormat("SSL sub-TLV 0x%02x of %d bytes overruns the SSL TLV",
                                     type, length));
    }
    const absl::string_view sub = value.substr(at + 3, length);
    std::string* known = nullptr;
    switch (type) {
      case ProxyTlv::kSslVersion: known = &ssl.version; break;
      case ProxyTlv::kSslCn: known = &ssl.cn; break;
      case ProxyTlv::kSslCipher: known = &ssl.cipher; break;
      case ProxyTlv::kSslSigAlg: known = &ssl.sig_alg; break;
      case ProxyTlv::kSslKeyAlg: known = &ssl.key_alg; break;
      default: break;
    }
    if (known != nullptr) {
      for (const ProxyTlv& seen : ssl.tlvs) {
        if (seen.type == type) {
          return V2Error(absl::StrFormat("SSL sub-TLV 0x%02x appears twice", type));
        }
      }
      *known = std::string(sub);
    }
    ssl.tlvs.push_back({type, std::string(sub)});
    at += 3 + length;
  }
  return absl::OkStatus();
}

// The TLVs in header[begin, end): they must tile it exactly.
absl::Status ParseTlvs(absl::string_view header, size_t begin, ProxyHeader& out) {
  size_t at = begin;
  std::optional<size_t> crc_at;  // where the CRC32C value is
  while (at < header.size()) {
    if (header.size() - at < 3) {
      return V2Error(absl::StrCat(header.size() - at, " bytes left at offset ", at,
                                  ", too few for a TLV (TLVs must fill the header exactly)"));
    }
    const uint8_t type = static_cast<uint8_t>(header[at]);
    const size_t length = Be16(header.data() + at + 1);
    if (header.size() - at - 3 < length) {
      return V2Error(absl::StrFormat("TLV 0x%02x at offset %d claims %d bytes, only %d remain",
                                     type, at, length, header.size() - at - 3));
    }
    const absl::string_view value = header.substr(at + 3, length);
    if (type != ProxyTlv::kNoop) {
      for (const ProxyTlv& seen : out.tlvs) {
        if (seen.type == type && (type == ProxyTlv::kAlpn || type == ProxyTlv::kAuthority ||
                                  type == ProxyTlv::kCrc32c || type == ProxyTlv::kUniqueId ||
                                  type == ProxyTlv::kSsl || type == ProxyTlv::kNetns)) {
          return V2Error(absl::StrFormat("TLV 0x%02x appears twice", type));
        }
      }
    }
    switch (type) {
      case ProxyTlv::kAlpn: out.alpn = std::string(value); break;
      case ProxyTlv::kAuthority: out.authority = std::string(value); break;
      case ProxyTlv::kNetns: out.netns = std::string(value); break;
      case ProxyTlv::kUniqueId:
        if (length > kMaxUniqueId) {
          return V2Error(absl::StrCat("UNIQUE_ID of ", length, " bytes (at most ",
                                      kMaxUniqueId, ")"));
        }
        out.unique_id = std::string(value);
        break;
      case ProxyTlv::kCrc32c:
        if (length != 4) {
          return V2Error(absl::StrCat("CRC32C TLV of ", length, " bytes (it has 4)"));
        }
        crc_at = at + 3;
        break;
      case ProxyTlv::kSsl: {
        ProxySslInfo ssl;
        if (absl::Status parsed = ParseSsl(value, ssl); !parsed.ok()) return parsed;
        out.ssl = std::move(ssl);
        break;
      }
      default:
        break;
    }
    out.tlvs.push_back({type, std::string(value)});
    at += 3 + length;
  }
  if (crc_at) {
    // Over the whole header, the checksum's own four bytes taken as zero.
    const uint32_t sent = Be32(header.data() + *crc_at);
    uint32_t crc = Crc32c(header.substr(0, *crc_at));
    crc = Crc32c(absl::string_view("\0\0\0\0", 4), crc);
    crc = Crc32c(header.substr(*crc_at + 4), crc);
    if (crc != sent) {
      return V2Error(absl::StrFormat("CRC32C mismatch: the header says %08x, its bytes give %08x",
                                     sent, crc));
    }
    out.crc32c_verified = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<ProxyHeader> ParseV2(absl::string_view header) {
  ProxyHeader out;
  out.version = 2;
  out.length = header.size();
  const uint8_t version_command = static_cast<uint8_t>(header[12]);
  const uint8_t family = static_cast<uint8_t>(header[13]);
  switch (version_command & 0x0F) {
    case 0x0: out.command = ProxyHeader::Command::kLocal; break;
    case 0x1: out.command = ProxyHeader::Command::kProxy; break;
    default:
      return V2Error(absl::StrFormat("unknown command 0x%x (LOCAL 0, PROXY 1)",
                                     version_command & 0x0F));
  }
  size_t block = 0;
  switch (family) {
    case 0x00: block = 0; break;             // UNSPEC
    case 0x11: block = kInetBlock; break;    // TCP over IPv4
    case 0x21: block = kInet6Block; break;   // TCP over IPv6
    case 0x31: block = kUnixBlock; break;    // UNIX stream
    case 0x12:
    case 0x22:
    case 0x32:
      // A relayed datagram has no stream for the header to precede; a LOCAL one names
      // no relayed connection, so its family does not matter.
      if (out.command == ProxyHeader::Command::kProxy) {
        return V2Error(absl::StrFormat("family 0x%02x is DGRAM; only STREAM is served", family));
      }
      block = family == 0x12 ? kInetBlock : family == 0x22 ? kInet6Block : kUnixBlock;
      break;
    default:
      return V2Error(absl::StrFormat(
          "unknown address family and transport 0x%02x (UNSPEC 0x00, INET 0x11, INET6 0x21, "
          "UNIX 0x31)",
          family));
  }
  const size_t length = header.size() - kProxyV2FixedLength;
  if (length < block) {
    return V2Error(absl::StrFormat("address block of %d bytes, family 0x%02x needs %d",
                                   length, family, block));
  }
  const char* a = header.data() + kProxyV2FixedLength;
  if (out.command == ProxyHeader::Command::kProxy) {
    switch (family) {
      case 0x11:
        out.source = IpEnd(AF_INET, a, a + 8);
        out.destination = IpEnd(AF_INET, a + 4, a + 10);
        break;
      case 0x21:
        out.source = IpEnd(AF_INET6, a, a + 32);
        out.destination = IpEnd(AF_INET6, a + 16, a + 34);
        break;
      case 0x31:
        out.source = SocketInfo{.family = AddressFamily::kUnix, .address = UnixPath(a)};
        out.destination =
            SocketInfo{.family = AddressFamily::kUnix, .address = UnixPath(a + kUnixPathLength)};
        break;
      default:
        break;
    }
  }
  if (absl::Status tlvs = ParseTlvs(header, kProxyV2FixedLength + block, out); !tlvs.ok()) {
    return tlvs;
  }
  return out;
}

}  // namespace

ProxyMarker MatchProxyMarker(absl::string_view prefix) {
  const bool v1 = absl::StartsWith(kProxyV1Prefix, prefix.substr(0, kProxyV1Prefix.size()));
  const bool v2 = absl::StartsWith(kProxyV2Signature, prefix.substr(0, kProxyV2Signature.size()));
  if (v1 && prefix.size() >= kProxyV1Prefix.size()) return ProxyMarker::kV1;
  if (v2 && prefix.size() >= kProxyV2Signature.size()) return ProxyMarker::kV2;
  return v1 || v2 ? ProxyMarker::kPartial : ProxyMarker::kNone;
}

absl::StatusOr<size_t> ProxyV2Length(absl::string_view fixed, size_t max_v2_length) {
  if (fixed.size() < kProxyV2FixedLength || !absl::StartsWith(fixed, kProxyV2Signature)) {
    return V2Error("not a v2 header");
  }
  const uint8_t version = static_cast<uint8_t>(fixed[12]) >> 4;
  if (version != 2) return V2Error(absl::StrCat("version ", version, " (only 2 is defined)"));
  const size_t total = kProxyV2FixedLength + Be16(fixed.data() + 14);
  if (total > max_v2_length) {
    return V2Error(absl::StrCat("header of ", total, " bytes exceeds the limit of ",
                                max_v2_length));
  }
  return total;
}

absl::StatusOr<std::optional<ProxyHeader>> ParseProxyHeader(absl::string_view data,
                                                            const ProxyParseOptions& options) {
  switch (MatchProxyMarker(data)) {
    case ProxyMarker::kNone:
      return absl::InvalidArgumentError("PROXY: not a PROXY protocol header");
    case ProxyMarker::kPartial:
      return std::nullopt;
    case ProxyMarker::kV1:
      if (!options.accept_v1) return V1Error("version 1 is not accepted here");
      return ParseV1(data);
    case ProxyMarker::kV2: {
      if (!options.accept_v2) return V2Error("version 2 is not accepted here");
      if (data.size() < kProxyV2FixedLength) return std::nullopt;
      absl::StatusOr<size_t> length = ProxyV2Length(data, options.max_v2_length);
      if (!length.ok()) return length.status();
      if (data.size() < *length) return std::nullopt;
      absl::StatusOr<ProxyHeader> header = ParseV2(data.substr(0, *length));
      if (!header.ok()) return header.status();
      return std::optional<ProxyHeader>(*std::move(header));
    }
  }
  return absl::InternalError("PROXY: unreachable");
}

namespace {

// The reflected Castagnoli polynomial's table, built at compile time.
constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0u);
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

}  // namespace

uint32_t Crc32c(absl::string_view data, uint32_t crc) {
  crc = ~crc;
  for (char c : data) crc = kCrc32cTable[(crc ^ static_cast<uint8_t>(c)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

}  // namespace islet
