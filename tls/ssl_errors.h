// Internal to tls/: reading BoringSSL's error queue. Every failed BoringSSL call is
// followed by ConsumeSslErrorReason (or ERR_clear_error), so no stale error outlives its
// call: the queue is per thread, shared by every connection of a worker.
#ifndef ISLET_TLS_SSL_ERRORS_H_
#define ISLET_TLS_SSL_ERRORS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace islet {
namespace tls_internal {

// Empties this thread's BoringSSL error queue and returns its first entry's reason
// ("WRONG_VERSION_NUMBER"), or "" when it was empty.
std::string ConsumeSslErrorReason();

// "WRONG_VERSION_NUMBER" -> "wrong version number".
std::string HumanizeReason(absl::string_view reason);

}  // namespace tls_internal
}  // namespace islet

#endif  // ISLET_TLS_SSL_ERRORS_H_
