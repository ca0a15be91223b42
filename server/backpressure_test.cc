// Output backpressure: a peer that does not read stops the server reading its requests
// (send_queue_high_water), is closed once it has taken nothing for send_timeout, and
// can never make the server queue more than send_queue_limit; a slow reader that does
// read gets every byte, intact and in order.
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using testutil::kWait;
using testutil::Pattern;
using testutil::RecordedEvent;
using testutil::WaitFor;

constexpr size_t kHighWater = 64 * 1024;
constexpr size_t kResponse = 256 * 1024;

// What the handlers report to the test.
struct Counters {
  std::atomic<int> data_calls{0};
  std::atomic<size_t> bytes_in{0};
  std::atomic<size_t> bytes_queued_total{0};  // sum of every accepted Send
  std::atomic<size_t> max_queued{0};
  std::atomic<bool> exceeded_high_water{false};
  std::atomic<int> sends_refused{0};
  std::atomic<int> refused_code{-1};
  std::atomic<int> errors{0};
  std::atomic<int> error_code{-1};
  std::atomic<int> closes{0};
  std::atomic<int> shutdowns{0};

  void NoteQueued(size_t queued, size_t high_water) {
    size_t prev = max_queued.load();
    while (queued > prev && !max_queued.compare_exchange_weak(prev, queued)) {
    }
    if (queued > high_water) exceeded_high_water = true;
  }
  void NoteRefused(const absl::Status& sent) {
    refused_code = static_cast<int>(sent.code());
    sends_refused.fetch_add(1);
  }
};

// Counts how its connection ends; the handlers below add what they do with data.
class CountingHandler : public Handler {
 public:
  explicit CountingHandler(std::shared_ptr<Counters> c) : c_(std::move(c)) {}

  void HandleError(const absl::Status& error, Connection& conn) override {
    c_->error_code = static_cast<int>(error.code());
    c_->errors.fetch_add(1);  // last: the test reads error_code once it sees this
  }
  void HandleClose(Connection& conn) override { c_->closes.fetch_add(1); }
  void HandleShutdown(Connection& conn) override { c_->shutdowns.fetch_add(1); }

 protected:
  const std::shared_ptr<Counters> c_;
};

// Answers every read with one response of `response` bytes.
class BigResponder : public CountingHandler {
 public:
  BigResponder(std::shared_ptr<Counters> c, size_t response, size_t high_water)
      : CountingHandler(std::move(c)), response_(Pattern(response)), high_water_(high_water) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    c_->bytes_in.fetch_add(data.size());
    absl::Status sent = conn.Send(response_);
    if (sent.ok()) {
      c_->bytes_queued_total.fetch_add(response_.size());
    } else {
      c_->NoteRefused(sent);
    }
    c_->NoteQueued(conn.queued_bytes(), high_water_);
    c_->data_calls.fetch_add(1);  // last: the test reads the rest once it sees this
    return HandlerResult::Continue();
  }

 private:
  const std::string response_;
  const size_t high_water_;
};

class BackpressureTest : public testutil::ServerFixture {
 protected:
  // Small kernel buffers on both sides, so "the peer does not read" really stops the
  // bytes in our queue.
  ServerOptions Options(size_t response = kResponse) {
    ServerOptions options = testutil::LoopbackOptions(
        [c = counters_, response](const std::any&) -> std::unique_ptr<Handler> {
          return std::make_unique<BigResponder>(c, response, kHighWater);
        });
    options.num_workers = 1;
    options.send_queue_high_water = kHighWater;
    options.send_queue_limit = 8 << 20;
    options.send_timeout = absl::Seconds(60);
    options.transport_options.socket_options.push_back(SocketOption::SendBuffer(4096));
    return options;
  }

  // A client of the server with a receive buffer of `recv_buffer` bytes, blocking.
  UniqueFd Peer(int recv_buffer) {
    return testutil::RawConnect(server_->ListenerInfo()->port, recv_buffer);
  }
  // A peer that does not read: small receive buffer, blocking descriptor.
  UniqueFd StubbornPeer() { return Peer(/*recv_buffer=*/4096); }

  // Sends without blocking; true when every byte went.
  static bool SendNow(int fd, absl::string_view data) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == static_cast<ssize_t>(data.size());
  }

  std::shared_ptr<Counters> counters_ = std::make_shared<Counters>();
};

