// Helpers shared by the server tests: a loopback server on an ephemeral port, clients,
// polling waits, and thread-safe recorders for handler callbacks and telemetry.
//
//   std::unique_ptr<Server> server = testutil::MustStart(
//       testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>()));
//   ASSERT_NE(server, nullptr);
//   std::unique_ptr<TcpSocket> client = testutil::ConnectAndEcho(*server, "ping");
//   ASSERT_NE(client, nullptr);
//   ASSERT_TRUE(testutil::WaitFor([&] { return server->active_connections() == 1; }));
//
// Also: a fixture owning one server and its telemetry (ServerFixture); and, from
// //testing, the status matchers (IsOkAndHolds, StatusIs) and a forked child process
// joined to the test by pipes (ChildProcess, WriteAll, ReadAll). Everything here is
// header-only and testonly.
#ifndef ISLET_SERVER_TEST_UTIL_H_
#define ISLET_SERVER_TEST_UTIL_H_

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace testutil {

// Generous: these bound waits for things that normally take milliseconds, and only
// matter when something is broken (or a sanitizer slows everything down).
inline constexpr absl::Duration kWait = absl::Seconds(20);

// Polls `condition` every 2 ms until it holds (true) or `timeout` passes (false).
inline bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

// A server name unique in the process, for filtering the (process-global) telemetry:
// "<prefix>-<TestSuite>.<Test>-<n>".
inline std::string UniqueName(absl::string_view prefix = "test") {
  static std::atomic<int> counter{0};
  std::string test = "none";
  if (const ::testing::TestInfo* info =
          ::testing::UnitTest::GetInstance()->current_test_info()) {
    test = absl::StrCat(info->test_suite_name(), ".", info->name());
  }
  return absl::StrCat(prefix, "-", test, "-", counter.fetch_add(1));
}

// Options for a server on 127.0.0.1, on a port the kernel picks, with a unique name,
// one acceptor and two workers.
inline ServerOptions LoopbackOptions(HandlerFactory factory) {
  ServerOptions options;
  options.port = 0;
  options.transport_options.address = "127.0.0.1";
  options.handler_factory = std::move(factory);
  options.num_workers = 2;
  options.name = UniqueName();
  // Most tests' clients keep their end open after the server closes: a short linger
  // keeps them quick. lingering_close_test sets its own.
  options.linger_timeout = absl::Milliseconds(100);
  return options;
}

// Starts a server; nullptr, with the failure reported, when it cannot start.
inline std::unique_ptr<Server> MustStart(ServerOptions options) {
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Echoes every byte it receives; a failed Send is left to the next read to notice.
class EchoHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }
};

inline absl::StatusOr<std::unique_ptr<TcpSocket>> Connect(const SocketInfo& where,
                                                          absl::Duration timeout = kWait) {
  return TcpSocket::Connect(where, timeout);
}

inline absl::StatusOr<std::unique_ptr<TcpSocket>> Connect(const Server& server,
                                                          absl::Duration timeout = kWait) {
  absl::StatusOr<SocketInfo> where = server.ListenerInfo();
  if (!where.ok()) return where.status();
  return TcpSocket::Connect(*where, timeout);
}

// Sends `data` and reads back exactly as many bytes: the reply, or the failure.
inline absl::StatusOr<std::string> RoundTrip(Socket& client, absl::string_view data,
                                             absl::Duration timeout = kWait) {
  absl::Status sent = client.Send(data);
  if (!sent.ok()) return sent;
  return client.Recv(data.size(), timeout);
}

// The status matchers (testing/status_matchers.h) and the forked child
// (testing/subprocess.h), under the names the server tests use.
using ::islet::ChildProcess;
using ::islet::IsOkAndHolds;
using ::islet::ReadAll;
using ::islet::StatusIs;
using ::islet::WriteAll;

