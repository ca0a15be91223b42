// Handing listening sockets from one server to another over a unix socket, in one
// process (the harness test does it between processes): nothing a client does around
// the hand-off fails, and every way the exchange can go wrong leaves the old server
// serving.
#include "server/listener_handoff.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::kWait;

// A unix socket path sun_path can hold (107 characters; bazel's TEST_TMPDIR can be
// longer): in a fresh directory under /tmp, removed with the socket file at the end.
class SocketPath {
 public:
  explicit SocketPath(absl::string_view name) {
    std::string dir = "/tmp/islet-handoff.XXXXXX";
    if (::mkdtemp(dir.data()) != nullptr) dir_ = dir;
    path_ = dir_.empty() ? TestTempPath(name) : absl::StrCat(dir_, "/", name);
  }
  ~SocketPath() {
    ::unlink(path_.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  operator const std::string&() const { return path_; }
  const char* c_str() const { return path_.c_str(); }

 private:
  std::string dir_;
  std::string path_;
};

// Echoes each input prefixed with its server's tag, so a client can tell which
// server (old or new) answered.
class TaggedEcho : public Handler {
 public:
  explicit TaggedEcho(const std::string& tag) : tag_(tag) {}
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "block") {
      // Keeps its worker busy for a while, as a slow callback would.
      blocking.store(true);
      absl::SleepFor(absl::Milliseconds(300));
    }
    conn.Send(absl::StrCat(tag_, data)).IgnoreError();
    return HandlerResult::Continue();
  }

  static inline std::atomic<bool> blocking{false};

 private:
  std::string tag_;
};

ServerOptions Options(const std::string& tag, uint16_t port = 0, int listen_sockets = 1) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<TaggedEcho>(tag));
  options.port = port;
  options.num_listen_sockets = listen_sockets;
  options.num_acceptors = listen_sockets;
  options.shutdown_timeout = absl::Seconds(5);
  return options;
}

// One request on `client`: the tag of the server that answered, or the failure.
absl::StatusOr<std::string> Ask(Socket& client) {
  absl::StatusOr<std::string> answer = testutil::RoundTrip(client, "?", kWait);
  if (!answer.ok()) return answer.status();
  if (answer->size() != 1 && answer->size() != 2) return absl::InternalError("short answer");
  absl::StatusOr<std::string> rest = answer->size() == 2 ? *answer : client.Recv(1, kWait);
  if (!rest.ok()) return rest.status();
  const std::string whole = answer->size() == 2 ? *answer : *answer + *rest;
  if (whole[1] != '?') return absl::InternalError("garbled: " + whole);
  return whole.substr(0, 1);
}

// New connections, one request each, as fast as they go, until stopped; counts which
// server answered and the failures (a refused connect, a reset, a timeout: the first
// few).
class Hammer {
 public:
  explicit Hammer(SocketInfo where) : where_(std::move(where)) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(where_, kWait);
        absl::StatusOr<std::string> tag =
            client.ok() ? Ask(**client) : absl::StatusOr<std::string>(client.status());
        absl::MutexLock lock(&mu_);
        if (!tag.ok()) {
          if (failures_.size() < 5) failures_.push_back(tag.status().ToString());
        } else {
          ++served_[*tag == "O" ? 0 : 1];
        }
      }
    });
  }
  ~Hammer() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  int64_t served_by(int i) {
    absl::MutexLock lock(&mu_);
    return served_[i];
  }
  bool failed() {
    absl::MutexLock lock(&mu_);
    return !failures_.empty();
  }
  std::vector<std::string> failures() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }

 private:
  SocketInfo where_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  int64_t served_[2] ABSL_GUARDED_BY(mu_) = {0, 0};
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class HandoffTest : public ::testing::Test {
 protected:
  void StartOld(int listen_sockets = 1) {
    old_ = testutil::MustStart(Options("O", 0, listen_sockets));
    ASSERT_NE(old_, nullptr);
    where_ = *old_->ListenerInfo();
    absl::StatusOr<std::unique_ptr<HandoffPoint>> point = HandoffPoint::Listen(path_);
    ASSERT_THAT(point, IsOk());
    point_ = *std::move(point);
  }

  // ServeOne on another thread, as the old process's main loop would run it.
  std::future<absl::Status> Serve(absl::Duration timeout = kWait) {
    return std::async(std::launch::async,
                      [this, timeout] { return point_->ServeOne(*old_, timeout); });
  }

  void ExpectOldServes() {
    std::unique_ptr<TcpSocket> client = testutil::MustConnect(where_);
    ASSERT_NE(client, nullptr);
    EXPECT_THAT(Ask(*client), IsOkAndHolds("O"));
  }

  const SocketPath path_{"handoff.sock"};
  std::unique_ptr<Server> old_;
  SocketInfo where_;
  std::unique_ptr<HandoffPoint> point_;
};

