#include "transport/proxy_header.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/proxy_header_test_util.h"

namespace islet {
namespace {

using ::testing::ElementsAre;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

ProxyHeader ParseOk(absl::string_view data, ProxyParseOptions options = {}) {
  absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(data, options);
  EXPECT_THAT(parsed, IsOk()) << data;
  if (!parsed.ok() || !parsed->has_value()) {
    ADD_FAILURE() << "no complete header in " << data.size() << " bytes";
    return {};
  }
  return **parsed;
}

bool NeedsMore(absl::string_view data, ProxyParseOptions options = {}) {
  absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(data, options);
  return parsed.ok() && !parsed->has_value();
}

absl::Status ParseError(absl::string_view data, ProxyParseOptions options = {}) {
  return ParseProxyHeader(data, options).status();
}

TEST(Crc32cTest, KnownAnswers) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c("6789", Crc32c("12345")), 0xE3069283u);  // continued
}

TEST(MarkerTest, TellsVersionsApart) {
  EXPECT_EQ(MatchProxyMarker(""), ProxyMarker::kPartial);
  EXPECT_EQ(MatchProxyMarker("PRO"), ProxyMarker::kPartial);
  EXPECT_EQ(MatchProxyMarker("PROXY"), ProxyMarker::kPartial);
  EXPECT_EQ(MatchProxyMarker("PROXY "), ProxyMarker::kV1);
  EXPECT_EQ(MatchProxyMarker("PROXYZ"), ProxyMarker::kNone);
  EXPECT_EQ(MatchProxyMarker("GET / HTTP/1.1"), ProxyMarker::kNone);
  EXPECT_EQ(MatchProxyMarker("\x16\x03\x01"), ProxyMarker::kNone);  // a ClientHello
  EXPECT_EQ(MatchProxyMarker(kProxyV2Signature.substr(0, 11)), ProxyMarker::kPartial);
  EXPECT_EQ(MatchProxyMarker(kProxyV2Signature), ProxyMarker::kV2);
  EXPECT_EQ(MatchProxyMarker("\r\n\r\nX"), ProxyMarker::kNone);
}

// ---- v1 ----

TEST(ProxyV1Test, Tcp4) {
  const std::string line = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n";
  ProxyHeader h = ParseOk(line + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.command, ProxyHeader::Command::kProxy);
  EXPECT_EQ(h.length, line.size());
  ASSERT_TRUE(h.source.has_value());
  EXPECT_EQ(*h.source, (SocketInfo{AddressFamily::kIpv4, "192.0.2.10", 56324}));
  EXPECT_EQ(*h.destination, (SocketInfo{AddressFamily::kIpv4, "198.51.100.1", 443}));
  EXPECT_TRUE(h.tlvs.empty());
}

TEST(ProxyV1Test, Tcp6CanonicalAndPortExtremes) {
  ProxyHeader h = ParseOk("PROXY TCP6 2001:DB8:0:0::1 ::1 0 65535\r\n");
  EXPECT_EQ(*h.source, (SocketInfo{AddressFamily::kIpv6, "2001:db8::1", 0}));
  EXPECT_EQ(*h.destination, (SocketInfo{AddressFamily::kIpv6, "::1", 65535}));
}

TEST(ProxyV1Test, UnknownIgnoresTheRestOfTheLine) {
  ProxyHeader h = ParseOk("PROXY UNKNOWN\r\n");
  EXPECT_FALSE(h.source.has_value());
  EXPECT_FALSE(h.destination.has_value());
  EXPECT_EQ(h.length, 15u);
  h = ParseOk("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nrest");
  EXPECT_FALSE(h.source.has_value());
  EXPECT_EQ(h.length, 35u);
}

