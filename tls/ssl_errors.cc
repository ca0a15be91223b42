#include "tls/ssl_errors.h"

#include <openssl/err.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace islet {
namespace tls_internal {

std::string ConsumeSslErrorReason() {
  const uint32_t first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "";
  const char* reason = ERR_reason_error_string(first);
  if (reason != nullptr) return reason;
  return absl::StrCat("error ", ERR_GET_LIB(first), ":", ERR_GET_REASON(first));
}

std::string HumanizeReason(absl::string_view reason) {
  return absl::AsciiStrToLower(absl::StrReplaceAll(reason, {{"_", " "}}));
}

}  // namespace tls_internal
}  // namespace islet
