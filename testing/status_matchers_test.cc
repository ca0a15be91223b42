// The status matchers match what they say, on absl::Status and absl::StatusOr alike,
// and say what they got when they do not.
#include "testing/status_matchers.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace islet {
namespace {

using ::testing::DescribeMatcher;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::StartsWith;

// Why `matcher` does not match `value` (empty when it does).
template <typename T, typename M>
std::string WhyNot(const M& matcher, const T& value) {
  ::testing::StringMatchResultListener listener;
  const ::testing::Matcher<const T&> m = ::testing::MatcherCast<const T&>(matcher);
  if (m.MatchAndExplain(value, &listener)) return "";
  return listener.str();
}

TEST(StatusMatchersTest, IsOk) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::AbortedError("reset"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(absl::NotFoundError("gone")), Not(IsOk()));
  EXPECT_EQ(WhyNot(IsOk(), absl::AbortedError("reset")), "whose status is ABORTED: reset");
  EXPECT_EQ(DescribeMatcher<absl::Status>(IsOk()), "is OK");
  EXPECT_EQ(DescribeMatcher<absl::Status>(IsOk(), /*negation=*/true), "is not OK");
}

TEST(StatusMatchersTest, StatusIsComparesTheCodeAndOptionallyPartOfTheMessage) {
  const absl::Status reset = absl::AbortedError("recv: connection reset");
  EXPECT_THAT(reset, StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(reset, StatusIs(absl::StatusCode::kAborted, "reset"));
  EXPECT_THAT(reset, Not(StatusIs(absl::StatusCode::kAborted, "refused")));
  EXPECT_THAT(reset, Not(StatusIs(absl::StatusCode::kOutOfRange)));
  EXPECT_THAT(absl::StatusOr<std::string>(reset), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(absl::StatusOr<std::string>("data"), StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(std::optional<absl::Status>(reset), Optional(StatusIs(absl::StatusCode::kAborted)));
  EXPECT_EQ(WhyNot(StatusIs(absl::StatusCode::kOutOfRange), reset),
            "whose status is ABORTED: recv: connection reset");
  EXPECT_EQ(DescribeMatcher<absl::Status>(StatusIs(absl::StatusCode::kAborted, "reset")),
            "has code ABORTED and a message containing \"reset\"");
  EXPECT_EQ(DescribeMatcher<absl::Status>(StatusIs(absl::StatusCode::kAborted), true),
            "does not have code ABORTED");
}

TEST(StatusMatchersTest, IsOkAndHoldsMatchesTheValue) {
  EXPECT_THAT(absl::StatusOr<std::string>("pong"), IsOkAndHolds("pong"));
  EXPECT_THAT(absl::StatusOr<std::string>("pong"), IsOkAndHolds(StartsWith("po")));
  EXPECT_THAT(absl::StatusOr<size_t>(3), IsOkAndHolds(3u));
  EXPECT_THAT(absl::StatusOr<std::string>("ping"), Not(IsOkAndHolds("pong")));
  EXPECT_THAT(absl::StatusOr<std::string>(absl::DeadlineExceededError("late")),
              Not(IsOkAndHolds("pong")));
  // A value that is not copyable.
  EXPECT_THAT(absl::StatusOr<std::unique_ptr<int>>(std::make_unique<int>(5)),
              IsOkAndHolds(testing::Pointee(5)));

  EXPECT_EQ(WhyNot(IsOkAndHolds("pong"),
                   absl::StatusOr<std::string>(absl::DeadlineExceededError("late"))),
            "whose status is DEADLINE_EXCEEDED: late");
  EXPECT_THAT(WhyNot(IsOkAndHolds(HasSubstr("pong")), absl::StatusOr<std::string>("ping")),
              HasSubstr("whose value is \"ping\""));
  EXPECT_EQ(DescribeMatcher<absl::StatusOr<std::string>>(IsOkAndHolds("pong")),
            "is OK and has a value that is equal to \"pong\"");
}

absl::StatusOr<std::string> Greeting(bool ok) {
  if (!ok) return absl::UnavailableError("no greeting");
  return std::string("hello");
}

TEST(StatusMatchersTest, AssertOkAndAssignDeclaresOrAssigns) {
  ASSERT_OK_AND_ASSIGN(std::string greeting, Greeting(true));
  EXPECT_EQ(greeting, "hello");
  greeting.clear();
  ASSERT_OK_AND_ASSIGN(greeting, Greeting(true));
  EXPECT_EQ(greeting, "hello");
}

TEST(StatusMatchersTest, AssertOkAndAssignFailsTheTestWithTheStatus) {
  EXPECT_FATAL_FAILURE(
      {
        ASSERT_OK_AND_ASSIGN(std::string greeting, Greeting(false));
        (void)greeting;
      },
      "no greeting");
}

}  // namespace
}  // namespace islet
