// FakeSocket: a Socket whose transport is a script, for the paths a kernel socket
// cannot produce on demand: a read that would block in the middle of a message, a write
// that takes N bytes and then refuses the rest, an error or an EOF at a chosen call, an
// option the kernel refuses half way, a handshake of several steps. It plays the part
// of BoringSSL's ssl/test/async_bio, at the Socket level, so that anything layered on a
// Socket (TlsSocket through TlsTransport::Upgrade, the blocking calls of Socket) can be
// driven through it.
//
//   FakeSocket s;
//   s.reads = {std::string("he"), WouldBlockError("recv"), std::string("llo"),
//              PeerClosedError("recv")};
//   s.write_script = {size_t{1000}, WouldBlockError("send")};  // 1000 bytes, then full
//   ... s.written holds every byte a write took, in order.
//
// The script is public data: a test sets it, runs the code under test, and reads what
// happened. Its fd() is an eventfd that polls readable only after MakeReadable() and
// writable until MakeUnwritable(), for the blocking calls' waits. Single-threaded.
#ifndef ISLET_TESTING_FAKE_SOCKET_H_
#define ISLET_TESTING_FAKE_SOCKET_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

class FakeSocket : public Socket {
 public:
  FakeSocket();

  void MakeReadable();
  // The eventfd counter at its maximum: readable, but never writable.
  void MakeUnwritable();

  // ---- The script ----

  // Each ReadSome (through ReadSomeFromTransport) takes from the front: bytes (what
  // does not fit the caller's buffer stays in front) or an error, such as
  // WouldBlockError or PeerClosedError (EOF). Empty: would block.
  std::deque<absl::StatusOr<std::string>> reads;

  // Each WriteSome takes from the front of write_script while it is not empty: a
  // number, the most bytes this call takes (then would block if that is 0), or an
  // error to return (WouldBlockError: the kernel buffer is full).
  std::deque<absl::StatusOr<size_t>> write_script;
  // With write_script empty: would block for the first `writes_blocked` calls (or
  // always), then take at most `max_write` bytes a call.
  int writes_blocked = 0;
  bool writes_always_blocked = false;
  size_t max_write = SIZE_MAX;
  // What the writes took, in order, and how many WriteSome calls there were.
  std::string written;
  int write_calls = 0;
  bool saw_empty_buffer = false;  // a write was handed an empty buffer

  // Options live in this map; ApplyOption fails for `fail_apply`, ReadOption for
  // `fail_read`. Every ApplyOption call is logged in `applied`, every ReadOption name
  // in `read_names`.
  std::map<SocketOptionName, int64_t> options;
  std::optional<SocketOptionName> fail_apply;
  std::optional<SocketOptionName> fail_read;
  std::vector<SocketOption> applied;
  mutable std::vector<SocketOptionName> read_names;

  // HandshakeStep returns these in turn, then kNone; or kRead forever.
  std::deque<absl::StatusOr<IoInterest>> handshake_steps;
  bool handshake_forever = false;
  int handshake_calls = 0;

  bool closed = false;

  // ---- Socket ----
  absl::Status Shutdown(ShutdownWay way) override { return absl::OkStatus(); }
  void Close() override { closed = true; }
  bool IsClosed() const override { return closed; }
  absl::StatusOr<SocketInfo> LocalInfo() const override { return SocketInfo(); }
  absl::StatusOr<SocketInfo> PeerInfo() const override { return SocketInfo(); }
  absl::StatusOr<SocketStats> GetStat() const override { return SocketStats(); }
  int fd() const override { return event_.get(); }
  absl::StatusOr<IoInterest> HandshakeStep() override;
  absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) override;

 protected:
  absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) override;
  absl::Status ApplyOption(const SocketOption& option) override;
  absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const override;

 private:
  UniqueFd event_;
};

// A transport that can do nothing (Listen is Unimplemented), for the defaults of
// Transport.
class FakeTransport : public Transport {
 public:
  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                   const ListenOptions& options) override {
    return absl::UnimplementedError("fake");
  }
  bool Secure() const override { return false; }
  absl::string_view Name() const override { return "fake"; }
};

}  // namespace islet

#endif  // ISLET_TESTING_FAKE_SOCKET_H_
