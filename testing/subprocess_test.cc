// The three process runners share one fork, one bounded wait and one kill: each is
// checked here for its output, its exit, and that a child never outlives its bound.
#include "testing/subprocess.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace islet {
namespace {

using ::testing::HasSubstr;

constexpr char kShell[] = "/bin/sh";

TEST(SubprocessTest, CapturesStdoutAndStderrApartAndTheExit) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child,
                       Subprocess::Start({kShell, "-c", "echo out; echo err >&2; exit 3"}));
  std::optional<ProcessExit> exit = child->Wait(kProcessWait);
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->ExitedWith(3)) << exit->ToString();
  EXPECT_EQ(child->Stdout(), "out\n");
  EXPECT_EQ(child->Stderr(), "err\n");
}

TEST(SubprocessTest, EnvironmentReplacesOurs) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child,
                       Subprocess::Start({kShell, "-c", "echo \"[$ONLY]\""},
                                         std::vector<std::string>{"ONLY=this"}));
  ASSERT_TRUE(child->WaitForStdout(
      [](absl::string_view out) { return absl::StrContains(out, "\n"); }, kProcessWait));
  EXPECT_EQ(child->Stdout(), "[this]\n");
}

TEST(SubprocessTest, AProgramThatCannotRunIsAnError) {
  EXPECT_THAT(Subprocess::Start({"/nonexistent/program"}),
              StatusIs(absl::StatusCode::kInternal, "exec /nonexistent/program"));
}

TEST(SubprocessTest, SignalAndKill) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child,
                       Subprocess::Start({kShell, "-c", "exec sleep 60"}));
  EXPECT_TRUE(child->Running());
  EXPECT_TRUE(child->Signal(SIGTERM));
  std::optional<ProcessExit> exit = child->Wait(kProcessWait);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->signal, SIGTERM) << exit->ToString();
  EXPECT_FALSE(child->Signal(SIGTERM));  // reaped
  child->Kill();                          // and idempotent
}

TEST(SubprocessTest, StdinPipeAndOneTranscript) {
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> child,
      Subprocess::Start({kShell, "-c", "read line; echo \"got $line\"; echo done >&2"},
                        {.pipe_stdin = true, .stderr_to_stdout = true}));
  EXPECT_TRUE(child->WriteStdin("hello\n", kProcessWait));
  child->CloseStdin();
  ASSERT_TRUE(child->Wait(kProcessWait).has_value());
  EXPECT_EQ(child->Stdout(), "got hello\ndone\n");
  EXPECT_EQ(child->Stderr(), "");
}

TEST(SubprocessTest, WritingToAClosedInputFailsWithoutSigpipe) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Subprocess> child,
                       Subprocess::Start({kShell, "-c", "exec 0<&-; exec sleep 60"},
                                         {.pipe_stdin = true}));
  // The pipe's reader is gone once the shell has closed it: writing fails with EPIPE.
  const std::string big(1 << 20, 'x');
  EXPECT_FALSE(child->WriteStdin(big, kProcessWait));
  sigset_t pending;
  sigemptyset(&pending);
  ASSERT_EQ(::sigpending(&pending), 0);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

TEST(RunCommandTest, InputOutputAndExitCode) {
  CommandOptions options;
  options.input = "line one\n";
  CommandResult r =
      RunCommand({kShell, "-c", "read l; echo \"[$l]\"; echo warn >&2; exit 4"}, options);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.output, "[line one]\nwarn\n");
}

TEST(RunCommandTest, InputStaysOpenUntilTheOutputSaysSo) {
  CommandOptions options;
  options.input = "first\n";
  // cat echoes until its input ends: it ends only once "first" came back.
  options.close_input_when = [](const std::string& out) {
    return absl::StrContains(out, "first");
  };
  CommandResult r = RunCommand({"/bin/cat"}, options);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "first\n");
}

TEST(RunCommandTest, KilledAtTheDeadline) {
  CommandOptions options;
  options.timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  CommandResult r = RunCommand({kShell, "-c", "echo started; exec sleep 60"}, options);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.output, "started\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

TEST(RunCommandTest, FindProgram) {
  EXPECT_THAT(FindProgram("sh"), testing::EndsWith("/sh"));
  EXPECT_EQ(FindProgram("no-such-program-anywhere"), "");
}

TEST(ChildProcessTest, TalksThroughPipesAndExits) {
  std::unique_ptr<ChildProcess> child = ChildProcess::Fork([](int to_parent, int from_parent) {
    char c = 0;
    if (!ReadAll(from_parent, &c, 1, kProcessWait)) return 10;
    const char reply = static_cast<char>(c + 1);
    return WriteAll(to_parent, &reply, 1) ? 7 : 11;
  });
  ASSERT_NE(child, nullptr);
  ASSERT_TRUE(child->Write("a", 1));
  char reply = 0;
  ASSERT_TRUE(child->Read(&reply, 1, kProcessWait));
  EXPECT_EQ(reply, 'b');
  std::optional<int> status = child->Wait(kProcessWait);
  ASSERT_TRUE(status.has_value());
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 7);
}

TEST(ChildPidTest, WaitIsBoundedAndKillReaps) {
  ASSERT_OK_AND_ASSIGN(ChildPid child, ForkChild([] {
                         ::pause();
                         return 0;
                       }));
  const pid_t pid = child.get();
  EXPECT_FALSE(child.Wait(absl::Milliseconds(20)).has_value());
  const int status = child.Kill();
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_EQ(child.Wait(absl::ZeroDuration()), status);
  // Reaped: the pid is no longer ours.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

TEST(ChildPidTest, AChildStillRunningIsKilledAndReapedWithItsOwner) {
  pid_t pid = 0;
  {
    ASSERT_OK_AND_ASSIGN(ChildPid child, ForkChild([] {
                           ::pause();
                           return 0;
                         }));
    pid = child.get();
    EXPECT_FALSE(child.Wait(absl::ZeroDuration()).has_value());
  }
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
}

}  // namespace
}  // namespace islet