// A connected client, or nullptr with the failure reported.
inline std::unique_ptr<TcpSocket> MustConnect(const SocketInfo& where,
                                              absl::Duration timeout = kWait) {
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = Connect(where, timeout);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

inline std::unique_ptr<TcpSocket> MustConnect(const Server& server,
                                              absl::Duration timeout = kWait) {
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = Connect(server, timeout);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

// Expects `text` to come back as sent.
inline void ExpectEcho(Socket& client, absl::string_view text, absl::Duration timeout = kWait) {
  EXPECT_THAT(RoundTrip(client, text, timeout), IsOkAndHolds(text));
}

namespace internal {
// `client` once it has echoed `text`, or nullptr with the failure reported.
inline std::unique_ptr<TcpSocket> EchoedOrNull(std::unique_ptr<TcpSocket> client,
                                               absl::string_view text, absl::Duration timeout) {
  if (client == nullptr) return nullptr;
  absl::StatusOr<std::string> got = RoundTrip(*client, text, timeout);
  EXPECT_THAT(got, IsOkAndHolds(text));
  return got.ok() && *got == text ? std::move(client) : nullptr;
}
}  // namespace internal

// Connects and expects one echo of `text`: the client once it has echoed, or nullptr
// with the failure reported.
inline std::unique_ptr<TcpSocket> ConnectAndEcho(const SocketInfo& where, absl::string_view text,
                                                 absl::Duration timeout = kWait) {
  return internal::EchoedOrNull(MustConnect(where, timeout), text, timeout);
}

inline std::unique_ptr<TcpSocket> ConnectAndEcho(const Server& server, absl::string_view text,
                                                 absl::Duration timeout = kWait) {
  return internal::EchoedOrNull(MustConnect(server, timeout), text, timeout);
}

// Reads until the peer closes (OK with everything read), or fails: a reset is Aborted,
// running out of time is DeadlineExceeded.
inline absl::StatusOr<std::string> ReadToEof(Socket& client, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string all;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("read to eof");
    absl::StatusOr<std::string> got = client.Recv(0, left);
    if (got.ok()) {
      all += *got;
      continue;
    }
    if (absl::IsOutOfRange(got.status())) return all;
    return got.status();
  }
}

// A blocking IPv4 client socket made by hand, for what TcpSocket does not offer: a
// receive buffer set before connecting (so a peer that does not read really stops
// taking bytes), or the raw errno of a refused connect. `recv_buffer` 0 keeps the
// default. Returns the connected descriptor, or an invalid one with errno set.
inline UniqueFd RawConnect(uint16_t port, int recv_buffer = 0,
                           const char* address = "127.0.0.1") {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  if (recv_buffer > 0) {
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &recv_buffer, sizeof(recv_buffer));
  }
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, address, &addr.sin_addr);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

// 0 when a connection to 127.0.0.1:`port` succeeds (it is closed again at once),
// otherwise the errno of the failed connect (ECONNREFUSED when nobody listens).
inline int ConnectErrno(uint16_t port) {
  UniqueFd fd = RawConnect(port);
  return fd ? 0 : errno;
}

