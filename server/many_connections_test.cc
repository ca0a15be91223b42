// Ten thousand idle connections on two workers and one acceptor: the server holds
// them with a fixed, small number of threads (never one per connection) and still
// answers each of them. The clients live in a child process, forked before the server
// starts any thread, so the two sides have separate descriptor tables.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

constexpr int kConnections = 10000;
constexpr rlim_t kNeededDescriptors = kConnections + 200;
constexpr int kMaxThreads = 8;
constexpr absl::Duration kBudget = absl::Seconds(60);

using testutil::ReadAll;
using testutil::ThreadCount;
using testutil::WriteAll;

// Raises the soft descriptor limit to the hard one; returns the new soft limit.
rlim_t RaiseDescriptorLimit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return rl.rlim_cur;
}

// Exit codes of the client process.
enum ChildExit : int {
  kChildOk = 0,
  kChildNoPort = 20,
  kChildLimit = 21,
  kChildSocket = 22,
  kChildConnect = 23,
  kChildConnectTimeout = 24,
  kChildNoGo = 25,
  kChildSend = 26,
  kChildEchoTimeout = 27,
  kChildEchoWrong = 28,
  kChildPipe = 29,
};

enum class PollOutcome { kDone, kTimedOut, kFailed };

// Polls fds[first..] for `events` until each has been ready once, and calls
// on_ready(i) for each fds[i] as it is; a false from on_ready fails the whole.
PollOutcome PollEachOnce(const std::vector<int>& fds, size_t first, short events,
                         absl::Time deadline, const std::function<bool(size_t)>& on_ready) {
  std::vector<pollfd> waiting;
  std::vector<size_t> index;
  for (size_t i = first; i < fds.size(); ++i) {
    waiting.push_back({fds[i], events, 0});
    index.push_back(i);
  }
  while (!waiting.empty()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return PollOutcome::kTimedOut;
    const int ready = ::poll(waiting.data(), waiting.size(),
                             static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return PollOutcome::kFailed;
    std::vector<pollfd> still;
    std::vector<size_t> still_index;
    for (size_t k = 0; k < waiting.size(); ++k) {
      if (waiting[k].revents == 0) {
        still.push_back({waiting[k].fd, events, 0});
        still_index.push_back(index[k]);
        continue;
      }
      if (!on_ready(index[k])) return PollOutcome::kFailed;
    }
    waiting.swap(still);
    index.swap(still_index);
  }
  return PollOutcome::kDone;
}

// The client process: opens kConnections connections in batches (never more than a
// backlog's worth in flight), reports 'C', waits for 'G', then sends one byte on every
// connection and checks that each one echoes it.
int RunClients(int to_parent, int from_parent) {
  uint16_t port = 0;
  if (!ReadAll(from_parent, &port, sizeof(port), kBudget)) return kChildNoPort;
  if (RaiseDescriptorLimit() < kNeededDescriptors) return kChildLimit;
  const absl::Time deadline = absl::Now() + kBudget;

  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);

  std::vector<int> fds;
  fds.reserve(kConnections);
  constexpr int kBatch = 250;
  while (static_cast<int>(fds.size()) < kConnections) {
    const size_t batch_start = fds.size();
    const int batch = std::min<int>(kBatch, kConnections - static_cast<int>(fds.size()));
    for (int i = 0; i < batch; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return kChildSocket;
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 &&
          errno != EINPROGRESS) {
        return kChildConnect;
      }
      fds.push_back(fd);
    }
    // Wait for the batch to be connected.
    const PollOutcome connected = PollEachOnce(fds, batch_start, POLLOUT, deadline, [&](size_t i) {
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &error, &length);
      return error == 0;
    });
    if (connected == PollOutcome::kTimedOut) return kChildConnectTimeout;
    if (connected == PollOutcome::kFailed) return kChildConnect;
  }
  if (!WriteAll(to_parent, "C", 1)) return kChildPipe;

  char go = 0;
  if (!ReadAll(from_parent, &go, 1, kBudget) || go != 'G') return kChildNoGo;
  for (size_t i = 0; i < fds.size(); ++i) {
    const char byte = static_cast<char>('a' + i % 26);
    if (::send(fds[i], &byte, 1, MSG_NOSIGNAL) != 1) return kChildSend;
  }
  // Collect every echo.
  const PollOutcome echoed = PollEachOnce(fds, 0, POLLIN, deadline, [&](size_t i) {
    char got = 0;
    return ::recv(fds[i], &got, 1, 0) == 1 && got == static_cast<char>('a' + i % 26);
  });
  if (echoed == PollOutcome::kTimedOut) return kChildEchoTimeout;
  if (echoed == PollOutcome::kFailed) return kChildEchoWrong;
  for (int fd : fds) ::close(fd);
  return kChildOk;
}

TEST(ManyConnectionsTest, TenThousandIdleConnectionsOnAFewThreads) {
  rlimit rl;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < kNeededDescriptors) {
    GTEST_SKIP() << "the hard RLIMIT_NOFILE is " << rl.rlim_max << "; this test needs "
                 << kNeededDescriptors << " descriptors in each of two processes";
  }
  ASSERT_GE(RaiseDescriptorLimit(), kNeededDescriptors);
  const absl::Time started = absl::Now();

  // Fork first: the child then copies a process with no other thread.
  std::unique_ptr<testutil::ChildProcess> child = testutil::ChildProcess::Fork(RunClients);
  ASSERT_NE(child, nullptr);

  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
  options.num_workers = 2;
  options.num_acceptors = 1;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;
  ASSERT_TRUE(child->Write(&port, sizeof(port)));

  char connected = 0;
  ASSERT_TRUE(child->Read(&connected, 1, kBudget))
      << "the client process did not connect everything in time";
  ASSERT_EQ(connected, 'C');
  ASSERT_TRUE(testutil::WaitFor([&] { return server->active_connections() == kConnections; },
                                kBudget))
      << "active connections: " << server->active_connections();
  // Holding them all: a fixed handful of threads (main and two workers, the acceptor
  // running on a worker's loop, and whatever the sanitizer runtime adds).
  const int threads = ThreadCount();
  EXPECT_LE(threads, kMaxThreads);
  EXPECT_GE(threads, 3);
  EXPECT_EQ(server->Info().active_connections, kConnections);

  ASSERT_TRUE(child->Write("G", 1));
  std::optional<int> status = child->Wait(kBudget);
  ASSERT_TRUE(status.has_value()) << "the client process did not finish in time";
  ASSERT_TRUE(WIFEXITED(*status)) << "client process died: " << *status;
  EXPECT_EQ(WEXITSTATUS(*status), kChildOk) << "client process exit code (see ChildExit)";
  EXPECT_LE(ThreadCount(), kMaxThreads);

  // The client closed everything; the server sees them all go.
  EXPECT_TRUE(testutil::WaitFor([&] { return server->active_connections() == 0; }, kBudget))
      << "active connections: " << server->active_connections();
  EXPECT_TRUE(server->Stop().ok());
  EXPECT_LT(absl::Now() - started, absl::Seconds(120));
}

}  // namespace
}  // namespace islet
