// Scripted accept failures through a fault-injecting transport, the one of Thousand
// Island's acceptor_test.exs: every kind of failure is reported and the acceptor carries
// on, whether it runs on a worker's loop or on its own thread; and where acceptors run.
// With acceptor_emfile_test and acceptor_budget_test, the counterpart of
// acceptor_test.exs.

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::ConnectAndEcho;
using testutil::EchoHandler;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::WaitFor;

// Under TSan the process's first new thread brings a background thread of TSan's own.
// The placement tests count threads, and nothing in this binary starts one before them:
// start (and join) one here, so that their counts see only the server's threads.
const bool kFirstThreadStarted = [] {
  std::thread([] {}).join();
  return true;
}();

// What the next accept calls return before the real listener's accept runs again. Its
// eventfd counts the errors still to come, so a polled listener is readable while any
// are left, as a real one is while connections wait.
class AcceptScript {
 public:
  AcceptScript() : pending_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE)) {}
  void Push(absl::Status error) {
    absl::MutexLock lock(&mu_);
    errors_.push_back(std::move(error));
    const uint64_t one = 1;
    EXPECT_EQ(::write(pending_fd_.get(), &one, sizeof(one)), 8);
  }
  std::optional<absl::Status> Pop() {
    absl::MutexLock lock(&mu_);
    ++calls_;
    if (errors_.empty()) return std::nullopt;
    absl::Status e = std::move(errors_.front());
    errors_.pop_front();
    uint64_t one;
    EXPECT_EQ(::read(pending_fd_.get(), &one, sizeof(one)), 8);
    return e;
  }
  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return errors_.size();
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  int pending_fd() const { return pending_fd_.get(); }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::Status> errors_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  UniqueFd pending_fd_;
};

// A real TCP listener with scripted failures in front. `pollable`: it offers fd() and
// TryAccept, so the server runs its acceptor on a worker's loop (its descriptor is an
// epoll set of the real listener and the script's eventfd); otherwise only Accept, and
// the acceptor gets a thread.
class ScriptedListener : public Listener {
 public:
  ScriptedListener(std::unique_ptr<Listener> real, std::shared_ptr<AcceptScript> script,
                   bool pollable)
      : real_(std::move(real)), script_(std::move(script)) {
    if (!pollable) return;
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    for (int fd : {real_->fd(), script_->pending_fd()}) {
      epoll_event ev = {};
      ev.events = EPOLLIN;
      EXPECT_EQ(::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev), 0);
    }
  }
  absl::StatusOr<std::unique_ptr<Socket>> Accept() override {
    if (std::optional<absl::Status> error = script_->Pop()) return *std::move(error);
    return real_->Accept();
  }
  int fd() const override { return epoll_ ? epoll_.get() : -1; }
  absl::StatusOr<std::unique_ptr<Socket>> TryAccept() override {
    if (std::optional<absl::Status> error = script_->Pop()) return *std::move(error);
    return real_->TryAccept();
  }
  void Close() override { real_->Close(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override { return real_->LocalInfo(); }

 private:
  std::unique_ptr<Listener> real_;
  std::shared_ptr<AcceptScript> script_;
  UniqueFd epoll_;
};

class ScriptedTransport : public Transport {
 public:
  ScriptedTransport(std::shared_ptr<AcceptScript> script, bool pollable)
      : script_(std::move(script)), pollable_(pollable) {}
  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                   const ListenOptions& options) override {
    absl::StatusOr<std::unique_ptr<Listener>> real = tcp_.Listen(port, options);
    if (!real.ok()) return real.status();
    return std::make_unique<ScriptedListener>(*std::move(real), script_, pollable_);
  }
  bool Secure() const override { return false; }
  absl::string_view Name() const override { return "scripted-tcp"; }

 private:
  TcpTransport tcp_;
  std::shared_ptr<AcceptScript> script_;
  const bool pollable_;
};

// Every scripted test runs twice: acceptor on a worker's loop, and on its own thread.
class ScriptedAcceptTest : public testutil::ServerFixture,
                           public testing::WithParamInterface<bool> {
 protected:
  ServerOptions Options() {
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
    options.num_acceptors = 1;
    options.transport = std::make_shared<ScriptedTransport>(script_, /*pollable=*/GetParam());
    return options;
  }
  std::shared_ptr<AcceptScript> script_ = std::make_shared<AcceptScript>();
};

