// Tests of the typed socket options: names, units, ranges, formatting.
#include "transport/socket_options.h"

#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace islet {
namespace {

using ::testing::HasSubstr;

int64_t ProcMax(const char* path, int64_t fallback) {
  std::ifstream in(path);
  int64_t value = 0;
  if (in >> value && value > 0) return value;
  return fallback;
}

struct NameCase {
  SocketOptionName name;
  const char* text;
};

const std::vector<NameCase>& DocumentedNames() {
  static const auto* names = new std::vector<NameCase>{
      {SocketOptionName::kNoDelay, "nodelay"},
      {SocketOptionName::kKeepAlive, "keepalive"},
      {SocketOptionName::kKeepIdle, "keepidle"},
      {SocketOptionName::kKeepInterval, "keepintvl"},
      {SocketOptionName::kKeepCount, "keepcnt"},
      {SocketOptionName::kRecvBuffer, "recv_buffer"},
      {SocketOptionName::kSendBuffer, "send_buffer"},
      {SocketOptionName::kLinger, "linger"},
      {SocketOptionName::kTos, "tos"},
      {SocketOptionName::kPriority, "priority"},
      {SocketOptionName::kReuseAddress, "reuseaddr"},
      {SocketOptionName::kBlocking, "blocking"},
      {SocketOptionName::kSendTimeout, "send_timeout"},
  };
  return *names;
}

TEST(SocketOptionNameTest, DocumentedSpellings) {
  ASSERT_EQ(DocumentedNames().size(), static_cast<size_t>(kSocketOptionNameCount));
  for (const NameCase& c : DocumentedNames()) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(SocketOptionNameString(c.name), c.text);
    EXPECT_EQ(ParseSocketOptionName(c.text), c.name);
  }
}

TEST(SocketOptionNameTest, EveryNameRoundTripsAndIsDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < kSocketOptionNameCount; ++i) {
    const auto name = static_cast<SocketOptionName>(i);
    const absl::string_view text = SocketOptionNameString(name);
    SCOPED_TRACE(std::string(text));
    EXPECT_NE(text, "unknown");
    EXPECT_FALSE(text.empty());
    EXPECT_TRUE(seen.insert(std::string(text)).second) << "two names share a spelling";
    EXPECT_EQ(ParseSocketOptionName(text), name);
  }
}

