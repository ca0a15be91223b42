// Tests of Recv, ReadSome, Send, WriteSome and Sendfile on connected TCP and unix
// sockets: partial reads kept across timeouts, gather writes, send timeouts, and
// broken pipes that never raise SIGPIPE. Shared helpers: tcp_transport_test_util.h.
#include "transport/tcp_transport.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "transport/errors.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/tcp_transport_test_util.h"
#include "transport/transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

INSTANTIATE_TEST_SUITE_P(AllNets, ConnectedTest,
                         testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix), NetName);
INSTANTIATE_TEST_SUITE_P(IpNets, IpConnectedTest, testing::Values(Net::kIpv4, Net::kIpv6), NetName);

// =====================================================================================
// Input a loop received for the socket (AttachInput)
// =====================================================================================

// Segments held as a loop's receiver holds them.
class HeldInput : public InputChannel {
 public:
  HeldInput(std::initializer_list<absl::string_view> segments,
            absl::Status end = absl::OkStatus())
      : segments_(segments.begin(), segments.end()), end_(std::move(end)) {}

  absl::string_view Front() const override {
    return segments_.empty() ? absl::string_view() : segments_.front();
  }
  void Consume(size_t n) override {
    segments_.front().erase(0, n);
    if (segments_.front().empty()) segments_.pop_front();
  }
  absl::string_view Take() override {
    ReleaseTaken();
    if (segments_.empty()) return {};
    taken_ = std::move(segments_.front());
    segments_.pop_front();
    return taken_;
  }
  void ReleaseTaken() override { taken_.clear(); }
  absl::Status end() const override { return end_; }

 private:
  std::deque<std::string> segments_;
  std::string taken_;
  absl::Status end_;
};

TEST_P(ConnectedTest, AttachedInputIsReadBeforeTheDescriptor) {
  ASSERT_THAT(client_->Send("socket"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  HeldInput held({"held1,", "held2,"});
  ASSERT_TRUE(server_->AttachInput(&held));
  EXPECT_TRUE(server_->HasBufferedInput());
  char buf[100];
  // One read takes across the held segments, then the next one reads the descriptor.
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(12u));
  EXPECT_EQ(absl::string_view(buf, 12), "held1,held2,");
  EXPECT_FALSE(server_->HasBufferedInput());
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(6u));
  EXPECT_EQ(absl::string_view(buf, 6), "socket");
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_received, 18u);
  server_->Close();
  EXPECT_FALSE(server_->HasBufferedInput()) << "closing lets go of the input";
}

TEST_P(ConnectedTest, TakeInputLendsTheFrontSegmentWholeAndReadsGoOnAfterIt) {
  HeldInput held({"ab", "cd"});
  ASSERT_TRUE(server_->AttachInput(&held));
  EXPECT_EQ(server_->TakeInput(), "ab");
  char buf[10];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(2u));
  EXPECT_EQ(absl::string_view(buf, 2), "cd");
  EXPECT_EQ(server_->TakeInput(), "") << "nothing held: ReadSome reads the descriptor";
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_P(ConnectedTest, TheEndOfAttachedInputIsReportedOnceItsBytesAreRead) {
  HeldInput held({"last"}, PosixError(ECONNRESET, "recv"));
  ASSERT_TRUE(server_->AttachInput(&held));
  char buf[10];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), IsOkAndHolds(4u));
  EXPECT_TRUE(server_->HasBufferedInput()) << "the end is still to be read";
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kAborted));
}

TEST_P(ConnectedTest, RecvReadsAttachedInputThenWaitsOnTheDescriptor) {
  HeldInput held({"he"});
  ASSERT_TRUE(server_->AttachInput(&held));
  std::thread sender([this] {
    absl::SleepFor(absl::Milliseconds(20));
    EXPECT_THAT(client_->Send("llo"), IsOk());
  });
  EXPECT_THAT(server_->Recv(5, kGenerous), IsOkAndHolds("hello"));
  sender.join();
}

// =====================================================================================
// Recv
// =====================================================================================

