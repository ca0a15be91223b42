// UniqueFd: sole ownership of a file descriptor, closed when the owner goes away.
#ifndef ISLET_TRANSPORT_UNIQUE_FD_H_
#define ISLET_TRANSPORT_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace islet {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }

  // Closes the current descriptor (if any) and takes `fd`.
  void reset(int fd = -1) {
    int old = std::exchange(fd_, fd);
    // close(2) is never retried on EINTR on Linux: the descriptor is gone either way.
    if (old >= 0) ::close(old);
  }

 private:
  int fd_ = -1;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_UNIQUE_FD_H_