TEST(ProxyV1Test, LongestLineIsAccepted) {
  // The specification's worst case.
  const std::string longest =
      "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  ASSERT_EQ(longest.size(), kProxyV1MaxLength);
  EXPECT_EQ(ParseOk(longest).length, 107u);
  EXPECT_EQ(ParseOk("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
                .length,
            104u);
}

TEST(ProxyV1Test, IncompleteNeedsMore) {
  const std::string line = "PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n";
  for (size_t n = 0; n < line.size(); ++n) {
    EXPECT_TRUE(NeedsMore(line.substr(0, n))) << n;
  }
}

TEST(ProxyV1Test, Rejections) {
  struct Case {
    const char* input;
    const char* reason;
  };
  const Case cases[] = {
      {"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\n", "LF without CR"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\rX", "CR not followed by LF"},
      {"PROXY TCP4 192.0.2.10\r 198.51.100.1 56324 443\r\n", "a CR inside the line"},
      {"PROXY TCP4  192.0.2.10 198.51.100.1 56324 443\r\n", "single spaces"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443 \r\n", "single spaces"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n", "expected 5 fields"},
      {"PROXY TCP5 192.0.2.10 198.51.100.1 56324 443\r\n", "unknown protocol \"TCP5\""},
      {"PROXY tcp4 192.0.2.10 198.51.100.1 56324 443\r\n", "unknown protocol"},
      {"PROXY \r\n", "unknown protocol"},
      {"PROXY UNKNOWNX\r\n", "unknown protocol"},
      {"PROXY TCP4 ::1 198.51.100.1 56324 443\r\n", "bad source address \"::1\" for TCP4"},
      {"PROXY TCP6 ::1 198.51.100.1 56324 443\r\n", "bad destination address"},
      {"PROXY TCP4 192.0.2.010 198.51.100.1 56324 443\r\n", "bad source address"},
      {"PROXY TCP4 192.0.2.256 198.51.100.1 56324 443\r\n", "bad source address"},
      {"PROXY TCP4 192.0.2 198.51.100.1 56324 443\r\n", "bad source address"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 056324 443\r\n", "bad source port \"056324\""},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 01 443\r\n", "bad source port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 +1 443\r\n", "bad source port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 -1 443\r\n", "bad source port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 1 65536\r\n", "bad destination port \"65536\""},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 1 99999\r\n", "bad destination port"},
      {"PROXY TCP4 192.0.2.10 198.51.100.1 1 0x1\r\n", "bad destination port"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.input), StatusIs(kInvalid, c.reason)) << c.input;
    EXPECT_THAT(ParseError(c.input), StatusIs(kInvalid, "PROXY v1: ")) << c.input;
  }
  const std::string too_long = "PROXY UNKNOWN " + std::string(93, 'x') + "\r\n";
  ASSERT_EQ(too_long.size(), 109u);
  EXPECT_THAT(ParseError(too_long), StatusIs(kInvalid, "no CRLF within 107 bytes"));
  EXPECT_THAT(ParseError(std::string("PROXY ") + std::string(200, 'x')),
              StatusIs(kInvalid, "no CRLF within 107 bytes"));
}

TEST(ProxyV1Test, NotAcceptedWhenV2Only) {
  EXPECT_THAT(ParseError("PROXY UNKNOWN\r\n", {.accept_v1 = false}),
              StatusIs(kInvalid, "version 1 is not accepted"));
}

TEST(ProxyHeaderTest, NotAHeader) {
  EXPECT_THAT(ParseError("GET / HTTP/1.1\r\n"), StatusIs(kInvalid, "not a PROXY protocol header"));
}

// ---- v2 ----

TEST(ProxyV2Test, Inet) {
  const std::string header = ProxyV2Builder().Inet("203.0.113.7", 51000, "10.0.0.1", 443).Build();
  ASSERT_EQ(header.size(), 28u);
  ProxyHeader h = ParseOk(header + "\x16\x03\x01");
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.command, ProxyHeader::Command::kProxy);
  EXPECT_EQ(h.length, 28u);
  EXPECT_EQ(*h.source, (SocketInfo{AddressFamily::kIpv4, "203.0.113.7", 51000}));
  EXPECT_EQ(*h.destination, (SocketInfo{AddressFamily::kIpv4, "10.0.0.1", 443}));
  EXPECT_FALSE(h.crc32c_verified);
}

TEST(ProxyV2Test, Inet6) {
  ProxyHeader h =
      ParseOk(ProxyV2Builder().Inet6("2001:db8::7", 1, "2001:db8::1", 65535).Build());
  EXPECT_EQ(*h.source, (SocketInfo{AddressFamily::kIpv6, "2001:db8::7", 1}));
  EXPECT_EQ(*h.destination, (SocketInfo{AddressFamily::kIpv6, "2001:db8::1", 65535}));
}

TEST(ProxyV2Test, Unix) {
  ProxyHeader h = ParseOk(ProxyV2Builder().Unix("/run/client.sock", "/run/app.sock").Build());
  EXPECT_EQ(*h.source, (SocketInfo{AddressFamily::kUnix, "/run/client.sock", 0}));
  EXPECT_EQ(*h.destination, (SocketInfo{AddressFamily::kUnix, "/run/app.sock", 0}));
  // A path that fills all 108 bytes has no terminator.
  h = ParseOk(ProxyV2Builder().Unix(std::string(108, 'a'), "").Build());
  EXPECT_EQ(h.source->address, std::string(108, 'a'));
}