TEST(SocketOptionNameTest, UnknownTextIsNullopt) {
  for (const char* text : {"", "NoDelay", "NODELAY", " nodelay", "nodelay ", "tcp_nodelay",
                           "keepinterval", "keepcount", "unknown", "send-timeout"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(ParseSocketOptionName(text), std::nullopt);
  }
}

TEST(SocketOptionNameTest, OutOfRangeEnumIsUnknown) {
  EXPECT_EQ(SocketOptionNameString(static_cast<SocketOptionName>(kSocketOptionNameCount)),
            "unknown");
  EXPECT_EQ(SocketOptionNameString(static_cast<SocketOptionName>(255)), "unknown");
}

TEST(SocketOptionTest, NamedConstructorsUseTheDocumentedUnits) {
  EXPECT_EQ(SocketOption::NoDelay(true).name(), SocketOptionName::kNoDelay);
  EXPECT_EQ(SocketOption::NoDelay(true).value(), 1);
  EXPECT_EQ(SocketOption::NoDelay(false).value(), 0);
  EXPECT_EQ(SocketOption::KeepAlive(true).name(), SocketOptionName::kKeepAlive);
  EXPECT_EQ(SocketOption::KeepAlive(true).value(), 1);

  EXPECT_EQ(SocketOption::KeepIdle(absl::Minutes(2)).name(), SocketOptionName::kKeepIdle);
  EXPECT_EQ(SocketOption::KeepIdle(absl::Minutes(2)).value(), 120);
  EXPECT_EQ(SocketOption::KeepIdle(absl::Milliseconds(1999)).value(), 1);  // whole seconds
  EXPECT_EQ(SocketOption::KeepInterval(absl::Seconds(15)).name(), SocketOptionName::kKeepInterval);
  EXPECT_EQ(SocketOption::KeepInterval(absl::Seconds(15)).value(), 15);
  EXPECT_EQ(SocketOption::KeepCount(9).name(), SocketOptionName::kKeepCount);
  EXPECT_EQ(SocketOption::KeepCount(9).value(), 9);

  EXPECT_EQ(SocketOption::RecvBuffer(65536).name(), SocketOptionName::kRecvBuffer);
  EXPECT_EQ(SocketOption::RecvBuffer(65536).value(), 65536);
  EXPECT_EQ(SocketOption::SendBuffer(8192).name(), SocketOptionName::kSendBuffer);
  EXPECT_EQ(SocketOption::SendBuffer(8192).value(), 8192);

  EXPECT_EQ(SocketOption::Linger(absl::Seconds(5)).name(), SocketOptionName::kLinger);
  EXPECT_EQ(SocketOption::Linger(absl::Seconds(5)).value(), 5);
  EXPECT_EQ(SocketOption::Linger(absl::ZeroDuration()).value(), 0);
  EXPECT_EQ(SocketOption::Linger(std::nullopt).value(), -1);

  EXPECT_EQ(SocketOption::Tos(0x20).name(), SocketOptionName::kTos);
  EXPECT_EQ(SocketOption::Tos(0x20).value(), 0x20);
  EXPECT_EQ(SocketOption::Priority(4).name(), SocketOptionName::kPriority);
  EXPECT_EQ(SocketOption::Priority(4).value(), 4);
  EXPECT_EQ(SocketOption::ReuseAddress(true).name(), SocketOptionName::kReuseAddress);
  EXPECT_EQ(SocketOption::ReuseAddress(true).value(), 1);
  EXPECT_EQ(SocketOption::Blocking(false).name(), SocketOptionName::kBlocking);
  EXPECT_EQ(SocketOption::Blocking(false).value(), 0);
  EXPECT_EQ(SocketOption::Blocking(true).value(), 1);

  EXPECT_EQ(SocketOption::SendTimeout(absl::Milliseconds(1500)).name(),
            SocketOptionName::kSendTimeout);
  EXPECT_EQ(SocketOption::SendTimeout(absl::Milliseconds(1500)).value(), 1500);
  EXPECT_EQ(SocketOption::SendTimeout(absl::Seconds(2)).value(), 2000);
  EXPECT_EQ(SocketOption::SendTimeout(absl::ZeroDuration()).value(), 0);
  EXPECT_EQ(SocketOption::SendTimeout(absl::InfiniteDuration()).value(), -1);

  EXPECT_EQ(SocketOption::Raw(SocketOptionName::kTos, 300).name(), SocketOptionName::kTos);
  EXPECT_EQ(SocketOption::Raw(SocketOptionName::kTos, 300).value(), 300);
}

TEST(SocketOptionTest, EqualityComparesNameAndValue) {
  EXPECT_EQ(SocketOption::NoDelay(true), SocketOption::Raw(SocketOptionName::kNoDelay, 1));
  EXPECT_NE(SocketOption::NoDelay(true), SocketOption::NoDelay(false));
  EXPECT_NE(SocketOption::NoDelay(true), SocketOption::KeepAlive(true));
  EXPECT_EQ(SocketOption::Linger(std::nullopt), SocketOption::Raw(SocketOptionName::kLinger, -1));
}

TEST(SocketOptionTest, ToString) {
  EXPECT_EQ(SocketOption::NoDelay(true).ToString(), "nodelay=1");
  EXPECT_EQ(SocketOption::KeepAlive(false).ToString(), "keepalive=0");
  EXPECT_EQ(SocketOption::KeepIdle(absl::Minutes(1)).ToString(), "keepidle=60");
  EXPECT_EQ(SocketOption::KeepInterval(absl::Seconds(7)).ToString(), "keepintvl=7");
  EXPECT_EQ(SocketOption::KeepCount(3).ToString(), "keepcnt=3");
  EXPECT_EQ(SocketOption::RecvBuffer(65536).ToString(), "recv_buffer=65536");
  EXPECT_EQ(SocketOption::SendBuffer(4096).ToString(), "send_buffer=4096");
  EXPECT_EQ(SocketOption::Linger(std::nullopt).ToString(), "linger=-1");
  EXPECT_EQ(SocketOption::Linger(absl::Seconds(5)).ToString(), "linger=5");
  EXPECT_EQ(SocketOption::Tos(32).ToString(), "tos=32");
  EXPECT_EQ(SocketOption::Priority(6).ToString(), "priority=6");
  EXPECT_EQ(SocketOption::ReuseAddress(true).ToString(), "reuseaddr=1");
  EXPECT_EQ(SocketOption::Blocking(false).ToString(), "blocking=0");
  EXPECT_EQ(SocketOption::SendTimeout(absl::InfiniteDuration()).ToString(), "send_timeout=-1");
  EXPECT_EQ(SocketOption::SendTimeout(absl::Milliseconds(250)).ToString(), "send_timeout=250");
  EXPECT_EQ(SocketOption::Raw(static_cast<SocketOptionName>(200), 5).ToString(), "unknown=5");
}

struct RangeCase {
  SocketOptionName name;
  int64_t min;
  int64_t max;
  bool allows_minus_one;
};

std::vector<RangeCase> DocumentedRanges() {
  const int64_t rmem_max = ProcMax("/proc/sys/net/core/rmem_max", 212992);
  const int64_t wmem_max = ProcMax("/proc/sys/net/core/wmem_max", 212992);
  return {
      {SocketOptionName::kNoDelay, 0, 1, false},
      {SocketOptionName::kKeepAlive, 0, 1, false},
      {SocketOptionName::kKeepIdle, 1, 32767, false},
      {SocketOptionName::kKeepInterval, 1, 32767, false},
      {SocketOptionName::kKeepCount, 1, 127, false},
      {SocketOptionName::kRecvBuffer, 4096, rmem_max, false},
      {SocketOptionName::kSendBuffer, 4096, wmem_max, false},
      {SocketOptionName::kLinger, 0, 65535, true},
      {SocketOptionName::kTos, 0, 252, false},  // 253..255 set ECN bits
      {SocketOptionName::kPriority, 0, 6, false},
      {SocketOptionName::kReuseAddress, 0, 1, false},
      {SocketOptionName::kBlocking, 0, 0, false},
      {SocketOptionName::kSendTimeout, 0, int64_t{1} << 31, true},
  };
}

TEST(ValidateSocketOptionTest, EveryOptionAcceptsItsRangeAndRefusesBeyond) {
  const std::vector<RangeCase> ranges = DocumentedRanges();
  ASSERT_EQ(ranges.size(), static_cast<size_t>(kSocketOptionNameCount));
  for (const RangeCase& r : ranges) {
    SCOPED_TRACE(std::string(SocketOptionNameString(r.name)));
    EXPECT_TRUE(ValidateSocketOption(SocketOption::Raw(r.name, r.min)).ok());
    EXPECT_TRUE(ValidateSocketOption(SocketOption::Raw(r.name, r.max)).ok());
    const absl::Status above = ValidateSocketOption(SocketOption::Raw(r.name, r.max + 1));
    EXPECT_EQ(above.code(), absl::StatusCode::kInvalidArgument) << above;
    EXPECT_THAT(std::string(above.message()),
                HasSubstr(std::string(SocketOptionNameString(r.name))));
    if (r.min - 1 != -1) {
      EXPECT_EQ(ValidateSocketOption(SocketOption::Raw(r.name, r.min - 1)).code(),
                absl::StatusCode::kInvalidArgument);
    }
    EXPECT_EQ(ValidateSocketOption(SocketOption::Raw(r.name, -1)).ok(), r.allows_minus_one);
    EXPECT_EQ(ValidateSocketOption(SocketOption::Raw(r.name, -2)).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(
        ValidateSocketOption(SocketOption::Raw(r.name, std::numeric_limits<int64_t>::max())).code(),
        absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(
        ValidateSocketOption(SocketOption::Raw(r.name, std::numeric_limits<int64_t>::min())).code(),
        absl::StatusCode::kInvalidArgument);
  }
}

TEST(ValidateSocketOptionTest, TosMustBeAMultipleOfFour) {
  for (int tos = 0; tos <= 255; ++tos) {
    SCOPED_TRACE(tos);
    const absl::Status status = ValidateSocketOption(SocketOption::Tos(tos));
    if (tos % 4 == 0) {
      EXPECT_TRUE(status.ok()) << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(status.message()), HasSubstr("tos"));
    }
  }
}

TEST(ValidateSocketOptionTest, BlockingMayOnlyBeFalse) {
  EXPECT_TRUE(ValidateSocketOption(SocketOption::Blocking(false)).ok());
  const absl::Status status = ValidateSocketOption(SocketOption::Blocking(true));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("blocking"));
}

TEST(ValidateSocketOptionTest, UnknownNameIsInvalidArgument) {
  for (int raw : {kSocketOptionNameCount, 100, 255}) {
    SCOPED_TRACE(raw);
    const absl::Status status =
        ValidateSocketOption(SocketOption::Raw(static_cast<SocketOptionName>(raw), 0));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr(absl::StrCat("#", raw)));
  }
}

TEST(ValidateSocketOptionTest, TypicalValuesPass) {
  for (const SocketOption& option : {
           SocketOption::NoDelay(true),
           SocketOption::NoDelay(false),
           SocketOption::KeepAlive(true),
           SocketOption::KeepIdle(absl::Minutes(10)),
           SocketOption::KeepInterval(absl::Seconds(30)),
           SocketOption::KeepCount(5),
           SocketOption::RecvBuffer(65536),
           SocketOption::SendBuffer(65536),
           SocketOption::Linger(absl::Seconds(30)),
           SocketOption::Linger(std::nullopt),
           SocketOption::Tos(0xb8),
           SocketOption::Priority(6),
           SocketOption::ReuseAddress(false),
           SocketOption::SendTimeout(absl::Seconds(30)),
           SocketOption::SendTimeout(absl::InfiniteDuration()),
       }) {
    SCOPED_TRACE(option.ToString());
    EXPECT_TRUE(ValidateSocketOption(option).ok());
  }
}

}  // namespace
}  // namespace islet
