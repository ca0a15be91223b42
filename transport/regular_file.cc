#include "transport/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "transport/errors.h"

namespace islet {

absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path,
                                            absl::string_view operation) {
  const std::string what = absl::StrCat(operation, " ", path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return PosixError(errno, what);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return PosixError(errno, absl::StrCat(what, ": fstat"));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a regular file"));
  }
  return RegularFile{std::move(fd), static_cast<uint64_t>(st.st_size)};
}

absl::StatusOr<uint64_t> SendfileLength(uint64_t size, uint64_t offset, uint64_t length,
                                        absl::string_view path) {
  if (offset > size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sendfile: offset ", offset, " is past the end of ", path, " (", size, " bytes)"));
  }
  // size - offset cannot wrap, where offset + length could.
  return length == 0 ? size - offset : std::min(length, size - offset);
}

}  // namespace islet
