// The harness across restarts, driven from the outside as a deploy or systemd drives
// it: sockets passed by systemd's protocol, a takeover under a stream of HTTP clients
// that sees no failure, a takeover refused for other sockets, and SIGHUP reloading the
// TLS certificate.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tools/harness/harness_test_util.h"
#include "tools/harness/http_load.h"
#include "transport/unique_fd.h"

namespace islet::harness {
namespace {

// ---- Plain sockets ----

// A listening socket on 127.0.0.1 (a free port); its port in `*port`.
UniqueFd ListeningSocket(uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 128) != 0) {
    return UniqueFd();
  }
  socklen_t length = sizeof(addr);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length);
  *port = ntohs(addr.sin_port);
  return fd;
}

// One line echoed on a new connection: "" when it came back, else what went wrong.
std::string EchoOnce(uint16_t port) {
  UniqueFd fd = Connect(port);
  if (!fd) return absl::StrCat("connect: ", strerror(errno));
  if (::send(fd.get(), "ping\n", 5, MSG_NOSIGNAL) != 5) return "send failed";
  char buf[5];
  size_t got = 0;
  while (got < sizeof(buf)) {
    const ssize_t n = ::recv(fd.get(), buf + got, sizeof(buf) - got, 0);
    if (n <= 0) return absl::StrCat("recv: ", n == 0 ? "closed" : strerror(errno));
    got += static_cast<size_t>(n);
  }
  return std::string(buf, 5) == "ping\n" ? "" : "garbled";
}

// ---- Socket activation ----

// The harness started as systemd starts a socket-activated service: `passed` at
// descriptor 3, LISTEN_FDS=1, LISTEN_FDNAMES=web and LISTEN_PID its own pid (or
// `listen_pid` when given). A shell sets LISTEN_PID to $$ and execs the harness, which
// keeps the pid.
absl::StatusOr<std::unique_ptr<Subprocess>> StartActivated(int passed,
                                                            const std::vector<std::string>& flags,
                                                            const std::string& listen_pid = "$$") {
  std::vector<std::string> argv = {
      "/bin/sh", "-c",
      absl::StrCat("LISTEN_PID=", listen_pid,
                   " LISTEN_FDS=1 LISTEN_FDNAMES=web; export LISTEN_PID LISTEN_FDS "
                   "LISTEN_FDNAMES; exec \"$0\" \"$@\""),
      HarnessPath()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  SubprocessOptions options;
  options.pass_fds = {{passed, 3}};
  return Subprocess::Start(argv, options);
}

bool HasLine(Subprocess& child, absl::string_view text) {
  return child.WaitForStdout([&](absl::string_view out) { return absl::StrContains(out, text); },
                             kStartTimeout);
}

bool HasErrLine(Subprocess& child, absl::string_view text, absl::Duration bound = kStartTimeout) {
  return child.WaitForStderr([&](absl::string_view err) { return absl::StrContains(err, text); },
                             bound);
}

TEST(HarnessActivationTest, ServesOnTheSocketSystemdPassedAndLeavesItListening) {
  uint16_t port = 0;
  UniqueFd socket = ListeningSocket(&port);
  ASSERT_TRUE(socket.valid());
  absl::StatusOr<std::unique_ptr<Subprocess>> harness =
      StartActivated(socket.get(), {absl::StrCat("--port=", port)});
  ASSERT_TRUE(harness.ok()) << harness.status();
  ASSERT_TRUE(HasLine(**harness, absl::StrCat("listening on 127.0.0.1:", port, "\n")))
      << Describe(**harness);
  // Nobody else accepts on it (this process never does): the echo is the harness's.
  EXPECT_EQ(EchoOnce(port), "");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(**harness));
  // Its exit did not shut the socket down: our copy (systemd's, in real life) listens on,
  // connects wait in the backlog for the next start.
  UniqueFd waiting = Connect(port);
  EXPECT_TRUE(waiting.valid()) << strerror(errno);
}

TEST(HarnessActivationTest, VariablesForAnotherProcessAreIgnored) {
  uint16_t port = 0;
  UniqueFd socket = ListeningSocket(&port);
  ASSERT_TRUE(socket.valid());
  absl::StatusOr<std::unique_ptr<Subprocess>> harness =
      StartActivated(socket.get(), {"--port=0"}, /*listen_pid=*/"1");
  ASSERT_TRUE(harness.ok()) << harness.status();
  ASSERT_TRUE(HasLine(**harness, "listening on 127.0.0.1:")) << Describe(**harness);
  EXPECT_FALSE(absl::StrContains((*harness)->Stdout(), absl::StrCat(":", port, "\n")))
      << "served the socket meant for process 1" << Describe(**harness);
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(**harness));
}

