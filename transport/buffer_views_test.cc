// ConsumeBytes over real views: what is left after partial writes of every size.
#include "transport/buffer_views.h"

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Strings(absl::Span<const absl::string_view> views) {
  return std::vector<std::string>(views.begin(), views.end());
}

TEST(ConsumeBytesTest, WithinTheFirstView) {
  std::vector<absl::string_view> views = {"hello", "world"};
  absl::Span<absl::string_view> rest = ConsumeBytes(absl::MakeSpan(views), 2);
  EXPECT_THAT(Strings(rest), ElementsAre("llo", "world"));
  // In place: the caller's list holds the trimmed view.
  EXPECT_EQ(views[0], "llo");
}

TEST(ConsumeBytesTest, ExactlyOneViewSkipsIt) {
  std::vector<absl::string_view> views = {"hello", "world"};
  EXPECT_THAT(Strings(ConsumeBytes(absl::MakeSpan(views), 5)), ElementsAre("world"));
}

TEST(ConsumeBytesTest, AcrossViews) {
  std::vector<absl::string_view> views = {"ab", "cd", "ef", "gh"};
  EXPECT_THAT(Strings(ConsumeBytes(absl::MakeSpan(views), 5)), ElementsAre("f", "gh"));
}

TEST(ConsumeBytesTest, EverythingLeavesNothing) {
  std::vector<absl::string_view> views = {"ab", "", "cd", ""};
  EXPECT_THAT(ConsumeBytes(absl::MakeSpan(views), 4), IsEmpty());
}

TEST(ConsumeBytesTest, EmptyViewsAtTheFrontAreSkipped) {
  std::vector<absl::string_view> views = {"", "", "ab", "", "cd"};
  EXPECT_THAT(Strings(ConsumeBytes(absl::MakeSpan(views), 0)), ElementsAre("ab", "", "cd"));
  std::vector<absl::string_view> after = {"ab", "", "", "cd"};
  EXPECT_THAT(Strings(ConsumeBytes(absl::MakeSpan(after), 2)), ElementsAre("cd"));
  std::vector<absl::string_view> only_empty = {"", ""};
  EXPECT_THAT(ConsumeBytes(absl::MakeSpan(only_empty), 0), IsEmpty());
}

TEST(ConsumeBytesTest, OneByteAtATimeWalksTheStream) {
  const std::string a = "abc";
  const std::string b = "de";
  std::vector<absl::string_view> views = {a, b};
  absl::Span<absl::string_view> rest = absl::MakeSpan(views);
  std::string seen;
  while (!rest.empty()) {
    seen.push_back(rest.front().front());
    rest = ConsumeBytes(rest, 1);
  }
  EXPECT_EQ(seen, "abcde");
}

}  // namespace
}  // namespace islet