TEST_F(HandoffTest, ASuccessorTakesOverWhileClientsConnectAndNoneFails) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  std::unique_ptr<TcpSocket> before = testutil::MustConnect(where_);
  ASSERT_NE(before, nullptr);
  ASSERT_THAT(Ask(*before), IsOkAndHolds("O"));

  Hammer hammer(where_);
  ASSERT_TRUE(testutil::WaitFor([&] { return hammer.served_by(0) >= 20; }));
  std::future<absl::Status> served = Serve();
  absl::StatusOr<TakeOverResult> taken = TakeOver(path_, Options("N", where_.port), kWait);
  ASSERT_THAT(taken, IsOk());
  EXPECT_THAT(taken->predecessor, IsOk());
  EXPECT_THAT(served.get(), IsOk());
  EXPECT_EQ(old_->status(), ServerStatus::kSuspended);
  EXPECT_THAT(taken->server->ListenerInfo(), IsOkAndHolds(where_));
  // The hand-off point is gone with its path, free for the successor's own.
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);

  // From now on the new server answers every new connection...
  const int64_t new_before = hammer.served_by(1);
  auto new_served = [&](int64_t n) {
    return testutil::WaitFor([&] { return hammer.served_by(1) >= n || hammer.failed(); });
  };
  ASSERT_TRUE(new_served(new_before + 20));
  ASSERT_THAT(hammer.failures(), ::testing::IsEmpty());
  const int64_t old_after = hammer.served_by(0);
  ASSERT_TRUE(new_served(new_before + 40));
  EXPECT_LE(hammer.served_by(0), old_after + 1) << "the old server still accepts";
  // ... the old one still serves what it accepted, and its Stop leaves the sockets
  // listening for the new one.
  EXPECT_THAT(Ask(*before), IsOkAndHolds("O"));
  EXPECT_THAT(old_->Stop(), IsOk());
  ASSERT_TRUE(new_served(hammer.served_by(1) + 20));
  hammer.Stop();
  EXPECT_THAT(hammer.failures(), ::testing::IsEmpty());
  EXPECT_GT(hammer.served_by(0), 0);
  EXPECT_THAT(old_->Resume(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(taken->server->Stop(), IsOk());
}

TEST_F(HandoffTest, EveryListenSocketOfAReusePortServerIsHandedOver) {
  ASSERT_NO_FATAL_FAILURE(StartOld(/*listen_sockets=*/2));
  std::future<absl::Status> served = Serve();
  absl::StatusOr<TakeOverResult> taken = TakeOver(path_, Options("N", where_.port, 2), kWait);
  ASSERT_THAT(taken, IsOk());
  EXPECT_THAT(taken->predecessor, IsOk());
  EXPECT_THAT(served.get(), IsOk());
  EXPECT_THAT(old_->Stop(), IsOk());
  // The kernel spreads connections over both sockets: all must be the new server's.
  for (int i = 0; i < 40; ++i) {
    std::unique_ptr<TcpSocket> client = testutil::MustConnect(where_);
    ASSERT_NE(client, nullptr);
    ASSERT_THAT(Ask(*client), IsOkAndHolds("N")) << "connection " << i;
  }
}

TEST_F(HandoffTest, ASuccessorAskedForOtherSocketsRefusesAndTheOldServesOn) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  std::future<absl::Status> served = Serve();
  const uint16_t other_port = where_.port == 65535 ? 1 : where_.port + 1;
  EXPECT_THAT(TakeOver(path_, Options("N", other_port), kWait),
              StatusIs(absl::StatusCode::kInvalidArgument, "but the server is asked for port"));
  EXPECT_THAT(served.get(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     "the successor refused: socket 1 is bound to"));
  EXPECT_EQ(old_->status(), ServerStatus::kRunning);
  ExpectOldServes();
  // The point still listens: a later successor succeeds.
  std::future<absl::Status> again = Serve();
  absl::StatusOr<TakeOverResult> taken = TakeOver(path_, Options("N", where_.port), kWait);
  ASSERT_THAT(taken, IsOk());
  EXPECT_THAT(again.get(), IsOk());
}

