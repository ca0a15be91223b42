#include "transport/errors.h"

#include <errno.h>
#include <string.h>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace islet {
namespace {

// The payload that marks an error as the peer's doing (see MarkPeerCaused).
constexpr absl::string_view kPeerCausedPayload = "islet/peer-caused";

}  // namespace

absl::Status PosixError(int err, absl::string_view operation) {
  const char* name = strerrorname_np(err);
  const char* description = strerrordesc_np(err);
  std::string message =
      absl::StrCat(operation, ": ", description ? description : "unknown error", " (",
                   name ? name : absl::StrCat("errno ", err), ")");
  switch (err) {
    case EAGAIN:
      return absl::UnavailableError(message);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(message);
    case ECONNRESET:
    case ECONNABORTED:
    case ECONNREFUSED:
    case EPIPE:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
    case ENETRESET:
      return absl::AbortedError(message);
    case EBADF:
    case ENOTCONN:
    case ESHUTDOWN:
      return absl::FailedPreconditionError(message);
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
    case ENOPROTOOPT:
    case EOPNOTSUPP:
    case EAFNOSUPPORT:
    case ENAMETOOLONG:
    case ENOTSOCK:
      return absl::InvalidArgumentError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    case EADDRINUSE:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EADDRNOTAVAIL:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnknownError(message);
  }
}

absl::Status WouldBlockError(absl::string_view operation) {
  return absl::UnavailableError(absl::StrCat(operation, ": would block"));
}

absl::Status TimeoutError(absl::string_view operation) {
  return absl::DeadlineExceededError(absl::StrCat(operation, ": timed out"));
}

absl::Status PeerClosedError(absl::string_view operation) {
  return absl::OutOfRangeError(absl::StrCat(operation, ": peer closed the connection"));
}

absl::Status ClosedError(absl::string_view operation) {
  return absl::FailedPreconditionError(absl::StrCat(operation, ": socket is closed"));
}

absl::Status MarkPeerCaused(absl::Status error) {
  if (!error.ok()) error.SetPayload(kPeerCausedPayload, absl::Cord("1"));
  return error;
}

bool IsMarkedPeerCaused(const absl::Status& error) {
  return error.GetPayload(kPeerCausedPayload).has_value();
}

}  // namespace islet