TEST_F(BackpressureTest, ReadingStopsAboveTheHighWaterMarkAndResumesWhenDrained) {
  ASSERT_TRUE(Start(Options()));
  UniqueFd peer = StubbornPeer();
  ASSERT_TRUE(peer.valid()) << errno;

  ASSERT_TRUE(SendNow(peer.get(), "1"));
  ASSERT_TRUE(WaitFor([&] { return counters_->data_calls.load() == 1; }));
  // Most of the 256 KiB response is still ours: above the high-water mark.
  EXPECT_TRUE(counters_->exceeded_high_water.load());
  EXPECT_GT(counters_->max_queued.load(), kHighWater);

  // The peer keeps sending requests; none reaches the handler.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(SendNow(peer.get(), "2"));
    absl::SleepFor(absl::Milliseconds(4));
  }
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(counters_->data_calls.load(), 1);
  EXPECT_EQ(counters_->bytes_in.load(), 1u);
  EXPECT_EQ(counters_->errors.load(), 0);
  EXPECT_EQ(server_->active_connections(), 1);

  // The peer starts reading: the queue drains and the waiting requests come through.
  std::vector<char> buf(64 * 1024);
  size_t received = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) received += static_cast<size_t>(n);
        return counters_->bytes_in.load() == 51 &&
               received == counters_->bytes_queued_total.load();
      },
      absl::Seconds(60)));
  EXPECT_GE(counters_->data_calls.load(), 2);
  EXPECT_LE(counters_->max_queued.load(), size_t{8 << 20});
  EXPECT_EQ(counters_->errors.load(), 0);
  EXPECT_EQ(counters_->sends_refused.load(), 0);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(BackpressureTest, APeerThatTakesNothingForSendTimeoutIsClosed) {
  ServerOptions options = Options();
  options.send_timeout = absl::Milliseconds(500);
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd peer = StubbornPeer();
  ASSERT_TRUE(peer.valid()) << errno;

  ASSERT_TRUE(SendNow(peer.get(), "1"));
  // It keeps sending, never reads.
  ASSERT_TRUE(WaitFor(
      [&] {
        SendNow(peer.get(), "x");
        return counters_->errors.load() > 0;
      },
      kWait));
  EXPECT_EQ(counters_->error_code.load(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(counters_->data_calls.load(), 1);
  EXPECT_EQ(counters_->closes.load(), 0);
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 0; }));

  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));
  std::vector<RecordedEvent> send_errors =
      telemetry_->Events(TelemetryEventType::kConnectionSendError);
  ASSERT_EQ(send_errors.size(), 1u);
  ASSERT_TRUE(send_errors[0].error.has_value());
  EXPECT_TRUE(absl::IsDeadlineExceeded(*send_errors[0].error)) << *send_errors[0].error;
  std::vector<RecordedEvent> stops = telemetry_->Events(TelemetryEventType::kConnectionStop);
  ASSERT_EQ(stops.size(), 1u);
  ASSERT_TRUE(stops[0].error.has_value());
  EXPECT_TRUE(absl::IsDeadlineExceeded(*stops[0].error));

  // The peer finds the connection gone once it reads what did reach it.
  std::vector<char> buf(64 * 1024);
  bool ended = false;
  const absl::Time deadline = absl::Now() + kWait;
  while (!ended && absl::Now() < deadline) {
    const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
    ended = n <= 0;
  }
  EXPECT_TRUE(ended);
  EXPECT_TRUE(server_->Stop().ok());
}

// Sends `chunk` bytes at a time until a Send fails, checking the queue after each.
class Flooder : public CountingHandler {
 public:
  Flooder(std::shared_ptr<Counters> c, size_t chunk, size_t limit)
      : CountingHandler(std::move(c)), chunk_(Pattern(chunk)), limit_(limit) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    c_->data_calls.fetch_add(1);
    for (int i = 0; i < 1000; ++i) {
      absl::Status sent = conn.Send(chunk_);
      c_->NoteQueued(conn.queued_bytes(), limit_);
      if (!sent.ok()) {
        c_->NoteRefused(sent);
        // Later sends keep failing: the connection is on its way out.
        absl::Status again = conn.Send("more");
        if (again.ok()) c_->bytes_queued_total.fetch_add(1);
        break;
      }
    }
    return HandlerResult::Continue();
  }

 private:
  const std::string chunk_;
  const size_t limit_;
};

