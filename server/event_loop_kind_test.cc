// Choosing the workers' event loop: ServerOptions::event_loop, the ISLET_EVENT_LOOP
// variable behind kDefault, what Server::Info reports, and the clear failure where the
// kernel refuses io_uring (a seccomp filter stands in for such a kernel or policy).
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/event_loop.h"
#include "server/event_loop_kind.h"
#include "server/server.h"
#include "server/server_test_fixture.h"
#include "server/test_util.h"
#include "testing/subprocess.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::ExpectEcho;
using testutil::MustConnect;
using testutil::ServerTest;

// Sets ISLET_EVENT_LOOP for one test and puts back what was there (the io_uring twin
// of this test runs with it set).
class ScopedEventLoopEnv {
 public:
  explicit ScopedEventLoopEnv(const char* value) {
    if (const char* old = std::getenv(kName)) old_ = old;
    if (value == nullptr) {
      ::unsetenv(kName);
    } else {
      ::setenv(kName, value, 1);
    }
  }
  ~ScopedEventLoopEnv() {
    if (old_.has_value()) {
      ::setenv(kName, old_->c_str(), 1);
    } else {
      ::unsetenv(kName);
    }
  }

 private:
  static constexpr const char* kName = "ISLET_EVENT_LOOP";
  std::optional<std::string> old_;
};

// Why io_uring cannot be used here, or nullopt where it can.
std::optional<std::string> IoUringRefused() {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create(EventLoopKind::kIoUring);
  if (loop.ok()) return std::nullopt;
  return std::string(loop.status().message());
}

TEST(EventLoopKindTest, NamesRoundTrip) {
  for (EventLoopKind kind :
       {EventLoopKind::kDefault, EventLoopKind::kEpoll, EventLoopKind::kIoUring}) {
    EXPECT_EQ(ParseEventLoopKind(EventLoopKindName(kind)), kind);
  }
  EXPECT_EQ(EventLoopKindName(EventLoopKind::kIoUring), "io_uring");
  EXPECT_EQ(ParseEventLoopKind("kqueue"), std::nullopt);
  EXPECT_EQ(ParseEventLoopKind("EPOLL"), std::nullopt);
}

TEST(EventLoopKindTest, DefaultFollowsTheEnvironmentElseEpoll) {
  {
    ScopedEventLoopEnv env(nullptr);
    EXPECT_EQ(ResolveEventLoopKind(EventLoopKind::kDefault).value(), EventLoopKind::kEpoll);
  }
  {
    ScopedEventLoopEnv env("io_uring");
    EXPECT_EQ(ResolveEventLoopKind(EventLoopKind::kDefault).value(), EventLoopKind::kIoUring);
    // An explicit choice wins over the environment.
    EXPECT_EQ(ResolveEventLoopKind(EventLoopKind::kEpoll).value(), EventLoopKind::kEpoll);
  }
  {
    ScopedEventLoopEnv env("epoll");
    EXPECT_EQ(ResolveEventLoopKind(EventLoopKind::kDefault).value(), EventLoopKind::kEpoll);
  }
  for (const char* bad : {"kqueue", "default", "io-uring"}) {
    ScopedEventLoopEnv env(bad);
    absl::StatusOr<EventLoopKind> kind = ResolveEventLoopKind(EventLoopKind::kDefault);
    ASSERT_FALSE(kind.ok()) << bad;
    EXPECT_EQ(kind.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(kind.status().message(), "ISLET_EVENT_LOOP")) << kind.status();
    EXPECT_TRUE(absl::StrContains(kind.status().message(), bad)) << kind.status();
  }
}

TEST_F(ServerTest, ABadEventLoopVariableFailsStartNamingIt) {
  ScopedEventLoopEnv env("poll");
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(Options());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(server.status().message(), "event_loop")) << server.status();
  EXPECT_TRUE(absl::StrContains(server.status().message(), "ISLET_EVENT_LOOP")) << server.status();
}

TEST_F(ServerTest, AnExplicitEpollLoopServesWhateverTheEnvironmentSays) {
  ScopedEventLoopEnv env("io_uring");
  ServerOptions options = Options();
  options.event_loop = EventLoopKind::kEpoll;
  ASSERT_TRUE(Start(std::move(options)));
  EXPECT_EQ(server_->Info().event_loop, "epoll");
  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  ExpectEcho(*client, "over epoll");
}

TEST_F(ServerTest, AnIoUringLoopServesAndSaysSo) {
  if (std::optional<std::string> why = IoUringRefused()) GTEST_SKIP() << *why;
  ScopedEventLoopEnv env("epoll");
  ServerOptions options = Options();
  options.event_loop = EventLoopKind::kIoUring;
  options.num_workers = 2;
  ASSERT_TRUE(Start(std::move(options)));
  EXPECT_TRUE(absl::StartsWith(server_->Info().event_loop, "io_uring (")) << server_->Info().event_loop;
  for (int i = 0; i < 4; ++i) {  // both workers
    std::unique_ptr<TcpSocket> client = MustConnect(*server_);
    ASSERT_NE(client, nullptr);
    ExpectEcho(*client, "over io_uring");
  }
}

TEST_F(ServerTest, TheDefaultLoopIsTheOneTheEnvironmentNames) {
  if (std::optional<std::string> why = IoUringRefused()) GTEST_SKIP() << *why;
  ScopedEventLoopEnv env("io_uring");
  ASSERT_TRUE(Start(Options()));
  EXPECT_TRUE(absl::StartsWith(server_->Info().event_loop, "io_uring")) << server_->Info().event_loop;
  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  ExpectEcho(*client, "default");
}

// Where the kernel refuses io_uring, Start fails at once and says why: no fallback that
// would hide from the operator which loop serves.
TEST(EventLoopRefusedTest, StartFailsWithTheReason) {
  struct Case {
    const char* errno_name;
    const char* says;
  };
  for (const Case& c : {Case{"EPERM", "refused here"}, Case{"ENOSYS", "no io_uring"}}) {
    CommandResult run = RunCommand({"server/io_uring_refused_child", c.errno_name});
    ASSERT_FALSE(run.timed_out) << run.output;
    ASSERT_EQ(run.exit_code, 0) << c.errno_name << ": " << run.output;
    EXPECT_TRUE(absl::StrContains(run.output, "UNAVAILABLE")) << run.output;
    EXPECT_TRUE(absl::StrContains(run.output, "io_uring")) << run.output;
    EXPECT_TRUE(absl::StrContains(run.output, c.says)) << c.errno_name << ": " << run.output;
  }
}

}  // namespace
}  // namespace islet