// Exit 2 with one line containing `text`.
void ExpectRefusal(Subprocess& child, absl::string_view text) {
  std::optional<Subprocess::Exit> exit = child.Wait(kExitTimeout);
  ASSERT_TRUE(exit.has_value()) << Describe(child);
  EXPECT_TRUE(exit->ExitedWith(2)) << exit->ToString() << Describe(child);
  ExpectOneLine(child.Stderr());
  EXPECT_TRUE(absl::StrContains(child.Stderr(), text)) << Describe(child);
}

TEST(HarnessActivationTest, ADescriptorThatIsNotASocketIsRefused) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  absl::StatusOr<std::unique_ptr<Subprocess>> harness =
      StartActivated(read_end.get(), {"--port=0"});
  ASSERT_TRUE(harness.ok()) << harness.status();
  ExpectRefusal(**harness, "descriptor 3 is not a socket");
}

TEST(HarnessActivationTest, ASocketOtherThanTheFlagsAskForIsRefused) {
  uint16_t port = 0;
  UniqueFd socket = ListeningSocket(&port);
  ASSERT_TRUE(socket.valid());
  absl::StatusOr<std::unique_ptr<Subprocess>> harness = StartActivated(
      socket.get(), {absl::StrCat("--port=", port == 65535 ? 1 : port + 1)});
  ASSERT_TRUE(harness.ok()) << harness.status();
  ExpectRefusal(**harness, "do not match the flags");
}

// ---- Takeover ----

TEST(HarnessTakeoverTest, ATakeoverUnderLoadLosesNoConnectionAndNoRequest) {
  HandoffPath path;
  const std::vector<std::string> common = {"--handler=http_hello", "--num_workers=2",
                                           "--shutdown_timeout=5s", "--log=warning",
                                           "--num_listen_sockets=2", "--num_acceptors=2",
                                           absl::StrCat("--handoff_socket=", path.get())};
  Harness old;
  std::vector<std::string> old_flags = common;
  old_flags.push_back("--port=0");
  ASSERT_NO_FATAL_FAILURE(StartHarness(old_flags, &old));

  HttpLoad load(old.port, /*fresh=*/2, /*kept=*/2);
  ASSERT_TRUE(load.WaitForServed(200)) << load.served() << " served" << Describe(*old.process);

  // The deploy: one command, the new process with --takeover.
  Harness successor;
  std::vector<std::string> new_flags = common;
  new_flags.push_back(absl::StrCat("--port=", old.port));
  new_flags.push_back(absl::StrCat("--takeover=", path.get()));
  ASSERT_NO_FATAL_FAILURE(StartHarness(new_flags, &successor));
  EXPECT_EQ(successor.port, old.port);
  EXPECT_TRUE(HasErrLine(*successor.process, "took the listening sockets over"))
      << Describe(*successor.process);
  EXPECT_TRUE(HasErrLine(*old.process, "handed the listening sockets to a successor"))
      << Describe(*old.process);

  // The old one drains what it accepted and exits 0 by itself.
  std::optional<Subprocess::Exit> exit = old.process->Wait(kExitTimeout + absl::Seconds(5));
  ASSERT_TRUE(exit.has_value()) << "the old harness did not exit" << Describe(*old.process);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(*old.process);

  // Only the successor is left: what is served now, it serves.
  ASSERT_TRUE(load.WaitForServed(load.served() + 200)) << Describe(*successor.process);
  load.Stop();
  EXPECT_EQ(load.refused(), 0);
  EXPECT_TRUE(load.failures().empty()) << ::testing::PrintToString(load.failures());
  std::printf("takeover under load: %lld requests served, %lld keep-alive retries\n",
              static_cast<long long>(load.served()), static_cast<long long>(load.retries()));
  // The successor listens on its own hand-off socket now, for the next deploy.
  EXPECT_EQ(::access(path.get().c_str(), F_OK), 0);
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*successor.process));
}

TEST(HarnessTakeoverTest, ASuccessorAskedForOtherSocketsExitsAndTheOldServesOn) {
  HandoffPath path;
  Harness old;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", absl::StrCat("--handoff_socket=", path.get())},
                                       &old));
  absl::StatusOr<std::unique_ptr<Subprocess>> successor = Subprocess::Start(
      {HarnessPath(), absl::StrCat("--port=", old.port == 65535 ? 1 : old.port + 1),
       absl::StrCat("--takeover=", path.get())});
  ASSERT_TRUE(successor.ok()) << successor.status();
  ExpectRefusal(**successor, "do not match the flags");
  EXPECT_TRUE(HasErrLine(*old.process, "hand-off failed, still serving: hand-off: the successor refused"))
      << Describe(*old.process);
  EXPECT_EQ(EchoOnce(old.port), "");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*old.process));
}

