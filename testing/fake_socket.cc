#include "testing/fake_socket.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "transport/errors.h"

namespace islet {

FakeSocket::FakeSocket() : event_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

void FakeSocket::MakeReadable() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(event_.get(), &one, sizeof(one));
}

void FakeSocket::MakeUnwritable() {
  const uint64_t most = 0xfffffffffffffffe;
  [[maybe_unused]] ssize_t n = ::write(event_.get(), &most, sizeof(most));
}

absl::StatusOr<IoInterest> FakeSocket::HandshakeStep() {
  ++handshake_calls;
  if (handshake_forever) return IoInterest::kRead;
  if (handshake_steps.empty()) return IoInterest::kNone;
  // Taken apart rather than copied: gcc -O1 warns (wrongly) about a copied StatusOr.
  if (!handshake_steps.front().ok()) {
    absl::Status error = handshake_steps.front().status();
    handshake_steps.pop_front();
    return error;
  }
  const IoInterest interest = *handshake_steps.front();
  handshake_steps.pop_front();
  return interest;
}

absl::StatusOr<size_t> FakeSocket::WriteSome(absl::Span<const absl::string_view> buffers) {
  ++write_calls;
  if (closed) return ClosedError("send");
  size_t limit = max_write;
  if (!write_script.empty()) {
    if (!write_script.front().ok()) {
      absl::Status error = write_script.front().status();
      write_script.pop_front();
      return error;
    }
    limit = *write_script.front();
    write_script.pop_front();
  } else if (writes_always_blocked || writes_blocked > 0) {
    --writes_blocked;
    return WouldBlockError("send");
  }
  size_t n = 0;
  for (absl::string_view b : buffers) {
    if (n == limit) break;
    if (b.empty()) saw_empty_buffer = true;
    const size_t take = std::min(b.size(), limit - n);
    written.append(b.data(), take);
    n += take;
  }
  if (n == 0) return WouldBlockError("send");
  return n;
}

absl::StatusOr<size_t> FakeSocket::ReadSomeFromTransport(absl::Span<char> buf) {
  if (closed) return ClosedError("recv");
  if (reads.empty()) return WouldBlockError("recv");
  if (!reads.front().ok()) {
    absl::Status error = reads.front().status();
    reads.pop_front();
    return error;
  }
  std::string& front = *reads.front();
  const size_t n = std::min(buf.size(), front.size());
  std::copy(front.begin(), front.begin() + n, buf.begin());
  front.erase(0, n);
  if (front.empty()) reads.pop_front();
  return n;
}

absl::Status FakeSocket::ApplyOption(const SocketOption& option) {
  applied.push_back(option);
  if (fail_apply == option.name()) return absl::PermissionDeniedError("fake: refused");
  options[option.name()] = option.value();
  return absl::OkStatus();
}

absl::StatusOr<SocketOption> FakeSocket::ReadOption(SocketOptionName name) const {
  read_names.push_back(name);
  if (fail_read == name) return absl::PermissionDeniedError("fake: unreadable");
  auto it = options.find(name);
  return SocketOption::Raw(name, it == options.end() ? 0 : it->second);
}

}  // namespace islet
