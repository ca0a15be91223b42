// What the TCP transport tests (tcp_transport_*_test.cc) share: real sockets on
// 127.0.0.1, [::1] and unix sockets in a fresh temporary directory, raw POSIX clients,
// SIGPIPE checks, and ConnectedTest, a fixture holding one accepted connection per
// network. Each test file instantiates the fixtures it uses:
//
//   INSTANTIATE_TEST_SUITE_P(AllNets, ConnectedTest,
//                            testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix), NetName);
//
// Every wait is bounded: blocking calls carry a generous deadline (kGenerous) that only
// a broken transport reaches, and calls that are supposed to time out use small
// timeouts (kShort) whose error code, never their duration, is asserted.
#ifndef ISLET_TRANSPORT_TCP_TRANSPORT_TEST_UTIL_H_
#define ISLET_TRANSPORT_TCP_TRANSPORT_TEST_UTIL_H_

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "transport/socket_types.h"
#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace islet {

// Long enough that only a broken transport ever reaches it.
inline constexpr absl::Duration kGenerous = absl::Seconds(10);
inline constexpr std::chrono::seconds kGenerousChrono(10);
// For calls that are meant to time out.
inline constexpr absl::Duration kShort = absl::Milliseconds(100);

// ---- Temporary directory for unix sockets and files ----

// A fresh directory, removed with everything in it at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string File(absl::string_view name) const;

 private:
  std::string path_;
};

bool IsSocketFile(const std::string& path);
bool Exists(const std::string& path);

// Bytes that differ from position to position, so reordering or loss shows.
std::string Pattern(size_t size, uint32_t seed = 1);

// ---- Networks ----

enum class Net { kIpv4, kIpv6, kUnix };

std::string NetName(const testing::TestParamInfo<Net>& info);

// A listener on `net`'s loopback, on a port the kernel picks (or at dir/s.sock).
absl::StatusOr<std::unique_ptr<Listener>> ListenOn(Net net, const TempDir& dir,
                                                   ListenOptions options = {});
absl::StatusOr<std::unique_ptr<TcpSocket>> ConnectTo(const Listener& listener);

// Accept in a detached thread so that a broken Accept fails the test instead of hanging
// it; the thread shares ownership of the listener.
std::future<absl::StatusOr<std::unique_ptr<Socket>>> AsyncAccept(
    std::shared_ptr<Listener> listener);
// Accept, or DeadlineExceeded after kGenerous (the listener is then closed to end the
// waiting Accept).
absl::StatusOr<std::unique_ptr<Socket>> AcceptWithin(const std::shared_ptr<Listener>& listener);

// ---- Raw POSIX clients ----

// A blocking connect(2): the descriptor, or -errno.
int RawConnect(const SocketInfo& to);
// Closes `fd` with SO_LINGER {1, 0}, so the kernel answers with a reset.
void ResetAndClose(int fd);
bool WaitReadable(int fd, absl::Duration timeout = kGenerous);
// The int value of a socket option, or -12345 when it cannot be read.
int GetIntOption(int fd, int level, int name);

// ---- SIGPIPE ----

// The tests that could raise SIGPIPE run with its default disposition (terminate) in
// effect and unblocked: a transport that lets one through kills the test binary.
void UseDefaultSigpipe();
// After a call that met a broken pipe: nothing is left pending or blocked.
void ExpectSigpipeUntouched();

// ---- A connected pair: client (TcpSocket::Connect) and server (Accept) ----

class ConnectedTest : public testing::TestWithParam<Net> {
 protected:
  void SetUp() override;

  bool IsIp() const { return GetParam() != Net::kUnix; }

  // Makes the peer's (client's) end go away: a reset for TCP; for a unix socket the
  // closest thing is closing with unread data, which the kernel reports as ECONNRESET.
  void ResetClient();

  // Reads exactly n bytes on the client in another thread.
  std::future<absl::StatusOr<std::string>> ClientReadsAsync(size_t n);

  TempDir dir_;
  std::shared_ptr<Listener> listener_;
  std::unique_ptr<TcpSocket> client_;
  std::unique_ptr<Socket> server_;
};

// The same, for tests that apply to IP sockets only, or to unix sockets only.
class IpConnectedTest : public ConnectedTest {};
class UnixConnectedTest : public ConnectedTest {};

}  // namespace islet

#endif  // ISLET_TRANSPORT_TCP_TRANSPORT_TEST_UTIL_H_
