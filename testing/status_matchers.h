// gMock matchers for absl::Status and absl::StatusOr<T>:
//
//   EXPECT_THAT(socket->Send("ping"), IsOk());
//   EXPECT_THAT(socket->Recv(4, kWait), IsOkAndHolds("pong"));   // a value or a matcher
//   EXPECT_THAT(listener->Accept(), StatusIs(absl::StatusCode::kFailedPrecondition));
//   EXPECT_THAT(write, StatusIs(absl::StatusCode::kFailedPrecondition, "same bytes"));
//   EXPECT_THAT(stop.error, Optional(StatusIs(absl::StatusCode::kAborted)));
//   ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, listener->Accept());
//
// IsOk and StatusIs take either type (a StatusOr is judged by its status); the second
// argument of StatusIs is a substring the message must contain. A mismatch says what
// the status was, and IsOkAndHolds also prints the value and why it did not match: not
// for values of megabytes (compare those with EXPECT_TRUE(a == b)).
#ifndef ISLET_TESTING_STATUS_MATCHERS_H_
#define ISLET_TESTING_STATUS_MATCHERS_H_

#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace islet {
namespace status_matchers_internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

class IsOkMatcher {
 public:
  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(actual);
    if (!status.ok()) *listener << "whose status is " << status;
    return status.ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

class StatusIsMatcher {
 public:
  StatusIsMatcher(absl::StatusCode code, std::optional<std::string> substring)
      : code_(code), substring_(std::move(substring)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(actual);
    *listener << "whose status is " << status;
    return status.code() == code_ &&
           (!substring_.has_value() ||
            status.message().find(*substring_) != absl::string_view::npos);
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << absl::StatusCodeToString(code_);
    if (substring_.has_value()) *os << " and a message containing \"" << *substring_ << "\"";
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have code " << absl::StatusCodeToString(code_);
    if (substring_.has_value()) *os << " with a message containing \"" << *substring_ << "\"";
  }

 private:
  absl::StatusCode code_;
  std::optional<std::string> substring_;
};

// Becomes a Matcher<const absl::StatusOr<T>&> for whichever T it is used on, so that
// `inner` (a value or a matcher) is cast to a matcher of T.
template <typename InnerMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(InnerMatcher inner) : inner_(std::move(inner)) {}

  template <typename StatusOrType>
  operator ::testing::Matcher<StatusOrType>() const {  // NOLINT: implicit by design
    using Value = typename std::remove_cvref_t<StatusOrType>::value_type;
    return ::testing::Matcher<StatusOrType>(new Impl<StatusOrType, Value>(inner_));
  }

 private:
  template <typename StatusOrType, typename Value>
  class Impl : public ::testing::MatcherInterface<StatusOrType> {
   public:
    explicit Impl(const InnerMatcher& inner)
        : inner_(::testing::MatcherCast<const Value&>(inner)) {}

    bool MatchAndExplain(StatusOrType actual,
                         ::testing::MatchResultListener* listener) const override {
      if (!actual.ok()) {
        *listener << "whose status is " << actual.status();
        return false;
      }
      ::testing::StringMatchResultListener value_listener;
      const bool matched = inner_.MatchAndExplain(*actual, &value_listener);
      *listener << "whose value is " << ::testing::PrintToString(*actual);
      if (!value_listener.str().empty()) *listener << ", " << value_listener.str();
      return matched;
    }
    void DescribeTo(std::ostream* os) const override {
      *os << "is OK and has a value that ";
      inner_.DescribeTo(os);
    }
    void DescribeNegationTo(std::ostream* os) const override {
      *os << "is not OK, or has a value that ";
      inner_.DescribeNegationTo(os);
    }

   private:
    const ::testing::Matcher<const Value&> inner_;
  };

  InnerMatcher inner_;
};

}  // namespace status_matchers_internal

// An OK absl::Status, or an absl::StatusOr holding a value.
inline ::testing::PolymorphicMatcher<status_matchers_internal::IsOkMatcher> IsOk() {
  return ::testing::MakePolymorphicMatcher(status_matchers_internal::IsOkMatcher());
}

// A status (or a StatusOr's status) with `code`, whatever its message.
inline ::testing::PolymorphicMatcher<status_matchers_internal::StatusIsMatcher> StatusIs(
    absl::StatusCode code) {
  return ::testing::MakePolymorphicMatcher(
      status_matchers_internal::StatusIsMatcher(code, std::nullopt));
}

// A status with `code` whose message contains `substring`.
inline ::testing::PolymorphicMatcher<status_matchers_internal::StatusIsMatcher> StatusIs(
    absl::StatusCode code, std::string substring) {
  return ::testing::MakePolymorphicMatcher(
      status_matchers_internal::StatusIsMatcher(code, std::move(substring)));
}

// An OK absl::StatusOr whose value matches `inner`: a value (compared with ==) or a
// matcher.
template <typename InnerMatcher>
status_matchers_internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>> IsOkAndHolds(
    InnerMatcher&& inner) {
  return status_matchers_internal::IsOkAndHoldsMatcher<std::decay_t<InnerMatcher>>(
      std::forward<InnerMatcher>(inner));
}

}  // namespace islet

// Declares (or assigns) `lhs` from the value of the absl::StatusOr `rexpr`, or fails
// the test with its status and returns from the test function.
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ISLET_ASSERT_OK_AND_ASSIGN_IMPL(ISLET_STATUS_CONCAT(status_or_, __LINE__), lhs, rexpr)
#define ISLET_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                    \
  ASSERT_TRUE(tmp.ok()) << tmp.status();                 \
  lhs = std::move(*tmp)
#define ISLET_STATUS_CONCAT(a, b) ISLET_STATUS_CONCAT_INNER(a, b)
#define ISLET_STATUS_CONCAT_INNER(a, b) a##b

#endif  // ISLET_TESTING_STATUS_MATCHERS_H_
