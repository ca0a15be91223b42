// The PROXY protocol's wire format (HAProxy's proxy-protocol.txt, versions 1 and 2):
// a pure parser with no I/O, so that the transport (transport/proxy_protocol.h) and
// the fuzz target (fuzz/proxy_header_fuzz.cc) share it.
//
//   absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(bytes, {});
//   if (!parsed.ok())  -> not a valid header; the message says what is wrong
//   if (!*parsed)      -> a valid beginning: more bytes are needed
//   else               -> (*parsed)->length bytes were the header
//
// Parsing is strict: what the specification does not allow is refused, never guessed
// at. v1: "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with single spaces,
// addresses valid for their family, ports 0-65535 in decimal without leading zeros or
// signs, at most 107 bytes; or "PROXY UNKNOWN ...\r\n" (the rest of the line ignored,
// as the specification says). v2: the 12-byte signature, version 2, command LOCAL or
// PROXY, family UNSPEC, INET, INET6 or UNIX over STREAM (DGRAM is refused), an
// address block at least as long as its family needs, TLVs that exactly tile the rest,
// a CRC32C TLV (when present) that matches, a UNIQUE_ID of at most 128 bytes, an SSL
// TLV whose sub-TLVs tile it, no known TLV twice (NOOP and unknown types may repeat),
// and a total size under a cap. For LOCAL the addresses are ignored (the family and the
// TLVs are still checked); for UNSPEC there are none.
#ifndef ISLET_TRANSPORT_PROXY_HEADER_H_
#define ISLET_TRANSPORT_PROXY_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/socket_types.h"

namespace islet {

// The longest v1 header, CRLF included.
inline constexpr size_t kProxyV1MaxLength = 107;
// A v2 header's fixed part: signature, version and command, family, length.
inline constexpr size_t kProxyV2FixedLength = 16;
// The largest v2 header the format can express.
inline constexpr size_t kProxyV2MaxLength = kProxyV2FixedLength + 0xFFFF;
// How each version begins.
inline constexpr absl::string_view kProxyV1Prefix = "PROXY ";
inline constexpr absl::string_view kProxyV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

struct ProxyParseOptions {
  bool accept_v1 = true;
  bool accept_v2 = true;
  // A v2 header longer than this (fixed part included) is refused. The format allows
  // 64 KiB; real ones are a few hundred bytes.
  size_t max_v2_length = 4096;
};

// What the first bytes of a connection are.
enum class ProxyMarker : uint8_t {
  kNone,     // not a PROXY header (of any version)
  kPartial,  // every byte so far begins one of the markers: more are needed to tell
  kV1,       // begins with "PROXY "
  kV2,       // begins with the v2 signature
};
ProxyMarker MatchProxyMarker(absl::string_view prefix);

// Parses the header at the start of `data`, which may hold more (what follows the
// header). nullopt: `data` is a valid beginning and more bytes are needed. An error
// (InvalidArgument, "PROXY v2: ...") names what is wrong; a version the options do not
// accept is an error too. The result's `proxy` field is left empty.
absl::StatusOr<std::optional<ProxyHeader>> ParseProxyHeader(absl::string_view data,
                                                            const ProxyParseOptions& options);

// How long the v2 header is, from its first kProxyV2FixedLength bytes; an error when
// over `max_v2_length`, or when they are not a v2 fixed part.
absl::StatusOr<size_t> ProxyV2Length(absl::string_view fixed, size_t max_v2_length);

// CRC32C (Castagnoli), as PP2_TYPE_CRC32C uses it: Crc32c("123456789") == 0xE3069283.
// `crc` continues an earlier result over more data.
uint32_t Crc32c(absl::string_view data, uint32_t crc = 0);

}  // namespace islet

#endif  // ISLET_TRANSPORT_PROXY_HEADER_H_