// A raw client of the hand-off point: connected, with the offer read.
UniqueFd ConnectAndReadOffer(const std::string& path, std::string* offer) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return UniqueFd();
  }
  char buf[4096];
  while (offer->find("end\n") == std::string::npos) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);  // the descriptors are dropped
    if (n <= 0) return UniqueFd();
    offer->append(buf, static_cast<size_t>(n));
  }
  return fd;
}

TEST_F(HandoffTest, ASuccessorThatAnswersGarbageIsHungUpOn) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  std::future<absl::Status> served = Serve();
  std::string offer;
  UniqueFd peer = ConnectAndReadOffer(path_, &offer);
  ASSERT_TRUE(peer.valid());
  EXPECT_EQ(offer, absl::StrCat("islet-handoff 1\nlistener ipv4 127.0.0.1 ", where_.port, "\nend\n"));
  const std::string garbage = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(::send(peer.get(), garbage.data(), garbage.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(garbage.size()));
  EXPECT_THAT(served.get(), StatusIs(absl::StatusCode::kInvalidArgument, "GET / HTTP/1.1"));
  char byte;
  EXPECT_EQ(::recv(peer.get(), &byte, 1, 0), 0) << "the connection stays open";
  EXPECT_EQ(old_->status(), ServerStatus::kRunning);
  ExpectOldServes();
}

TEST_F(HandoffTest, ASuccessorThatNeverAnswersIsGivenUpOnInTime) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  std::future<absl::Status> served = Serve(absl::Milliseconds(300));
  std::string offer;
  UniqueFd peer = ConnectAndReadOffer(path_, &offer);
  ASSERT_TRUE(peer.valid());
  EXPECT_THAT(served.get(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(old_->status(), ServerStatus::kRunning);
  ExpectOldServes();
}

// Connections that reach a released listener just before the old server stops, while
// its worker is busy: each is answered, by the old server or by whoever holds the
// socket next; none is closed unanswered. On io_uring the old loop accepted them (its
// accept was armed until the worker got back to it) and closed them at Stop: a rolling
// restart behind HAProxy lost requests (harness_proxy_protocol_test).
TEST_F(HandoffTest, ConnectionsArrivingAsTheOldServerStopsAreAllAnswered) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  absl::StatusOr<std::vector<ListeningSocket>> copies = old_->DuplicateListeners();
  ASSERT_THAT(copies, IsOk());
  ASSERT_EQ(copies->size(), 1u);
  TaggedEcho::blocking.store(false);
  std::unique_ptr<TcpSocket> blocker = testutil::MustConnect(where_);
  ASSERT_NE(blocker, nullptr);
  ASSERT_THAT(blocker->Send("block"), IsOk());
  ASSERT_TRUE(testutil::WaitFor([] { return TaggedEcho::blocking.load(); }));
  // The old server's one worker (its acceptor's loop) is busy: let go of the socket,
  // connect, and stop, all before it gets back to its loop.
  ASSERT_THAT(old_->ReleaseListeners(), IsOk());
  std::vector<std::unique_ptr<TcpSocket>> late;
  for (int i = 0; i < 3; ++i) {
    late.push_back(testutil::MustConnect(where_));
    ASSERT_NE(late.back(), nullptr);
    ASSERT_THAT(late.back()->Send(absl::StrCat("late", i)), IsOk());
  }
  EXPECT_THAT(old_->Stop(), IsOk());
  // Whatever is left in the backlog is a successor's.
  ServerOptions options = Options("N");
  options.listen_fds = {copies->front().fd.get()};
  std::unique_ptr<Server> successor = testutil::MustStart(std::move(options));
  ASSERT_NE(successor, nullptr);
  for (int i = 0; i < 3; ++i) {
    const std::string expect = absl::StrCat("late", i);
    absl::StatusOr<std::string> got = late[i]->Recv(expect.size() + 1, kWait);
    ASSERT_THAT(got, IsOk()) << "late connection " << i << " was not answered";
    EXPECT_TRUE(*got == "O" + expect || *got == "N" + expect) << *got;
  }
  EXPECT_THAT(successor->Stop(), IsOk());
}

