#include "transport/transport.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "transport/buffer_views.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/regular_file.h"

namespace islet {
namespace {

// Reads bigger than this are split: a Recv(n) for a huge n grows its buffer as bytes
// arrive rather than reserving n up front.
constexpr size_t kReadChunk = 64 * 1024;

absl::Duration DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return absl::InfiniteDuration();
  return MonotonicNow() + std::max(timeout, absl::ZeroDuration());
}

}  // namespace

absl::Status Socket::Handshake(absl::Duration timeout) {
  const absl::Duration deadline = DeadlineAfter(timeout);
  for (;;) {
    absl::StatusOr<IoInterest> step = HandshakeStep();
    if (!step.ok()) return step.status();
    if (*step == IoInterest::kNone) return absl::OkStatus();
    absl::Status ready = WaitReady(*step, deadline, "handshake");
    if (!ready.ok()) return ready;
  }
}

absl::Status Socket::WaitWritable(absl::Duration deadline, absl::string_view op) {
  return WaitForIo(fd(), IoInterest::kWrite, deadline, op);
}

absl::Status Socket::SendPendingOutput(absl::Duration deadline, absl::string_view op) {
  while (HasPendingOutput()) {
    absl::Status sent = WaitWritable(deadline, op);
    if (!sent.ok()) return sent;
  }
  return absl::OkStatus();
}

absl::Status Socket::WaitReady(IoInterest interest, absl::Duration deadline,
                               absl::string_view op) {
  if (interest == IoInterest::kWrite) return WaitWritable(deadline, op);
  // Waiting for the peer: what this side sent must reach it first.
  absl::Status sent = SendPendingOutput(deadline, op);
  if (!sent.ok()) return sent;
  if (HasBufferedInput()) return absl::OkStatus();
  return WaitForIo(fd(), interest, deadline, op);
}

absl::StatusOr<size_t> Socket::ReadSome(absl::Span<char> buf) {
  if (buf.empty()) return 0;
  if (!kept_input_.empty()) {
    const size_t n = std::min(buf.size(), kept_input_.size());
    std::memcpy(buf.data(), kept_input_.data(), n);
    kept_input_.erase(0, n);
    return n;
  }
  return ReadSomeFromTransport(buf);
}

absl::StatusOr<std::string> Socket::Recv(size_t n, absl::Duration timeout) {
  if (IsClosed()) return ClosedError("recv");
  const absl::Duration deadline = DeadlineAfter(timeout);
  if (n == 0 && !kept_input_.empty()) return std::exchange(kept_input_, std::string());
  const size_t wanted = n == 0 ? 1 : n;
  while (kept_input_.size() < wanted) {
    const size_t have = kept_input_.size();
    const size_t ask = n == 0 ? kReadChunk : std::min(wanted - have, kReadChunk);
    kept_input_.resize(have + ask);
    absl::StatusOr<size_t> got =
        ReadSomeFromTransport(absl::MakeSpan(kept_input_.data() + have, ask));
    kept_input_.resize(have + (got.ok() ? *got : 0));
    if (got.ok()) continue;
    if (!IsWouldBlock(got.status())) return got.status();
    if (TransportHasBufferedInput()) continue;
    // What this side sent must reach the peer before waiting for its answer. (Not
    // WaitReady: the bytes kept so far are input it would count.)
    if (HasPendingOutput()) {
      absl::Status sent = SendPendingOutput(deadline, "recv");
      if (!sent.ok()) return sent;
      continue;  // the wait may have received input too (an attached InputChannel)
    }
    absl::Status ready = WaitForIo(fd(), IoInterest::kRead, deadline, "recv");
    if (!ready.ok()) return ready;
  }
  if (n == 0) return std::exchange(kept_input_, std::string());
  std::string out = kept_input_.substr(0, n);
  kept_input_.erase(0, n);
  return out;
}

absl::Status Socket::Send(absl::string_view data) {
  return WriteAll(absl::MakeConstSpan(&data, 1), "send");
}

absl::Status Socket::Send(absl::Span<const absl::string_view> buffers) {
  return WriteAll(buffers, "send");
}

absl::Status Socket::WriteAll(absl::Span<const absl::string_view> buffers,
                              absl::string_view op) {
  if (IsClosed()) return ClosedError(op);
  absl::InlinedVector<absl::string_view, 8> views;
  for (absl::string_view b : buffers) {
    if (!b.empty()) views.push_back(b);
  }
  absl::Span<absl::string_view> rest = absl::MakeSpan(views);
  const absl::Duration deadline = DeadlineAfter(send_timeout_);
  while (!rest.empty()) {
    absl::StatusOr<size_t> wrote = WriteSome(rest);
    if (wrote.ok()) {
      rest = ConsumeBytes(rest, *wrote);
      continue;
    }
    if (!IsWouldBlock(wrote.status())) return wrote.status();
    absl::Status ready = WaitWritable(deadline, op);
    if (!ready.ok()) return ready;
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Socket::Sendfile(const std::string& path, uint64_t offset,
                                          uint64_t length) {
  if (IsClosed()) return ClosedError("sendfile");
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "sendfile: open");
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> length_to_send = SendfileLength(file->size, offset, length, path);
  if (!length_to_send.ok()) return length_to_send.status();
  const uint64_t end = offset + *length_to_send;
  const absl::Duration deadline = DeadlineAfter(send_timeout_);
  uint64_t at = offset;
  while (at < end) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(end - at, 1 << 30));
    absl::StatusOr<size_t> sent = SendfileSome(file->fd.get(), at, chunk);
    if (sent.ok()) {
      at += *sent;
      continue;
    }
    if (!IsWouldBlock(sent.status())) return sent.status();
    absl::Status ready = WaitWritable(deadline, "sendfile");
    if (!ready.ok()) return ready;
  }
  return at - offset;
}