TEST(ProxyV2Test, LocalKeepsNoAddresses) {
  ProxyHeader h = ParseOk(ProxyV2Builder().Local().Build());
  EXPECT_EQ(h.command, ProxyHeader::Command::kLocal);
  EXPECT_FALSE(h.source.has_value());
  EXPECT_EQ(h.length, 16u);
  // With addresses (ignored) and a CRC32C (verified).
  h = ParseOk(ProxyV2Builder().Local().Inet("1.2.3.4", 1, "5.6.7.8", 2).Crc32c().Build());
  EXPECT_EQ(h.command, ProxyHeader::Command::kLocal);
  EXPECT_FALSE(h.source.has_value());
  EXPECT_TRUE(h.crc32c_verified);
  // A LOCAL datagram family names nothing relayed: accepted.
  EXPECT_THAT(ParseProxyHeader(ProxyV2Builder().Local().Family(0x12).Addresses(
                                   std::string(12, '\0')).Build(), {}),
              IsOk());
}

TEST(ProxyV2Test, UnspecHasNoAddresses) {
  ProxyHeader h = ParseOk(ProxyV2Builder().Family(0x00).Tlv(ProxyTlv::kNoop, "").Build());
  EXPECT_EQ(h.command, ProxyHeader::Command::kProxy);
  EXPECT_FALSE(h.source.has_value());
  EXPECT_EQ(h.tlvs.size(), 1u);
}

TEST(ProxyV2Test, EveryTlv) {
  const std::string ssl_subs = ProxyV2Builder::TlvBytes(ProxyTlv::kSslVersion, "TLSv1.3") +
                               ProxyV2Builder::TlvBytes(ProxyTlv::kSslCn, "client.example") +
                               ProxyV2Builder::TlvBytes(ProxyTlv::kSslCipher, "TLS_AES_128_GCM_SHA256") +
                               ProxyV2Builder::TlvBytes(ProxyTlv::kSslSigAlg, "SHA256") +
                               ProxyV2Builder::TlvBytes(ProxyTlv::kSslKeyAlg, "RSA2048") +
                               ProxyV2Builder::TlvBytes(0x2F, "future");
  const std::string header = ProxyV2Builder()
                                 .Inet("203.0.113.7", 51000, "10.0.0.1", 443)
                                 .Tlv(ProxyTlv::kAlpn, "h2")
                                 .Tlv(ProxyTlv::kAuthority, "api.example.com")
                                 .Tlv(ProxyTlv::kNoop, std::string(5, '\0'))
                                 .Tlv(ProxyTlv::kNoop, "")
                                 .Tlv(ProxyTlv::kUniqueId, std::string(128, 'u'))
                                 .Ssl(ProxySslInfo::kClientSsl | ProxySslInfo::kClientCertConn,
                                      0, ssl_subs)
                                 .Tlv(ProxyTlv::kNetns, "blue")
                                 .Tlv(0xE0, std::string("\x00\x01", 2))
                                 .Tlv(0xE0, "again")
                                 .Crc32c()
                                 .Build();
  ProxyHeader h = ParseOk(header);
  EXPECT_EQ(h.length, header.size());
  EXPECT_EQ(h.alpn, "h2");
  EXPECT_EQ(h.authority, "api.example.com");
  EXPECT_EQ(h.unique_id, std::string(128, 'u'));
  EXPECT_EQ(h.netns, "blue");
  EXPECT_TRUE(h.crc32c_verified);
  ASSERT_TRUE(h.ssl.has_value());
  EXPECT_EQ(h.ssl->client, 0x03);
  EXPECT_EQ(h.ssl->verify, 0u);
  EXPECT_EQ(h.ssl->version, "TLSv1.3");
  EXPECT_EQ(h.ssl->cn, "client.example");
  EXPECT_EQ(h.ssl->cipher, "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(h.ssl->sig_alg, "SHA256");
  EXPECT_EQ(h.ssl->key_alg, "RSA2048");
  ASSERT_EQ(h.ssl->tlvs.size(), 6u);
  EXPECT_EQ(h.ssl->tlvs[5], (ProxyTlv{0x2F, "future"}));
  std::vector<uint8_t> types;
  for (const ProxyTlv& t : h.tlvs) types.push_back(t.type);
  EXPECT_THAT(types, ElementsAre(0x01, 0x02, 0x04, 0x04, 0x05, 0x20, 0x30, 0xE0, 0xE0, 0x03));
  EXPECT_EQ(h.tlvs[7].value, std::string("\x00\x01", 2));
}

TEST(ProxyV2Test, SslVerifyFailureIsReported) {
  ProxyHeader h = ParseOk(ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2)
                              .Ssl(ProxySslInfo::kClientSsl, 0x12345678, "")
                              .Build());
  EXPECT_EQ(h.ssl->verify, 0x12345678u);
  EXPECT_TRUE(h.ssl->tlvs.empty());
}

TEST(ProxyV2Test, IncompleteNeedsMore) {
  const std::string header =
      ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2).Tlv(ProxyTlv::kAlpn, "h2").Build();
  for (size_t n = 0; n < header.size(); ++n) {
    EXPECT_TRUE(NeedsMore(header.substr(0, n))) << n;
  }
}