INSTANTIATE_TEST_SUITE_P(AcceptorPlacement, ScriptedAcceptTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "OnAWorkerLoop" : "OnItsOwnThread";
                         });

// The acceptor runs on a worker's loop or on its own thread, as the listener allows:
// the thread count tells which.
TEST(AcceptorPlacementTest, DedicatedAcceptorThreadsKeepAThreadPerAcceptor) {
  for (bool dedicated : {false, true}) {
    SCOPED_TRACE(dedicated);
    const int before = testutil::ThreadCount();
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
    options.num_workers = 1;
    options.num_acceptors = 2;
    options.dedicated_acceptor_threads = dedicated;
    std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
    ASSERT_NE(server, nullptr);
    for (int i = 0; i < 4; ++i) ASSERT_NE(ConnectAndEcho(*server, "placed"), nullptr);
    EXPECT_EQ(testutil::ThreadCount() - before, dedicated ? 3 : 1);
    EXPECT_TRUE(server->Stop().ok());
  }
}

// More acceptors than workers: acceptors sharing a listener on one loop each watch it
// (through their own duplicate descriptor), with no accept errors.
TEST(AcceptorPlacementTest, AcceptorsSharingAListenerAndALoopAllWatchIt) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
  options.num_workers = 1;
  options.num_acceptors = 3;
  testutil::TelemetryRecorder telemetry(options.name);
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(ConnectAndEcho(*server, absl::StrCat("client ", i)));
    ASSERT_NE(clients.back(), nullptr);
  }
  absl::SleepFor(absl::Milliseconds(100));  // a failing watch retries every 10 ms
  EXPECT_EQ(telemetry.Count(TelemetryEventType::kAcceptorAcceptError), 0);
  EXPECT_TRUE(server->Stop().ok());
  EXPECT_EQ(telemetry.Count(TelemetryEventType::kAcceptorStop), 3);
}

TEST_P(ScriptedAcceptTest, AcceptorRunsWhereTheListenerAllows) {
  const int before = testutil::ThreadCount();
  ServerOptions options = Options();
  options.num_workers = 2;
  ASSERT_TRUE(Start(std::move(options)));
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "placed");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(testutil::ThreadCount() - before, GetParam() ? 2 : 3);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_P(ScriptedAcceptTest, EachKindOfAcceptFailureIsReportedAndTheAcceptorCarriesOn) {
  script_->Push(absl::AbortedError("accept: Software caused connection abort (ECONNABORTED)"));
  script_->Push(absl::ResourceExhaustedError("accept: Too many open files (EMFILE)"));
  script_->Push(absl::ResourceExhaustedError("accept: Too many open files in system (ENFILE)"));
  script_->Push(absl::UnknownError("accept: Protocol error (EPROTO)"));
  script_->Push(absl::InvalidArgumentError("accept: Invalid argument (EINVAL)"));
  ASSERT_TRUE(Start(Options()));

  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorAcceptError, 2));
  ASSERT_TRUE(WaitFor([&] { return script_->pending() == 0; }));

  std::vector<testutil::RecordedEvent> aborted =
      telemetry_->Events(TelemetryEventType::kAcceptorEconnaborted);
  ASSERT_EQ(aborted.size(), 1u);
  ASSERT_TRUE(aborted[0].error.has_value());
  EXPECT_TRUE(absl::IsAborted(*aborted[0].error));
  EXPECT_GT(aborted[0].monotonic_time, absl::ZeroDuration());

  std::vector<testutil::RecordedEvent> emfile = telemetry_->Events(TelemetryEventType::kAcceptorEmfile);
  ASSERT_EQ(emfile.size(), 2u);
  for (const testutil::RecordedEvent& e : emfile) {
    ASSERT_TRUE(e.error.has_value());
    EXPECT_TRUE(absl::IsResourceExhausted(*e.error));
  }
  EXPECT_NE(emfile[0].error->message().find("EMFILE"), absl::string_view::npos);
  EXPECT_NE(emfile[1].error->message().find("ENFILE"), absl::string_view::npos);

  std::vector<testutil::RecordedEvent> other =
      telemetry_->Events(TelemetryEventType::kAcceptorAcceptError);
  ASSERT_EQ(other.size(), 2u);
  ASSERT_TRUE(other[0].error.has_value());
  EXPECT_EQ(other[0].error->code(), absl::StatusCode::kUnknown);
  EXPECT_NE(other[0].error->message().find("EPROTO"), absl::string_view::npos);
  ASSERT_TRUE(other[1].error.has_value());
  EXPECT_TRUE(absl::IsInvalidArgument(*other[1].error));
  for (const testutil::RecordedEvent& e : telemetry_->Events()) {
    if (e.name.rfind("acceptor.", 0) == 0) {
      EXPECT_EQ(e.acceptor, 0);
    }
  }

  // The acceptor went on: connections are served.
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, absl::StrCat("after errors ", i));
    ASSERT_NE(client, nullptr);
  }
  EXPECT_TRUE(server_->Stop().ok());
  // One acceptor, never replaced, stopped without an error.
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStart), 1);
  std::vector<testutil::RecordedEvent> stops = telemetry_->Events(TelemetryEventType::kAcceptorStop);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_FALSE(stops[0].error.has_value());
  EXPECT_EQ(stops[0].connections, 3u);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorSpawnError), 0);
}