TEST(HarnessTakeoverTest, NobodyToTakeOverFromIsOneLineAndExit2) {
  HandoffPath path;
  absl::StatusOr<std::unique_ptr<Subprocess>> successor =
      Subprocess::Start({HarnessPath(), "--port=0", absl::StrCat("--takeover=", path.get())});
  ASSERT_TRUE(successor.ok()) << successor.status();
  ExpectRefusal(**successor, "--takeover: ");
}

// ---- TLS: takeover and SIGHUP ----

struct CertFiles {
  std::string cert;
  std::string key;
};

// Writes `certificate` where the harness reads it, replacing the files whole (rename),
// as a certificate renewal does.
void Install(const TestCertificate& certificate, const CertFiles& files) {
  ASSERT_TRUE(WriteFileAt(files.cert + ".new", certificate.chain_pem()));
  ASSERT_TRUE(WriteFileAt(files.key + ".new", certificate.key_pem));
  ASSERT_EQ(::rename((files.cert + ".new").c_str(), files.cert.c_str()), 0);
  ASSERT_EQ(::rename((files.key + ".new").c_str(), files.key.c_str()), 0);
}

// The common name of the certificate a new handshake gets, or what failed.
std::string CommonNameServed(uint16_t port) {
  absl::StatusOr<std::unique_ptr<TestTlsClient>> client = TestTlsClient::Connect(port, kIoTimeout);
  if (!client.ok()) return client.status().ToString();
  absl::Status handshake = (*client)->StartTls({});
  if (!handshake.ok()) return handshake.ToString();
  return (*client)->PeerCommonName();
}

class HarnessTlsRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = {TestTempPath("cert.pem"), TestTempPath("key.pem")};
    ASSERT_NO_FATAL_FAILURE(Install(one_, files_));
  }
  std::vector<std::string> TlsFlags() const {
    return {"--transport=tls", "--certfile=" + files_.cert, "--keyfile=" + files_.key};
  }

  TestCertificateAuthority ca_ = TestCertificateAuthority::Create();
  TestCertificate one_ = ca_.IssueServer("one");
  TestCertificate two_ = ca_.IssueServer("two");
  CertFiles files_;
};

TEST_F(HarnessTlsRestartTest, SighupServesTheNewCertificateToNewHandshakesOnly) {
  Harness h;
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--port=0");
  ASSERT_NO_FATAL_FAILURE(StartHarness(flags, &h));
  absl::StatusOr<std::unique_ptr<TestTlsClient>> live = TestTlsClient::Connect(h.port, kIoTimeout);
  ASSERT_TRUE(live.ok()) << live.status();
  ASSERT_TRUE((*live)->StartTls({}).ok());
  EXPECT_EQ((*live)->PeerCommonName(), "one");

  ASSERT_NO_FATAL_FAILURE(Install(two_, files_));
  ASSERT_TRUE(h.process->Signal(SIGHUP));
  ASSERT_TRUE(HasErrLine(*h.process, "SIGHUP: reloaded")) << Describe(*h.process);
  EXPECT_EQ(CommonNameServed(h.port), "two");
  // The connection from before keeps its session and works on.
  ASSERT_TRUE((*live)->Write("still\n").ok());
  EXPECT_EQ((*live)->Read(6).value_or("failed"), "still\n");

  // A broken certificate: logged, and the one in force stays.
  ASSERT_TRUE(WriteFileAt(files_.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n"));
  ASSERT_TRUE(h.process->Signal(SIGHUP));
  ASSERT_TRUE(HasErrLine(*h.process, "error: SIGHUP: reload failed")) << Describe(*h.process);
  EXPECT_EQ(CommonNameServed(h.port), "two");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h.process));
}

TEST_F(HarnessTlsRestartTest, ATlsServerIsTakenOverToo) {
  HandoffPath path;
  Harness old;
  std::vector<std::string> flags = TlsFlags();
  flags.push_back(absl::StrCat("--handoff_socket=", path.get()));
  std::vector<std::string> old_flags = flags;
  old_flags.push_back("--port=0");
  ASSERT_NO_FATAL_FAILURE(StartHarness(old_flags, &old));
  EXPECT_EQ(CommonNameServed(old.port), "one");
  // The successor brings its own certificate: the deploy of a renewed one.
  ASSERT_NO_FATAL_FAILURE(Install(two_, files_));
  Harness successor;
  flags.push_back(absl::StrCat("--port=", old.port));
  flags.push_back(absl::StrCat("--takeover=", path.get()));
  ASSERT_NO_FATAL_FAILURE(StartHarness(flags, &successor));
  std::optional<Subprocess::Exit> exit = old.process->Wait(kExitTimeout + absl::Seconds(5));
  ASSERT_TRUE(exit.has_value()) << Describe(*old.process);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString();
  EXPECT_EQ(CommonNameServed(old.port), "two");
  ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*successor.process));
}

}  // namespace
}  // namespace islet::harness
