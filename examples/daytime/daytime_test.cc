#include "examples/daytime/daytime.h"

#include "absl/strings/match.h"
#include "examples/example_test_util.h"
#include "gtest/gtest.h"

namespace islet::examples {
namespace {

TEST(DaytimeTest, SendsTodaysDateAndTimeThenClosesInOrder) {
  ExampleServer server(HandlerFactoryOf<DaytimeHandler>());
  const absl::Time before = absl::Now();
  auto client = server.Connect();
  ReadToEnd got = ReadUntilClosed(*client);
  EXPECT_TRUE(got.orderly_close) << got.last;
  ASSERT_TRUE(absl::EndsWith(got.data, "\r\n")) << got.data;
  EXPECT_EQ(got.data.find('\n'), got.data.size() - 1) << "one line only: " << got.data;
  // The line names the day and year the server saw (the same as ours, give or take the
  // second this test took).
  const absl::Time after = absl::Now();
  EXPECT_TRUE(got.data == DaytimeLine(before) || got.data == DaytimeLine(after) ||
              absl::StrContains(got.data, absl::FormatTime("%B %d, %Y", after, absl::UTCTimeZone())))
      << got.data;
  EXPECT_TRUE(absl::StrContains(got.data, absl::FormatTime("%Y", after, absl::UTCTimeZone())));
}

TEST(DaytimeTest, FormatsALine) {
  absl::Time t = absl::FromCivil(absl::CivilSecond(2026, 11, 25, 19, 51, 3), absl::UTCTimeZone());
  EXPECT_EQ(DaytimeLine(t), "Wednesday, November 25, 2026 19:51:03-UTC\r\n");
}

}  // namespace
}  // namespace islet::examples