TEST_P(ScriptedAcceptTest, DescriptorExhaustionDoesNotDisturbOpenConnections) {
  ASSERT_TRUE(Start(Options()));

  std::unique_ptr<TcpSocket> existing = ConnectAndEcho(*server_, "before");
  ASSERT_NE(existing, nullptr);

  // The acceptor is back in the real accept; the next call after the next connection
  // meets five EMFILEs in a row (100 ms of back-off each).
  for (int i = 0; i < 5; ++i) {
    script_->Push(absl::ResourceExhaustedError("accept: Too many open files (EMFILE)"));
  }
  std::unique_ptr<TcpSocket> trigger = ConnectAndEcho(*server_, "trigger");
  ASSERT_NE(trigger, nullptr);
  std::unique_ptr<TcpSocket> during = MustConnect(*server_);  // waits in the backlog
  ASSERT_NE(during, nullptr);
  ASSERT_TRUE(during->Send("during").ok());
  ExpectEcho(*existing, "meanwhile");
  ExpectEcho(*trigger, "meanwhile");

  absl::StatusOr<std::string> got = during->Recv(6, kWait);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "during");
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorEmfile), 5);
  ExpectEcho(*existing, "after");

  std::unique_ptr<TcpSocket> late = ConnectAndEcho(*server_, "late");
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(server_->active_connections(), 4);
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStart), 1);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStop), 1);
}

TEST_P(ScriptedAcceptTest, ManyTransientErrorsInARowAreAllSurvived) {
  // Thousand Island's list of transient accept errors plus EINVAL, all in a row.
  const char* kReasons[] = {"ENETDOWN", "ENETUNREACH", "EHOSTDOWN", "EHOSTUNREACH", "ENONET",
                            "EPROTO",   "ENOPROTOOPT", "EOPNOTSUPP", "ETIMEDOUT", "EINVAL"};
  for (const char* reason : kReasons) {
    script_->Push(absl::UnknownError(absl::StrCat("accept: (", reason, ")")));
  }
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "survived");
  ASSERT_NE(client, nullptr);
  std::vector<testutil::RecordedEvent> errors =
      telemetry_->Events(TelemetryEventType::kAcceptorAcceptError);
  ASSERT_EQ(errors.size(), 10u);
  for (size_t i = 0; i < errors.size(); ++i) {
    ASSERT_TRUE(errors[i].error.has_value());
    EXPECT_NE(errors[i].error->message().find(kReasons[i]), absl::string_view::npos)
        << *errors[i].error;
  }
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStart), 1);
}

TEST_P(ScriptedAcceptTest, StopDuringBackOffReturnsPromptly) {
  // Endless EMFILEs: the acceptor backs off again and again; Stop must still end it.
  for (int i = 0; i < 100000; ++i) {
    script_->Push(absl::ResourceExhaustedError("accept: Too many open files (EMFILE)"));
  }
  ASSERT_TRUE(Start(Options()));
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorEmfile, 2));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStop), 1);
}

}  // namespace
}  // namespace islet