TEST_F(BackpressureTest, QueueNeverExceedsTheLimitAndAnOversizedSendFails) {
  static constexpr size_t kLimit = 1 << 20;
  ServerOptions options = Options();
  options.send_queue_limit = kLimit;
  options.handler_factory = [c = counters_](const std::any&) -> std::unique_ptr<Handler> {
    return std::make_unique<Flooder>(c, 96 * 1024, kLimit);
  };
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd peer = StubbornPeer();
  ASSERT_TRUE(peer.valid()) << errno;

  ASSERT_TRUE(SendNow(peer.get(), "go"));
  ASSERT_TRUE(WaitFor([&] { return counters_->errors.load() == 1; }));
  EXPECT_EQ(counters_->sends_refused.load(), 1);
  EXPECT_EQ(counters_->refused_code.load(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(counters_->bytes_queued_total.load(), 0u) << "a Send after the refusal succeeded";
  EXPECT_EQ(counters_->error_code.load(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  // The bound held even for the Send that was refused.
  EXPECT_LE(counters_->max_queued.load(), kLimit);
  EXPECT_GT(counters_->max_queued.load(), kLimit / 2);
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 0; }));
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));
  bool saw_exhausted = false;
  for (const RecordedEvent& e : telemetry_->Events(TelemetryEventType::kConnectionSendError)) {
    if (e.error.has_value() && absl::IsResourceExhausted(*e.error)) saw_exhausted = true;
  }
  EXPECT_TRUE(saw_exhausted);
  std::vector<RecordedEvent> stops = telemetry_->Events(TelemetryEventType::kConnectionStop);
  ASSERT_EQ(stops.size(), 1u);
  ASSERT_TRUE(stops[0].error.has_value());
  EXPECT_TRUE(absl::IsResourceExhausted(*stops[0].error));
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(BackpressureTest, OneSendLargerThanTheLimitIsRefusedWithoutBeingQueued) {
  static constexpr size_t kLimit = 256 * 1024;
  ServerOptions options = Options(/*response=*/4 << 20);  // one 4 MiB response
  options.send_queue_limit = kLimit;
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd peer = StubbornPeer();
  ASSERT_TRUE(peer.valid()) << errno;
  ASSERT_TRUE(SendNow(peer.get(), "go"));
  ASSERT_TRUE(WaitFor([&] { return counters_->errors.load() == 1; }));
  EXPECT_EQ(counters_->refused_code.load(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_LE(counters_->max_queued.load(), kLimit);
  EXPECT_EQ(counters_->error_code.load(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 0; }));
}

// Streams a numbered byte sequence: every request byte asks for `per_request` more.
class Streamer : public CountingHandler {
 public:
  Streamer(std::shared_ptr<Counters> c, size_t per_request, size_t high_water)
      : CountingHandler(std::move(c)), per_request_(per_request), high_water_(high_water) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    c_->data_calls.fetch_add(1);
    c_->bytes_in.fetch_add(data.size());
    for (size_t r = 0; r < data.size(); ++r) {
      std::string chunk(per_request_, '\0');
      for (char& ch : chunk) ch = static_cast<char>(next_++ % 251);
      absl::Status sent = conn.Send(chunk);
      if (!sent.ok()) {
        c_->NoteRefused(sent);
        return HandlerResult::Error(sent);
      }
      c_->bytes_queued_total.fetch_add(chunk.size());
      c_->NoteQueued(conn.queued_bytes(), high_water_);
    }
    return HandlerResult::Continue();
  }

 private:
  const size_t per_request_;
  const size_t high_water_;
  uint64_t next_ = 0;
};

TEST_F(BackpressureTest, ASlowReaderGetsEveryByteInOrder) {
  static constexpr size_t kPerRequest = 64 * 1024;
  constexpr int kRequests = 48;
  static constexpr size_t kLimit = 4 << 20;
  ServerOptions options = Options();
  options.send_queue_high_water = 192 * 1024;
  options.send_queue_limit = kLimit;
  // A small send buffer, so that the queue is used whatever else holds bytes on their
  // way (the kernel's autotuned buffer, io_uring's staged sends).
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  options.handler_factory = [c = counters_](const std::any&) -> std::unique_ptr<Handler> {
    return std::make_unique<Streamer>(c, kPerRequest, 192 * 1024);
  };
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd peer = Peer(8192);
  ASSERT_TRUE(peer.valid()) << errno;

  std::thread requester([&] {
    for (int i = 0; i < kRequests; ++i) {
      ASSERT_EQ(::send(peer.get(), "r", 1, MSG_NOSIGNAL), 1);
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  const size_t expected = kPerRequest * kRequests;
  size_t received = 0;
  size_t reads = 0;
  bool in_order = true;
  std::vector<char> buf(16 * 1024);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (received < expected && absl::Now() < deadline) {
    const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n && in_order; ++i) {
      if (static_cast<unsigned char>(buf[i]) != (received + i) % 251) {
        in_order = false;
        ADD_FAILURE() << "byte " << received + i << " is "
                      << static_cast<int>(static_cast<unsigned char>(buf[i])) << ", expected "
                      << (received + i) % 251;
      }
    }
    received += static_cast<size_t>(n);
    if (++reads % 8 == 0) absl::SleepFor(absl::Milliseconds(2));  // a slow reader
  }
  requester.join();
  EXPECT_EQ(received, expected);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(counters_->bytes_in.load(), static_cast<size_t>(kRequests));
  EXPECT_EQ(counters_->sends_refused.load(), 0);
  EXPECT_EQ(counters_->errors.load(), 0);
  EXPECT_GT(counters_->max_queued.load(), 0u);  // the reader really was slower
  EXPECT_LE(counters_->max_queued.load(), kLimit);

  // Nothing more than asked for.
  ::shutdown(peer.get(), SHUT_WR);
  const ssize_t tail = ::recv(peer.get(), buf.data(), buf.size(), 0);
  EXPECT_EQ(tail, 0);
  EXPECT_TRUE(server_->Stop().ok());
}

}  // namespace
}  // namespace islet
