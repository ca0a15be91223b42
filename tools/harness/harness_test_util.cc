#include "tools/harness/harness_test_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace islet::harness {

std::string RunfilePath(const std::string& relative) {
  // Bazel runs tests from the runfiles root of the workspace ("islet").
  if (::access(relative.c_str(), R_OK) == 0) return relative;
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    std::string full = absl::StrCat(srcdir, "/islet/", relative);
    if (::access(full.c_str(), R_OK) == 0) return full;
  }
  return relative;
}

std::string HarnessPath() { return RunfilePath("tools/harness/harness"); }

std::string Describe(Subprocess& child) {
  std::optional<Subprocess::Exit> exit = child.Wait(absl::ZeroDuration());
  return absl::StrCat("\n  state: ", exit ? exit->ToString() : "running",
                      "\n  stdout: \"", absl::CEscape(child.Stdout()), "\"",
                      "\n  stderr: \"", absl::CEscape(child.Stderr()), "\"");
}

void StartHarness(const std::vector<std::string>& flags, Harness* out, bool tcp_on_loopback) {
  std::vector<std::string> argv = {HarnessPath()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(argv);
  ASSERT_TRUE(child.ok()) << child.status();
  out->process = *std::move(child);
  const bool got_line = out->process->WaitForStdout(
      [](absl::string_view s) { return absl::StrContains(s, "\n"); }, kStartTimeout);
  ASSERT_TRUE(got_line) << "no listening line from: " << absl::StrJoin(argv, " ")
                        << Describe(*out->process);
  const std::string stdout_text = out->process->Stdout();
  out->line = stdout_text.substr(0, stdout_text.find('\n'));
  if (!tcp_on_loopback) return;
  const size_t at = out->line.find("127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << "listening line without 127.0.0.1:PORT: " << out->line;
  const size_t digits = at + std::strlen("127.0.0.1:");
  size_t end = digits;
  while (end < out->line.size() && absl::ascii_isdigit(out->line[end])) ++end;
  uint32_t port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(out->line.substr(digits, end - digits), &port) && port > 0 &&
              port <= 65535)
      << "no port in the listening line: " << out->line;
  out->port = static_cast<uint16_t>(port);
}

void StopAndExpectExit0(Subprocess& child, int sig, absl::Duration bound) {
  ASSERT_TRUE(child.Signal(sig)) << Describe(child);
  std::optional<Subprocess::Exit> exit = child.Wait(bound);
  ASSERT_TRUE(exit.has_value()) << "still running " << bound << " after " << strsignal(sig)
                                << Describe(child);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(child);
}

void ExpectOneLine(absl::string_view text) {
  EXPECT_TRUE(absl::EndsWith(text, "\n")) << "\"" << absl::CEscape(text) << "\"";
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1)
      << "\"" << absl::CEscape(text) << "\"";
  EXPECT_GT(absl::StripAsciiWhitespace(text).size(), 0u) << "\"" << absl::CEscape(text) << "\"";
  EXPECT_FALSE(absl::StartsWith(text, "\n")) << "\"" << absl::CEscape(text) << "\"";
}

std::string ExpectUsageError(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {HarnessPath()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  SCOPED_TRACE(absl::StrJoin(argv, " "));
  absl::StatusOr<std::unique_ptr<Subprocess>> child = Subprocess::Start(argv);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return "";
  std::optional<Subprocess::Exit> exit = (*child)->Wait(kExitTimeout);
  EXPECT_TRUE(exit.has_value()) << "still running" << Describe(**child);
  if (!exit.has_value()) return "";
  EXPECT_TRUE(exit->ExitedWith(2)) << exit->ToString() << Describe(**child);
  EXPECT_EQ((*child)->Stdout(), "");
  const std::string err = (*child)->Stderr();
  ExpectOneLine(err);
  EXPECT_TRUE(absl::StartsWith(err, "harness: ")) << "\"" << absl::CEscape(err) << "\"";
  return err;
}

}  // namespace islet::harness