// `size` bytes that differ from position to position (xorshift), so a reordered,
// shifted or repeated byte shows.
inline std::string Pattern(size_t size) {
  std::string out(size, '\0');
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

// The number of threads in this process, or -1 when /proc cannot tell.
inline int ThreadCount() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// A thread-safe list of strings, for handlers to note their callbacks ("data:ping",
// "shutdown", ...) and tests to wait for them.
class EventRecorder {
 public:
  void Record(std::string event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> Events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int Count(absl::string_view event) const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(std::count(events_.begin(), events_.end(), event));
  }
  bool Contains(absl::string_view event) const { return Count(event) > 0; }
  // True once `event` has been recorded at least `count` times.
  bool WaitFor(absl::string_view event, absl::Duration timeout = kWait, int count = 1) const {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::count(events_.begin(), events_.end(), event) >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    events_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

// A copy of a TelemetryEvent that outlives the sink call.
struct RecordedEvent {
  TelemetryEventType type;
  std::string name;  // "connection.stop", ...
  std::string server;
  absl::Duration monotonic_time;
  absl::Duration duration;
  uint64_t bytes = 0;
  uint64_t connections = 0;
  std::optional<SocketStats> stats;
  uint64_t span_id = 0;
  uint64_t parent_span_id = 0;
  int acceptor = -1;
  uint64_t connection_id = 0;
  std::optional<SocketInfo> local;
  std::optional<SocketInfo> remote;
  std::optional<absl::Status> error;
  std::string detail;
  std::optional<OverloadChange> overload;
};

// Records the telemetry of one server (by ServerOptions::name) while it lives. The
// sink shares ownership of what it records, so an emission racing with the detach
// (Telemetry::Emit may still be running a sink that was just detached) stays safe.
class TelemetryRecorder {
 public:
  // `interest`: the events asked for (a sink that wants few events sees what the
  // server does when nobody else wants the rest).
  explicit TelemetryRecorder(std::string server_name,
                             TelemetryMask interest = kAllTelemetryEvents)
      : state_(std::make_shared<State>(std::move(server_name))) {
    id_ = Telemetry::Attach([state = state_](const TelemetryEvent& e) { state->OnEvent(e); },
                            interest);
  }
  ~TelemetryRecorder() { Telemetry::Detach(id_); }
  TelemetryRecorder(const TelemetryRecorder&) = delete;
  TelemetryRecorder& operator=(const TelemetryRecorder&) = delete;

  std::vector<RecordedEvent> Events() const {
    absl::MutexLock lock(&state_->mu);
    return state_->events;
  }
  std::vector<RecordedEvent> Events(TelemetryEventType type) const {
    absl::MutexLock lock(&state_->mu);
    std::vector<RecordedEvent> out;
    for (const RecordedEvent& e : state_->events) {
      if (e.type == type) out.push_back(e);
    }
    return out;
  }
  int Count(TelemetryEventType type) const {
    absl::MutexLock lock(&state_->mu);
    return state_->CountLocked(type);
  }
  bool WaitFor(TelemetryEventType type, int count = 1, absl::Duration timeout = kWait) const {
    State& s = *state_;
    absl::MutexLock lock(&s.mu);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
      return s.CountLocked(type) >= count;
    };
    return s.mu.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 private:
  struct State {
    explicit State(std::string name) : server(std::move(name)) {}

    int CountLocked(TelemetryEventType type) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return static_cast<int>(std::count_if(events.begin(), events.end(),
                                            [&](const RecordedEvent& e) { return e.type == type; }));
    }

    void OnEvent(const TelemetryEvent& e) {
      if (e.server != server) return;
      RecordedEvent r{e.type};
      r.name = std::string(TelemetryEventName(e.type));
      r.server = std::string(e.server);
      r.monotonic_time = e.monotonic_time;
      r.duration = e.duration;
      r.bytes = e.bytes;
      r.connections = e.connections;
      if (e.stats != nullptr) r.stats = *e.stats;
      r.span_id = e.span_id;
      r.parent_span_id = e.parent_span_id;
      r.acceptor = e.acceptor;
      r.connection_id = e.connection_id;
      if (e.local != nullptr) r.local = *e.local;
      if (e.remote != nullptr) r.remote = *e.remote;
      if (e.error != nullptr) r.error = *e.error;
      r.detail = std::string(e.detail);
      if (e.overload != nullptr) r.overload = *e.overload;
      absl::MutexLock lock(&mu);
      events.push_back(std::move(r));
    }

    const std::string server;
    mutable absl::Mutex mu;
    std::vector<RecordedEvent> events ABSL_GUARDED_BY(mu);
  };

  std::shared_ptr<State> state_;
  uint64_t id_ = 0;
};

// A fixture for tests that run one server at a time. Start records the server's
// telemetry (attached before the start, so nothing is missed) and keeps the server.
// The server is destroyed, and so stopped, before the recorder; a derived fixture whose
// handlers use its own members must reset server_ in its destructor.
class ServerFixture : public ::testing::Test {
 protected:
  // Starts the server; false, with the failure reported, when it cannot start:
  //   ASSERT_TRUE(Start(std::move(options)));
  bool Start(ServerOptions options) {
    telemetry_ = std::make_unique<TelemetryRecorder>(options.name);
    server_ = MustStart(std::move(options));
    return server_ != nullptr;
  }

  std::unique_ptr<TelemetryRecorder> telemetry_;
  std::unique_ptr<Server> server_;  // last: destroyed first
};

}  // namespace testutil
}  // namespace islet

#endif  // ISLET_SERVER_TEST_UTIL_H_