TEST_F(HandoffTest, NoSuccessorIsUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  EXPECT_THAT(point_->ServeOne(*old_, absl::Milliseconds(50)),
              StatusIs(absl::StatusCode::kUnavailable));
  ExpectOldServes();
}

TEST_F(HandoffTest, ALiveHandoffPathIsNotTakenOver) {
  ASSERT_NO_FATAL_FAILURE(StartOld());
  EXPECT_THAT(HandoffPoint::Listen(path_), StatusIs(absl::StatusCode::kAlreadyExists));
}

// A fake old process: listens at `path` and sends `offer` (no descriptors) to the first
// to connect.
class FakeOld {
 public:
  FakeOld(const std::string& path, std::string offer) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    ::unlink(path.c_str());
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(fd_.get(), 1), 0);
    thread_ = std::thread([this, offer] {
      UniqueFd peer(::accept(fd_.get(), nullptr, nullptr));
      if (!peer) return;
      ::send(peer.get(), offer.data(), offer.size(), MSG_NOSIGNAL);
      char buf[64];
      while (::recv(peer.get(), buf, sizeof(buf), 0) > 0) {
      }
    });
  }
  ~FakeOld() { thread_.join(); }

 private:
  UniqueFd fd_;
  std::thread thread_;
};

TEST(TakeoverTest, AnOldProcessSendingGarbageIsRefusedCleanly) {
  const SocketPath path{"fake.sock"};
  {
    FakeOld old(path, "HTTP/1.1 200 OK\r\n\r\nend\n");
    EXPECT_THAT(Takeover::Receive(path, kWait),
                StatusIs(absl::StatusCode::kInvalidArgument, "not an offer"));
  }
  {
    FakeOld old(path, "islet-handoff 2\nlistener ipv4 127.0.0.1 1\nend\n");
    EXPECT_THAT(Takeover::Receive(path, kWait), StatusIs(absl::StatusCode::kUnimplemented));
  }
  {
    FakeOld old(path, "islet-handoff 1\nlistener ipv4 127.0.0.1 1\nend\n");  // no socket
    EXPECT_THAT(Takeover::Receive(path, kWait),
                StatusIs(absl::StatusCode::kInvalidArgument, "describes 1 sockets and carries 0"));
  }
  {
    FakeOld old(path, "islet-handoff 1\nlistener ipv4 127.0.0.1");  // then silence
    EXPECT_THAT(Takeover::Receive(path, absl::Milliseconds(200)),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
  }
}

TEST(TakeoverTest, NobodyThereIsUnavailable) {
  const SocketPath path{"nobody.sock"};
  EXPECT_THAT(Takeover::Receive(path, kWait), testing::Not(IsOk()));
}

}  // namespace
}  // namespace islet
