// Opening a regular file to read, for the calls that take a path: sendfile, and the TLS
// transport's certificate and key files. Internal to Islet's transport, tls and server
// packages. Every message names the operation and the path, so one error tells the
// whole story ("sendfile: open /srv/a.bin: No such file or directory (ENOENT)").
#ifndef ISLET_TRANSPORT_REGULAR_FILE_H_
#define ISLET_TRANSPORT_REGULAR_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "transport/unique_fd.h"

namespace islet {

struct RegularFile {
  UniqueFd fd;
  uint64_t size = 0;  // bytes, when it was opened
};

// Opens `path` read-only (O_CLOEXEC) and checks that it is a regular file. `operation`
// starts every message and the path follows it ("sendfile: open",
// "credentials.private_key_file"):
//   "<operation> <path>: <errno text> (<errno name>)"  open failed: PosixError's code
//                                  (NotFound, PermissionDenied, ResourceExhausted, ...)
//   "<operation> <path>: fstat: <errno text> (...)"     fstat failed: PosixError's code
//   "<operation> <path>: not a regular file"           InvalidArgument (a directory, a
//                                  FIFO or a device: reading one could block or never end)
absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path,
                                            absl::string_view operation);

// How many bytes sendfile(path, offset, length) sends from a file of `size` bytes:
// `length` bytes from `offset`, or up to the end when `length` is 0, and never past
// the end. InvalidArgument when `offset` is past the end:
//   "sendfile: offset <offset> is past the end of <path> (<size> bytes)"
absl::StatusOr<uint64_t> SendfileLength(uint64_t size, uint64_t offset, uint64_t length,
                                        absl::string_view path);

}  // namespace islet

#endif  // ISLET_TRANSPORT_REGULAR_FILE_H_