TEST_P(ConnectedTest, RecvZeroReturnsWhatIsAvailable) {
  ASSERT_THAT(client_->Send("abc"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, kGenerous));
  EXPECT_EQ(got, "abc");
  // More than one read's worth comes back in pieces, nothing lost.
  const std::string big = Pattern(300000);
  auto sent = std::async(std::launch::async, [&] { return client_->Send(big); });
  std::string all;
  while (all.size() < big.size()) {
    ASSERT_OK_AND_ASSIGN(std::string piece, server_->Recv(0, kGenerous));
    ASSERT_FALSE(piece.empty());
    all += piece;
  }
  EXPECT_THAT(sent.get(), IsOk());
  EXPECT_EQ(all, big);
}

TEST_P(ConnectedTest, RecvExactLengthAssemblesPieces) {
  std::thread sender([this] {
    for (absl::string_view piece : {"he", "llo", ", ", "wor", "ld!"}) {
      if (!client_->Send(piece).ok()) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  absl::StatusOr<std::string> first = server_->Recv(5, kGenerous);
  absl::StatusOr<std::string> rest = server_->Recv(8, kGenerous);
  sender.join();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(*first, "hello");
  ASSERT_THAT(rest, IsOk());
  EXPECT_EQ(*rest, ", world!");
}

TEST_P(ConnectedTest, RecvLargeExactLength) {
  const std::string big = Pattern(1 << 20, 7);
  auto sent = std::async(std::launch::async, [&] { return client_->Send(big); });
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(big.size(), absl::Seconds(30)));
  EXPECT_THAT(sent.get(), IsOk());
  EXPECT_TRUE(got == big);
}

TEST_P(ConnectedTest, RecvTimeoutKeepsThePartialBytes) {
  ASSERT_THAT(client_->Send("abc"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  const absl::StatusOr<std::string> short_read = server_->Recv(6, kShort);
  EXPECT_THAT(short_read, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsTimeout(short_read.status()));
  EXPECT_TRUE(server_->HasBufferedInput());
  // The three bytes were kept: they lead the next Recv.
  ASSERT_THAT(client_->Send("def"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(6, kGenerous));
  EXPECT_EQ(got, "abcdef");
  EXPECT_FALSE(server_->HasBufferedInput());
}

TEST_P(ConnectedTest, KeptBytesComeBackFromRecvZeroAndReadSome) {
  ASSERT_THAT(client_->Send("xyz"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  EXPECT_THAT(server_->Recv(10, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
  // Nothing is readable on the descriptor any more, yet the bytes are there at once.
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, absl::ZeroDuration()));
  EXPECT_EQ(got, "xyz");

  ASSERT_THAT(client_->Send("12345"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  EXPECT_THAT(server_->Recv(8, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
  char buf[3];
  ASSERT_OK_AND_ASSIGN(size_t n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "123");
  ASSERT_OK_AND_ASSIGN(n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "45");
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_P(ConnectedTest, RecvWithZeroTimeoutNeverWaits) {
  EXPECT_THAT(server_->Recv(0, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(server_->Recv(4, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(server_->Recv(0, absl::Milliseconds(-5)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));

  ASSERT_THAT(client_->Send("now"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, absl::ZeroDuration()));
  EXPECT_EQ(got, "now");

  ASSERT_THAT(client_->Send("exact"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(got, server_->Recv(5, absl::ZeroDuration()));
  EXPECT_EQ(got, "exact");
}

TEST_P(ConnectedTest, RecvWithInfiniteTimeoutWaitsForData) {
  std::thread sender([this] {
    absl::SleepFor(absl::Milliseconds(50));
    client_->Send("late").IgnoreError();
  });
  absl::StatusOr<std::string> got = server_->Recv(4, absl::InfiniteDuration());
  sender.join();
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "late");
}

TEST_P(ConnectedTest, RecvAfterOrderlyCloseIsOutOfRange) {
  client_->Close();
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kOutOfRange));
  EXPECT_TRUE(IsPeerClosed(got.status()));
  EXPECT_THAT(server_->Recv(1, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  char buf[4];
  EXPECT_THAT(server_->ReadSome(absl::MakeSpan(buf)), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_P(ConnectedTest, ShortDataBeforeCloseIsOutOfRangeButNotLost) {
  ASSERT_THAT(client_->Send("tail"), IsOk());
  ASSERT_THAT(client_->Shutdown(ShutdownWay::kWrite), IsOk());
  EXPECT_THAT(server_->Recv(10, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
  ASSERT_OK_AND_ASSIGN(std::string got, server_->Recv(0, kGenerous));
  EXPECT_EQ(got, "tail");
  EXPECT_THAT(server_->Recv(0, kGenerous), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_P(ConnectedTest, RecvAfterResetIsAborted) {
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(IsConnectionLost(got.status()));
  EXPECT_THAT(got.status().message(), HasSubstr("ECONNRESET"));
}

TEST_P(IpConnectedTest, RecvAfterRawResetIsAborted) {
  // The same through a raw client with SO_LINGER {1, 0}.
  ASSERT_OK_AND_ASSIGN(SocketInfo info, listener_->LocalInfo());
  const int raw = RawConnect(info);
  ASSERT_GE(raw, 0) << strerror(-raw);
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener_));
  ASSERT_EQ(::send(raw, "hi", 2, MSG_NOSIGNAL), 2);
  ASSERT_OK_AND_ASSIGN(std::string got, server->Recv(2, kGenerous));
  EXPECT_EQ(got, "hi");
  ResetAndClose(raw);
  EXPECT_THAT(server->Recv(0, kGenerous), StatusIs(absl::StatusCode::kAborted));
}

TEST_P(ConnectedTest, RecvOnAClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_TRUE(server_->IsClosed());
  const absl::StatusOr<std::string> got = server_->Recv(0, kGenerous);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(IsClosed(got.status()));
  EXPECT_THAT(server_->Recv(5, absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(ConnectedTest, ReadSomeIsUnavailableWhenNothingIsReady) {
  char buf[16];
  const absl::StatusOr<size_t> nothing = server_->ReadSome(absl::MakeSpan(buf));
  EXPECT_THAT(nothing, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsWouldBlock(nothing.status()));
  EXPECT_FALSE(server_->HasBufferedInput());
  ASSERT_THAT(client_->Send("q"), IsOk());
  ASSERT_TRUE(WaitReadable(server_->fd()));
  ASSERT_OK_AND_ASSIGN(size_t n, server_->ReadSome(absl::MakeSpan(buf)));
  EXPECT_EQ(absl::string_view(buf, n), "q");
}

// =====================================================================================
// Send
// =====================================================================================

TEST_P(ConnectedTest, SendSingleBuffer) {
  ASSERT_THAT(server_->Send("hello world"), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(11, kGenerous));
  EXPECT_EQ(got, "hello world");
  EXPECT_THAT(server_->Send(""), IsOk());
}

TEST_P(ConnectedTest, SendBufferListIsOneGatherWriteInOrder) {
  const std::string big = Pattern(1000, 3);
  const std::vector<absl::string_view> buffers = {"alpha-", "", "beta-", big, "-omega"};
  ASSERT_THAT(server_->Send(buffers), IsOk());
  const std::string expected = absl::StrCat("alpha-", "beta-", big, "-omega");
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(expected.size(), kGenerous));
  EXPECT_EQ(got, expected);
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.send_calls, 1u) << "the list was not sent as one gather write";
  EXPECT_EQ(stats.bytes_sent, expected.size());
}

TEST_P(ConnectedTest, SendMoreBuffersThanIovMax) {
  std::vector<std::string> storage;
  for (int i = 0; i < 3000; ++i) storage.push_back(absl::StrCat(i, ";"));
  std::vector<absl::string_view> buffers(storage.begin(), storage.end());
  std::string expected;
  for (const std::string& s : storage) expected += s;
  auto reader = ClientReadsAsync(expected.size());
  ASSERT_THAT(server_->Send(buffers), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_EQ(got, expected);
}

TEST_P(ConnectedTest, LargeSendWithAConcurrentReader) {
  const std::string big = Pattern(8 << 20, 11);
  auto reader = ClientReadsAsync(big.size());
  ASSERT_THAT(server_->Send(big), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big) << "the data arrived altered";
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_sent, big.size());
}

TEST_P(ConnectedTest, SendToAClosedPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  client_->Close();
  // The first writes may still be taken in; once the kernel knows the peer is gone,
  // every Send fails. The second failure is EPIPE, where SIGPIPE would be raised.
  const std::string chunk(4096, 'p');
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Send(chunk);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(IsConnectionLost(status));
  EXPECT_THAT(server_->Send(chunk), StatusIs(absl::StatusCode::kAborted));
  const std::vector<absl::string_view> pair = {"a", "b"};
  EXPECT_THAT(server_->Send(pair), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(ConnectedTest, SendToAResetPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  const std::string chunk(4096, 'r');
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Send(chunk);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(server_->Send(chunk), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(ConnectedTest, SendTimeoutWhenThePeerNeverReads) {
  // Small buffers keep what the kernel absorbs far below what is sent.
  ASSERT_THAT(client_->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_THAT(
      server_->SetOptions({SocketOption::SendBuffer(65536), SocketOption::SendTimeout(kShort)}),
      IsOk());
  const std::string big = Pattern(32 << 20, 5);
  const absl::Status status = server_->Send(big);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsTimeout(status));
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_GT(stats.bytes_sent, 0u);
  EXPECT_LT(stats.bytes_sent, big.size());
  EXPECT_GT(stats.send_pending, 0u) << "the unread bytes sit in the send queue";
  // A zero send_timeout never waits on a full buffer.
  ASSERT_THAT(server_->SetOptions({SocketOption::SendTimeout(absl::ZeroDuration())}), IsOk());
  EXPECT_THAT(server_->Send(std::string(1 << 20, 'z')),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  // What did go out arrives intact and in order.
  ASSERT_OK_AND_ASSIGN(std::string head, client_->Recv(4096, kGenerous));
  EXPECT_EQ(head, big.substr(0, 4096));
}

TEST_P(ConnectedTest, SendTimeoutFromTheListenerOptions) {
  TempDir other_dir;
  ASSERT_TRUE(other_dir.ok());
  ASSERT_OK_AND_ASSIGN(
      std::shared_ptr<Listener> listener,
      ListenOn(GetParam(), other_dir,
               {.socket_options = {SocketOption::SendTimeout(absl::Milliseconds(80)),
                                   SocketOption::SendBuffer(65536)}}));
  ASSERT_OK_AND_ASSIGN(auto client, ConnectTo(*listener));
  ASSERT_THAT(client->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_OK_AND_ASSIGN(auto server, AcceptWithin(listener));
  ASSERT_OK_AND_ASSIGN(std::vector<SocketOption> got,
                       server->GetOptions({SocketOptionName::kSendTimeout}));
  EXPECT_THAT(got, ElementsAre(SocketOption::SendTimeout(absl::Milliseconds(80))));
  EXPECT_THAT(server->Send(Pattern(32 << 20)), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(ConnectedTest, SendOnAClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_THAT(server_->Send("x"), StatusIs(absl::StatusCode::kFailedPrecondition));
  const std::vector<absl::string_view> pair = {"x", "y"};
  EXPECT_THAT(server_->Send(pair), StatusIs(absl::StatusCode::kFailedPrecondition));
  const absl::string_view data = "x";
  EXPECT_THAT(server_->WriteSome(absl::MakeConstSpan(&data, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// =====================================================================================
// Sendfile
// =====================================================================================

class SendfileTest : public ConnectedTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ConnectedTest::SetUp());
    path_ = dir_.File("data.bin");
    content_ = Pattern(300000, 9);
    ASSERT_TRUE(WriteFileAt(path_, content_));
  }
  std::string path_;
  std::string content_;
};
INSTANTIATE_TEST_SUITE_P(AllNets, SendfileTest, testing::Values(Net::kIpv4, Net::kIpv6, Net::kUnix),
                         NetName);

TEST_P(SendfileTest, WholeFile) {
  auto reader = ClientReadsAsync(content_.size());
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, 0, 0));
  EXPECT_EQ(sent, content_.size());
  ASSERT_OK_AND_ASSIGN(std::string got, reader.get());
  EXPECT_TRUE(got == content_);
  ASSERT_OK_AND_ASSIGN(SocketStats stats, server_->GetStat());
  EXPECT_EQ(stats.bytes_sent, content_.size());
}

TEST_P(SendfileTest, OffsetAndLength) {
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, 1000, 5000));
  EXPECT_EQ(sent, 5000u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(5000, kGenerous));
  EXPECT_EQ(got, content_.substr(1000, 5000));
  // Nothing beyond the slice was sent.
  EXPECT_THAT(client_->Recv(0, kShort), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(SendfileTest, OffsetToTheEnd) {
  const uint64_t offset = content_.size() - 777;
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, offset, 0));
  EXPECT_EQ(sent, 777u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(777, kGenerous));
  EXPECT_EQ(got, content_.substr(offset));
}

TEST_P(SendfileTest, LengthPastTheEndIsClamped) {
  const uint64_t offset = content_.size() - 10;
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, offset, 1000));
  EXPECT_EQ(sent, 10u);
  ASSERT_OK_AND_ASSIGN(std::string got, client_->Recv(10, kGenerous));
  EXPECT_EQ(got, content_.substr(offset));
}

TEST_P(SendfileTest, OffsetAtTheEndSendsNothing) {
  ASSERT_OK_AND_ASSIGN(uint64_t sent, server_->Sendfile(path_, content_.size(), 0));
  EXPECT_EQ(sent, 0u);
}

TEST_P(SendfileTest, MissingFileIsNotFound) {
  EXPECT_THAT(server_->Sendfile(dir_.File("missing.bin"), 0, 0),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(SendfileTest, OffsetPastTheEndIsInvalidArgument) {
  EXPECT_THAT(server_->Sendfile(path_, content_.size() + 1, 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(server_->Sendfile(path_, content_.size() + 100, 5),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SendfileTest, DirectoryIsInvalidArgument) {
  const std::string sub = dir_.File("subdir");
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  EXPECT_THAT(server_->Sendfile(sub, 0, 0), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(SendfileTest, ClosedSocketIsFailedPrecondition) {
  server_->Close();
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_P(SendfileTest, SendTimeoutWhenThePeerNeverReads) {
  const std::string big_path = dir_.File("big.bin");
  ASSERT_TRUE(WriteFileAt(big_path, Pattern(32 << 20, 2)));
  ASSERT_THAT(client_->SetOptions({SocketOption::RecvBuffer(65536)}), IsOk());
  ASSERT_THAT(
      server_->SetOptions({SocketOption::SendBuffer(65536), SocketOption::SendTimeout(kShort)}),
      IsOk());
  EXPECT_THAT(server_->Sendfile(big_path, 0, 0), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_P(SendfileTest, ResetPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  ASSERT_NO_FATAL_FAILURE(ResetClient());
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  // Again: now it is EPIPE, the error that raises SIGPIPE.
  const absl::StatusOr<uint64_t> again = server_->Sendfile(path_, 0, 0);
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

TEST_P(SendfileTest, ClosedPeerFailsWithoutSigpipe) {
  ASSERT_NO_FATAL_FAILURE(UseDefaultSigpipe());
  client_->Close();
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kAborted));
  ExpectSigpipeUntouched();
}

// A SIGPIPE that was pending before the call belongs to someone else: the guard must
// leave it pending.
TEST_P(SendfileTest, SigpipePendingForSomeoneElseIsLeftPending) {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  sigset_t saved;
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &pipe, &saved), 0);
  ASSERT_EQ(::pthread_kill(::pthread_self(), SIGPIPE), 0);
  client_->Close();
  absl::Status status = absl::OkStatus();
  const absl::Time deadline = absl::Now() + kGenerous;
  while (status.ok() && absl::Now() < deadline) status = server_->Sendfile(path_, 0, 0).status();
  EXPECT_THAT(server_->Sendfile(path_, 0, 0), StatusIs(absl::StatusCode::kAborted));
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 1) << "someone else's SIGPIPE was swallowed";
  // Consume it before unblocking.
  struct timespec zero = {};
  EXPECT_EQ(::sigtimedwait(&pipe, nullptr, &zero), SIGPIPE);
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &saved, nullptr), 0);
}

}  // namespace
}  // namespace islet