TEST(ProxyV2Test, Rejections) {
  const auto inet = [] { return ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2); };
  struct Case {
    std::string input;
    const char* reason;
  };
  const Case cases[] = {
      {inet().VersionCommand(0x11).Build(), "version 1 (only 2 is defined)"},
      {inet().VersionCommand(0x31).Build(), "version 3"},
      {inet().VersionCommand(0x22).Build(), "unknown command 0x2"},
      {inet().VersionCommand(0x2F).Build(), "unknown command 0xf"},
      {inet().Family(0x12).Build(), "DGRAM"},
      {ProxyV2Builder().Family(0x22).Addresses(std::string(36, '\0')).Build(), "DGRAM"},
      {ProxyV2Builder().Family(0x32).Addresses(std::string(216, '\0')).Build(), "DGRAM"},
      {inet().Family(0x41).Build(), "unknown address family and transport 0x41"},
      {inet().Family(0x13).Build(), "unknown address family and transport 0x13"},
      {inet().Family(0x10).Build(), "unknown address family and transport 0x10"},
      {ProxyV2Builder().Family(0x11).Addresses(std::string(11, '\0')).Build(),
       "address block of 11 bytes, family 0x11 needs 12"},
      {ProxyV2Builder().Family(0x21).Addresses(std::string(12, '\0')).Build(),
       "address block of 12 bytes, family 0x21 needs 36"},
      {ProxyV2Builder().Family(0x31).Addresses(std::string(215, '\0')).Build(), "needs 216"},
      {ProxyV2Builder().Local().Family(0x21).Build(), "needs 36"},
      {ProxyV2Builder().Family(0x11).Addresses(std::string(14, '\0')).Build(),
       "2 bytes left at offset 28, too few for a TLV"},
      {ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2).Addresses(
           std::string(12, '\0') + std::string("\x01\x00\x05" "ab", 5)).Build(),
       "TLV 0x01 at offset 28 claims 5 bytes, only 2 remain"},
      {inet().Tlv(ProxyTlv::kUniqueId, std::string(129, 'u')).Build(),
       "UNIQUE_ID of 129 bytes (at most 128)"},
      {inet().Tlv(ProxyTlv::kCrc32c, "abc").Build(), "CRC32C TLV of 3 bytes"},
      {inet().Crc32c(/*wrong=*/true).Build(), "CRC32C mismatch"},
      {inet().Tlv(ProxyTlv::kAlpn, "h2").Tlv(ProxyTlv::kAlpn, "h2").Build(),
       "TLV 0x01 appears twice"},
      {inet().Tlv(ProxyTlv::kAuthority, "a").Tlv(ProxyTlv::kAuthority, "b").Build(),
       "TLV 0x02 appears twice"},
      {inet().Tlv(ProxyTlv::kSsl, "abcd").Build(), "SSL TLV of 4 bytes; it needs at least 5"},
      {inet().Ssl(1, 0, std::string("\x21\x00", 2)).Build(), "SSL sub-TLV header cut short"},
      {inet().Ssl(1, 0, std::string("\x21\x00\x09TLS", 6)).Build(), "SSL sub-TLV 0x21 of 9 bytes overruns"},
      {inet().Ssl(1, 0, ProxyV2Builder::TlvBytes(0x22, "a") + ProxyV2Builder::TlvBytes(0x22, "b"))
           .Build(),
       "SSL sub-TLV 0x22 appears twice"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.input), StatusIs(kInvalid, c.reason)) << c.reason;
    EXPECT_THAT(ParseError(c.input), StatusIs(kInvalid, "PROXY v2: ")) << c.reason;
  }
}

TEST(ProxyV2Test, LengthCap) {
  const std::string big =
      ProxyV2Builder().Inet("1.2.3.4", 1, "5.6.7.8", 2).Tlv(0xE0, std::string(5000, 'x')).Build();
  EXPECT_THAT(ParseError(big), StatusIs(kInvalid, "header of 5031 bytes exceeds the limit of 4096"));
  // Refused from the fixed part alone: no need to wait for the rest.
  EXPECT_THAT(ParseError(big.substr(0, 16)), StatusIs(kInvalid, "exceeds the limit"));
  EXPECT_THAT(ParseProxyHeader(big, {.max_v2_length = 8192}), IsOk());
  EXPECT_THAT(ProxyV2Length(big, kProxyV2MaxLength), IsOkAndHolds(5031u));
}

TEST(ProxyV2Test, NotAcceptedWhenV1Only) {
  EXPECT_THAT(ParseError(ProxyV2Builder().Local().Build(), {.accept_v2 = false}),
              StatusIs(kInvalid, "version 2 is not accepted"));
}

}  // namespace
}  // namespace islet
