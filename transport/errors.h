// How transports report failure: canonical absl::Status codes with a message that
// names the call and the cause ("recv: Connection reset by peer (ECONNRESET)").
//
//   code                 meaning                                   predicate
//   Unavailable          would block (non-blocking calls only)     IsWouldBlock
//   DeadlineExceeded     a timeout passed                          IsTimeout
//   OutOfRange           the peer closed its side in order (EOF)   IsPeerClosed
//   Aborted              reset, broken pipe, aborted connection    IsConnectionLost
//   FailedPrecondition   this socket or listener is closed         IsClosed
//   ResourceExhausted    out of descriptors (EMFILE/ENFILE), memory
//   InvalidArgument      a bad option or argument; nothing changed
//   NotFound             a file (sendfile, unix socket) is missing
//   AlreadyExists        the address is in use (EADDRINUSE)
//   PermissionDenied     EACCES / EPERM
#ifndef ISLET_TRANSPORT_ERRORS_H_
#define ISLET_TRANSPORT_ERRORS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace islet {

// Maps errno `err` from `operation` ("recv", "accept", ...) to a Status as above.
absl::Status PosixError(int err, absl::string_view operation);

inline bool IsWouldBlock(const absl::Status& s) { return absl::IsUnavailable(s); }
inline bool IsTimeout(const absl::Status& s) { return absl::IsDeadlineExceeded(s); }
inline bool IsPeerClosed(const absl::Status& s) { return absl::IsOutOfRange(s); }
inline bool IsConnectionLost(const absl::Status& s) { return absl::IsAborted(s); }
inline bool IsClosed(const absl::Status& s) { return absl::IsFailedPrecondition(s); }

// The errors every transport shares, worded once.
absl::Status WouldBlockError(absl::string_view operation);
absl::Status TimeoutError(absl::string_view operation);
absl::Status PeerClosedError(absl::string_view operation);
absl::Status ClosedError(absl::string_view operation);

// A failure the peer caused although its code alone does not say so. The server's
// ResourceExhausted for a peer that reads nothing (its send queue over
// send_queue_limit, or more than its share of the server's output budget) is one:
// the same code also means the machine is out of memory or descriptors, the server's
// own fault. The code stays as documented; a status payload marks the error, so that
// whoever judges whose fault it is (TelemetryLogger) can tell. A copy of the status
// keeps the mark; a new status made from its message does not.
absl::Status MarkPeerCaused(absl::Status error);
bool IsMarkedPeerCaused(const absl::Status& error);

}  // namespace islet

#endif  // ISLET_TRANSPORT_ERRORS_H_
