// Ten thousand idle connections on two workers and one acceptor: the server holds
// them with a fixed, small number of threads (never one per connection) and still
// answers each of them. The clients live in a child process, forked before the server
// starts any thread, so the two sides have separate descriptor tables.
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
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

class Echo : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }
};

int ThreadCount() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// Raises the soft descriptor limit to the hard one; returns the new soft limit.
rlim_t RaiseDescriptorLimit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return rl.rlim_cur;
}

bool WriteByte(int fd, char c) {
  for (;;) {
    const ssize_t n = ::write(fd, &c, 1);
    if (n == 1) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

// Reads n bytes from a pipe within `timeout`.
bool ReadBytes(int fd, void* data, size_t n, absl::Duration timeout) {
  char* p = static_cast<char*>(data);
  const absl::Time deadline = absl::Now() + timeout;
  while (n > 0) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd = {fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
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

// The client process: opens kConnections connections in batches (never more than a
// backlog's worth in flight), reports 'C', waits for 'G', then sends one byte on every
// connection and checks that each one echoes it.
int RunClients(int to_parent, int from_parent) {
  uint16_t port = 0;
  if (!ReadBytes(from_parent, &port, sizeof(port), kBudget)) return kChildNoPort;
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
    std::vector<pollfd> pending;
    for (size_t i = batch_start; i < fds.size(); ++i) pending.push_back({fds[i], POLLOUT, 0});
    while (!pending.empty()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return kChildConnectTimeout;
      const int ready = ::poll(pending.data(), pending.size(),
                               static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return kChildConnect;
      std::vector<pollfd> still;
      for (const pollfd& p : pending) {
        if (p.revents == 0) {
          still.push_back({p.fd, POLLOUT, 0});
          continue;
        }
        int error = 0;
        socklen_t length = sizeof(error);
        ::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) return kChildConnect;
      }
      pending.swap(still);
    }
  }
  if (!WriteByte(to_parent, 'C')) return kChildPipe;

  char go = 0;
  if (!ReadBytes(from_parent, &go, 1, kBudget) || go != 'G') return kChildNoGo;
  for (size_t i = 0; i < fds.size(); ++i) {
    const char byte = static_cast<char>('a' + i % 26);
    if (::send(fds[i], &byte, 1, MSG_NOSIGNAL) != 1) return kChildSend;
  }
  // Collect every echo.
  std::vector<pollfd> waiting;
  waiting.reserve(fds.size());
  std::vector<size_t> index;
  for (size_t i = 0; i < fds.size(); ++i) {
    waiting.push_back({fds[i], POLLIN, 0});
    index.push_back(i);
  }
  while (!waiting.empty()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return kChildEchoTimeout;
    const int ready = ::poll(waiting.data(), waiting.size(),
                             static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return kChildEchoWrong;
    std::vector<pollfd> still;
    std::vector<size_t> still_index;
    for (size_t k = 0; k < waiting.size(); ++k) {
      if (waiting[k].revents == 0) {
        still.push_back({waiting[k].fd, POLLIN, 0});
        still_index.push_back(index[k]);
        continue;
      }
      char got = 0;
      if (::recv(waiting[k].fd, &got, 1, 0) != 1) return kChildEchoWrong;
      if (got != static_cast<char>('a' + index[k] % 26)) return kChildEchoWrong;
    }
    waiting.swap(still);
    index.swap(still_index);
  }
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
  int up[2];
  int down[2];
  ASSERT_EQ(::pipe2(up, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(down, O_CLOEXEC), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    ::close(up[0]);
    ::close(down[1]);
    ::_exit(RunClients(up[1], down[0]));
  }
  ::close(up[1]);
  ::close(down[0]);
  UniqueFd from_child(up[0]);
  UniqueFd to_child(down[1]);
  struct Reaper {
    pid_t pid;
    bool reaped = false;
    ~Reaper() {
      if (!reaped) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reaper{pid};

  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<Echo>());
  options.num_workers = 2;
  options.num_acceptors = 1;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  const uint16_t port = (*server)->ListenerInfo()->port;
  ASSERT_TRUE(::write(to_child.get(), &port, sizeof(port)) == sizeof(port));

  char connected = 0;
  ASSERT_TRUE(ReadBytes(from_child.get(), &connected, 1, kBudget))
      << "the client process did not connect everything in time";
  ASSERT_EQ(connected, 'C');
  ASSERT_TRUE(testutil::WaitFor([&] { return (*server)->active_connections() == kConnections; },
                                kBudget))
      << "active connections: " << (*server)->active_connections();
  // Holding them all: a fixed handful of threads (main, two workers, one acceptor,
  // and whatever the sanitizer runtime adds).
  const int threads = ThreadCount();
  EXPECT_LE(threads, kMaxThreads);
  EXPECT_GE(threads, 4);
  EXPECT_EQ((*server)->Info().active_connections, kConnections);

  ASSERT_TRUE(WriteByte(to_child.get(), 'G'));
  int status = 0;
  pid_t waited = 0;
  const absl::Time deadline = absl::Now() + kBudget;
  while ((waited = ::waitpid(pid, &status, WNOHANG)) == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(waited, pid) << "the client process did not finish in time";
  reaper.reaped = true;
  ASSERT_TRUE(WIFEXITED(status)) << "client process died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), kChildOk) << "client process exit code (see ChildExit)";
  EXPECT_LE(ThreadCount(), kMaxThreads);

  // The client closed everything; the server sees them all go.
  EXPECT_TRUE(testutil::WaitFor([&] { return (*server)->active_connections() == 0; }, kBudget))
      << "active connections: " << (*server)->active_connections();
  EXPECT_TRUE((*server)->Stop().ok());
  EXPECT_LT(absl::Now() - started, absl::Seconds(120));
}

}  // namespace
}  // namespace islet
