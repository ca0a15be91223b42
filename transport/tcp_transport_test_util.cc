#include "transport/tcp_transport_test_util.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "testing/status_matchers.h"
#include "transport/posix_socket.h"
#include "transport/socket_options.h"

namespace islet {

// ---- Temporary directory for unix sockets and files ----

TempDir::TempDir() {
  // sun_path holds 107 characters; bazel's TEST_TMPDIR can be long, so fall back to
  // /tmp when it leaves too little room for "/isl.XXXXXX/name.sock".
  std::string base = "/tmp";
  const char* env = std::getenv("TEST_TMPDIR");
  if (env != nullptr && *env != '\0' && std::strlen(env) < 70) base = env;
  std::string pattern = base + "/isl.XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

bool IsSocketFile(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

// ---- Networks ----

std::string NetName(const testing::TestParamInfo<Net>& info) {
  switch (info.param) {
    case Net::kIpv4:
      return "Ipv4";
    case Net::kIpv6:
      return "Ipv6";
    case Net::kUnix:
      return "Unix";
  }
  return "Unknown";
}

absl::StatusOr<std::unique_ptr<Listener>> ListenOn(Net net, const TempDir& dir,
                                                   ListenOptions options) {
  switch (net) {
    case Net::kIpv4:
      options.address = "127.0.0.1";
      break;
    case Net::kIpv6:
      options.address = "::1";
      break;
    case Net::kUnix:
      options.unix_path = dir.File("s.sock");
      break;
  }
  TcpTransport tcp;
  return tcp.Listen(0, options);
}

absl::StatusOr<std::unique_ptr<TcpSocket>> ConnectTo(const Listener& listener) {
  absl::StatusOr<SocketInfo> info = listener.LocalInfo();
  if (!info.ok()) return info.status();
  return TcpSocket::Connect(*info, kGenerous);
}

std::future<absl::StatusOr<std::unique_ptr<Socket>>> AsyncAccept(
    std::shared_ptr<Listener> listener) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::unique_ptr<Socket>>>>();
  auto future = promise->get_future();
  std::thread([listener = std::move(listener), promise] {
    promise->set_value(listener->Accept());
  }).detach();
  return future;
}

absl::StatusOr<std::unique_ptr<Socket>> AcceptWithin(const std::shared_ptr<Listener>& listener) {
  auto future = AsyncAccept(listener);
  if (future.wait_for(kGenerousChrono) != std::future_status::ready) {
    listener->Close();
    return absl::DeadlineExceededError("test: no connection was accepted in time");
  }
  return future.get();
}

// ---- Raw POSIX clients ----

int RawConnect(const SocketInfo& to) {
  absl::StatusOr<PosixAddress> address = AddressOf(to);
  if (!address.ok()) return -EINVAL;
  const int fd = ::socket(address->domain(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, address->get(), address->length) != 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

void ResetAndClose(int fd) {
  struct linger l = {1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

bool WaitReadable(int fd, absl::Duration timeout) {
  struct pollfd p = {};
  p.fd = fd;
  p.events = POLLIN;
  return ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1;
}

int GetIntOption(int fd, int level, int name) {
  int value = -12345;
  socklen_t length = sizeof(value);
  if (::getsockopt(fd, level, name, &value, &length) != 0) return -12345;
  return value;
}

// ---- SIGPIPE ----

void UseDefaultSigpipe() {
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &action, nullptr), 0);
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ASSERT_EQ(::pthread_sigmask(SIG_UNBLOCK, &pipe, nullptr), 0);
}

void ExpectSigpipeUntouched() {
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE was left pending";
  sigset_t mask;
  sigemptyset(&mask);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, nullptr, &mask), 0);
  EXPECT_EQ(sigismember(&mask, SIGPIPE), 0) << "SIGPIPE was left blocked";
  struct sigaction action = {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_DFL);
}

// ---- A connected pair ----

void ConnectedTest::SetUp() {
  ASSERT_TRUE(dir_.ok());
  ASSERT_OK_AND_ASSIGN(listener_, ListenOn(GetParam(), dir_));
  ASSERT_OK_AND_ASSIGN(client_, ConnectTo(*listener_));
  ASSERT_OK_AND_ASSIGN(server_, AcceptWithin(listener_));
}

void ConnectedTest::ResetClient() {
  if (IsIp()) {
    ASSERT_THAT(client_->SetOptions({SocketOption::Linger(absl::ZeroDuration())}), IsOk());
  } else {
    ASSERT_THAT(server_->Send("unread"), IsOk());
    ASSERT_TRUE(WaitReadable(client_->fd()));
  }
  client_->Close();
}

std::future<absl::StatusOr<std::string>> ConnectedTest::ClientReadsAsync(size_t n) {
  return std::async(std::launch::async, [this, n] { return client_->Recv(n, absl::Seconds(60)); });
}

}  // namespace islet
