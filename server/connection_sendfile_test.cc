// Connection::Sendfile over real loopback sockets: a whole file and a slice, a large
// file queued between ordinary sends, and the errors it returns while the connection
// carries on. Part of the port of Thousand Island's socket_test.exs (with
// connection_io_test, connection_info_test and connection_post_test).
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/connection_test_fixture.h"
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "testing/temp_file.h"

namespace islet {
namespace {

using testutil::ConnectionTest;
using testutil::Ctx;
using testutil::Echo;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Pattern;
using testutil::RecordedEvent;

TEST_F(ConnectionTest, SendfileWholeFileThenASlice) {
  const std::string path = WriteTestFile("sendfile-small", "ABCDEF");
  script_.connection = [path](const Ctx&, Connection& conn) {
    auto whole = conn.Sendfile(path);
    EXPECT_TRUE(whole.ok()) << whole.status();
    if (whole.ok()) { EXPECT_EQ(*whole, 6u); }
    auto slice = conn.Sendfile(path, 1, 3);
    EXPECT_TRUE(slice.ok()) << slice.status();
    if (slice.ok()) { EXPECT_EQ(*slice, 3u); }
    return HandlerResult::Close();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ABCDEFBCD"));
  RecordedEvent stop = StopEvent();
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_sent, 9u);
  std::vector<RecordedEvent> files = telemetry_->Events(TelemetryEventType::kConnectionSendfile);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].bytes, 6u);
  EXPECT_EQ(files[1].bytes, 3u);
  EXPECT_EQ(files[0].detail, path);
  ::unlink(path.c_str());
}

TEST_F(ConnectionTest, SendfileOfALargeFileInterleavedWithSendsKeepsOrderAndResumesReading) {
  // The client reads nothing until the callback has returned, so most of the file
  // waits in the connection's queue, between two ordinary sends; reading from the
  // client is paused meanwhile and must resume once the file has gone out.
  const std::string contents = Pattern(8 << 20);
  const std::string path = WriteTestFile("sendfile-large", contents);
  script_.connection = [path](const Ctx& ctx, Connection& conn) {
    EXPECT_TRUE(conn.Send("<").ok());
    auto sent = conn.Sendfile(path);
    EXPECT_TRUE(sent.ok()) << sent.status();
    if (sent.ok()) { EXPECT_EQ(*sent, 8u << 20); }
    EXPECT_TRUE(conn.Send(">").ok());
    ctx.Note("returns");
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor(1, "returns"));
  auto got = client->Recv(contents.size() + 2, kDeadline);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), contents.size() + 2);
  EXPECT_EQ(got->front(), '<');
  EXPECT_EQ(got->back(), '>');
  EXPECT_TRUE(got->substr(1, contents.size()) == contents) << "file bytes differ";
  ASSERT_THAT(testutil::RoundTrip(*client, "more", kDeadline), IsOkAndHolds("more"));
  client->Close();
  RecordedEvent stop = StopEvent();
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_sent, contents.size() + 2 + 4);
  std::vector<RecordedEvent> files = telemetry_->Events(TelemetryEventType::kConnectionSendfile);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].bytes, contents.size());
  ::unlink(path.c_str());
}

TEST_F(ConnectionTest, SendfileErrorsAreReturnedAndTheConnectionCarriesOn) {
  const std::string path = WriteTestFile("sendfile-errors", "ABCDEF");
  const std::string missing = TestTempPath("no-such-file");
  script_.connection = [path, missing](const Ctx& ctx, Connection& conn) {
    auto none = conn.Sendfile(missing);
    EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
    auto past = conn.Sendfile(path, 7, 1);
    EXPECT_TRUE(absl::IsInvalidArgument(past.status())) << past.status();
    auto empty = conn.Sendfile(path, 6);  // at the end: nothing to send
    EXPECT_TRUE(empty.ok()) << empty.status();
    if (empty.ok()) { EXPECT_EQ(*empty, 0u); }
    auto tail = conn.Sendfile(path, 4, 100);  // clipped at the end of the file
    EXPECT_TRUE(tail.ok()) << tail.status();
    if (tail.ok()) { EXPECT_EQ(*tail, 2u); }
    EXPECT_TRUE(conn.Send(" still here").ok());
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Recv(13, kDeadline), IsOkAndHolds("EF still here"));
  auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionSendfileError), 2);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace islet
