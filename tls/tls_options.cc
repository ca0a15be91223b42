#include "tls/tls_options.h"

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace islet {

absl::Status ValidateTlsOptions(const TlsOptions& options) {
  if (options.min_version != TlsVersion::kTls1_2 && options.min_version != TlsVersion::kTls1_3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_version: 0x", absl::Hex(static_cast<uint16_t>(options.min_version)),
        " is not TLS 1.2 or 1.3 (TLS 1.0 and 1.1 are refused)"));
  }
  if (options.max_version != TlsVersion::kTls1_2 && options.max_version != TlsVersion::kTls1_3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_version: 0x", absl::Hex(static_cast<uint16_t>(options.max_version)),
        " is not TLS 1.2 or 1.3 (TLS 1.0 and 1.1 are refused)"));
  }
  if (static_cast<uint16_t>(options.min_version) > static_cast<uint16_t>(options.max_version)) {
    return absl::InvalidArgumentError("min_version: higher than max_version");
  }
  size_t alpn_wire = 0;
  for (const std::string& protocol : options.alpn_protocols) {
    if (protocol.empty() || protocol.size() > 255) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alpn_protocols: \"", protocol, "\" must be 1 to 255 bytes long"));
    }
    alpn_wire += 1 + protocol.size();
  }
  if (alpn_wire > 65535) {
    return absl::InvalidArgumentError("alpn_protocols: the list is longer than 65535 bytes");
  }
  for (const auto& [name, credentials] : options.sni_credentials) {
    absl::string_view host = name;
    if (absl::StartsWith(host, "*.")) host.remove_prefix(2);
    const bool valid =
        !host.empty() && host.size() <= 253 && host.front() != '.' && host.back() != '.' &&
        std::all_of(host.begin(), host.end(), [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ||
                 c == '_';
        });
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sni_credentials: \"", name,
          "\" is not a host name (\"api.example.com\") or a one-label wildcard "
          "(\"*.example.com\")"));
    }
  }
  const bool has_ca = !options.client_ca_file.empty() || !options.client_ca_pem.empty();
  if (options.client_certificate == ClientCertificateMode::kNone && has_ca) {
    return absl::InvalidArgumentError(
        "client_ca: a CA bundle is set but client_certificate is kNone, so no client "
        "would be asked for a certificate");
  }
  if (options.client_certificate != ClientCertificateMode::kNone && !has_ca) {
    return absl::InvalidArgumentError(
        "client_ca: client certificates are requested but no CA bundle verifies them (set "
        "client_ca_file or client_ca_pem)");
  }
  if (options.session_tickets && options.ticket_key_rotation <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ticket_key_rotation: must be positive");
  }
  if (options.session_lifetime < absl::Seconds(1) ||
      options.session_lifetime > absl::Hours(24 * 7)) {
    return absl::InvalidArgumentError(
        "session_lifetime: must be between 1 second and 7 days (TLS 1.3's limit)");
  }
  if (options.session_cache_size > static_cast<size_t>(LONG_MAX)) {
    return absl::InvalidArgumentError("session_cache_size: too large");
  }
  return absl::OkStatus();
}

}  // namespace islet
