// Fuzzes the PROXY protocol parser (transport/proxy_header.h) with arbitrary bytes, as
// a peer could send them before anything else on a connection. Each input is parsed
// under four option sets (both versions, v1 only, v2 only, the largest v2 cap).
// Invariants: never a crash or a read out of bounds; a complete header's length is
// within the input and its version's limit; the header alone parses to the same
// result; each shorter prefix of it is incomplete (needs more), never an error or
// another header; an error carries a message saying which version it concerns.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "transport/proxy_header.h"

namespace islet {
namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

void Fuzz(absl::string_view data, const ProxyParseOptions& options) {
  absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(data, options);
  if (!parsed.ok()) {
    Check(absl::StartsWith(parsed.status().message(), "PROXY"));
    return;
  }
  if (!parsed->has_value()) return;
  const ProxyHeader& header = **parsed;
  Check(header.length > 0 && header.length <= data.size());
  Check(header.version == 1 || header.version == 2);
  if (header.version == 1) Check(header.length <= kProxyV1MaxLength);
  if (header.version == 2) Check(header.length <= options.max_v2_length);
  if (header.command == ProxyHeader::Command::kLocal) Check(!header.source.has_value());
  Check(header.source.has_value() == header.destination.has_value());
  if (header.unique_id) Check(header.unique_id->size() <= 128);
  const absl::string_view alone = data.substr(0, header.length);
  absl::StatusOr<std::optional<ProxyHeader>> again = ParseProxyHeader(alone, options);
  Check(again.ok() && again->has_value() && **again == header);
  // Shorter prefixes are incomplete; a few are enough to keep each run linear.
  for (size_t cut : {header.length - 1, header.length / 2, size_t{1}}) {
    if (cut == 0 || cut >= header.length) continue;
    absl::StatusOr<std::optional<ProxyHeader>> part =
        ParseProxyHeader(alone.substr(0, cut), options);
    Check(part.ok() && !part->has_value());
  }
}

}  // namespace
}  // namespace islet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  islet::Fuzz(input, {});
  islet::Fuzz(input, {.accept_v1 = true, .accept_v2 = false});
  islet::Fuzz(input, {.accept_v1 = false, .accept_v2 = true});
  islet::Fuzz(input, {.max_v2_length = islet::kProxyV2MaxLength});
  // CRC32C over the input in two pieces equals the whole.
  const size_t half = size / 2;
  islet::Check(islet::Crc32c(input) ==
               islet::Crc32c(input.substr(half), islet::Crc32c(input.substr(0, half))));
  return 0;
}