absl::StatusOr<IoInterest> Socket::ShutdownStep(ShutdownWay way) {
  absl::Status s = Shutdown(way);
  if (!s.ok()) return s;
  return IoInterest::kNone;
}

absl::StatusOr<size_t> Socket::SendfileSome(int file_fd, uint64_t offset, size_t length) {
  std::string chunk(std::min(length, kReadChunk), '\0');
  ssize_t got;
  do {
    got = ::pread(file_fd, chunk.data(), chunk.size(), static_cast<off_t>(offset));
  } while (got < 0 && errno == EINTR);
  if (got < 0) return PosixError(errno, "sendfile: pread");
  if (got == 0) return absl::OutOfRangeError("sendfile: the file ended early");
  absl::string_view data(chunk.data(), static_cast<size_t>(got));
  return WriteSome(absl::MakeConstSpan(&data, 1));
}

absl::Status Socket::SetOptions(absl::Span<const SocketOption> options) {
  if (IsClosed()) return ClosedError("setopts");
  for (const SocketOption& option : options) {
    absl::Status valid = ValidateSocketOption(option);
    if (!valid.ok()) return valid;
  }
  // Read every old value before changing anything, so a failure can be undone.
  std::vector<SocketOption> previous;
  previous.reserve(options.size());
  for (const SocketOption& option : options) {
    if (option.name() == SocketOptionName::kSendTimeout) {
      previous.push_back(SocketOption::SendTimeout(send_timeout_));
      continue;
    }
    absl::StatusOr<SocketOption> old = ReadOption(option.name());
    if (!old.ok()) return old.status();
    previous.push_back(*old);
  }
  for (size_t i = 0; i < options.size(); ++i) {
    const SocketOption& option = options[i];
    absl::Status applied = absl::OkStatus();
    if (option.name() == SocketOptionName::kSendTimeout) {
      send_timeout_ = option.value() < 0 ? absl::InfiniteDuration()
                                         : absl::Milliseconds(option.value());
    } else {
      applied = ApplyOption(option);
    }
    if (!applied.ok()) {
      for (size_t j = i; j-- > 0;) {
        if (previous[j].name() == SocketOptionName::kSendTimeout) {
          send_timeout_ = previous[j].value() < 0 ? absl::InfiniteDuration()
                                                  : absl::Milliseconds(previous[j].value());
        } else {
          ApplyOption(previous[j]).IgnoreError();  // best effort: it held a moment ago
        }
      }
      return applied;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SocketOption>> Socket::GetOptions(
    absl::Span<const SocketOptionName> names) {
  if (IsClosed()) return ClosedError("getopts");
  std::vector<SocketOption> values;
  values.reserve(names.size());
  for (SocketOptionName name : names) {
    if (name == SocketOptionName::kSendTimeout) {
      values.push_back(SocketOption::SendTimeout(send_timeout_));
      continue;
    }
    absl::StatusOr<SocketOption> value = ReadOption(name);
    if (!value.ok()) return value.status();
    values.push_back(*value);
  }
  return values;
}

absl::StatusOr<std::string> Socket::NegotiatedProtocol() const {
  return absl::NotFoundError("negotiated_protocol: protocol not negotiated");
}

absl::StatusOr<ConnectionInformation> Socket::GetConnectionInformation() const {
  return absl::NotFoundError("connection_information: not a secure connection");
}

absl::StatusOr<std::unique_ptr<Socket>> Listener::TryAccept() {
  return absl::UnimplementedError("accept: this listener has no non-blocking accept");
}

absl::StatusOr<std::unique_ptr<Socket>> Listener::AdoptAccepted(UniqueFd /*fd*/) {
  return absl::UnimplementedError("accept: this listener cannot adopt accepted descriptors");
}

absl::StatusOr<std::unique_ptr<Listener>> Transport::Adopt(UniqueFd /*fd*/,
                                                          const ListenOptions& /*options*/) {
  return absl::UnimplementedError(
      absl::StrCat("adopt: the ", Name(), " transport cannot take a listening socket"));
}

absl::StatusOr<std::unique_ptr<Socket>> Transport::Upgrade(std::unique_ptr<Socket> socket) {
  return absl::UnimplementedError(
      absl::StrCat("upgrade: the ", Name(), " transport cannot take over a socket"));
}

}  // namespace islet
