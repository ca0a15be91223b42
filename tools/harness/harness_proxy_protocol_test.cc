// The harness behind real PROXY protocol senders, on loopback: HAProxy in mode tcp
// with send-proxy-v2 (plain, and TLS passed through with a CRC32C and SSL TLVs) and
// nginx stream with proxy_protocol on (v1). curl connects from 127.0.0.2 and reports
// its own address and port; the harness (--log=debug) must name exactly that client
// as the connection's remote, not the balancer (127.0.0.1). Both balancers come from
// Debian packages (haproxy, nginx with libnginx-mod-stream; tools/setup.sh installs
// them); missing, the tests fail rather than skip. Every process is bounded and killed
// by pid at the end of its test (Subprocess). Last, a fleet: HAProxy with send-proxy-v2
// and health checks in front of two harnesses, both replaced one after the other by a
// takeover while HTTP clients keep sending through HAProxy: no connection refused, no
// request failed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "tools/harness/harness_test_util.h"
#include "tools/harness/http_load.h"
#include "transport/unique_fd.h"

namespace islet::harness {
namespace {

using ::testing::HasSubstr;

// The program at /usr/sbin (where Debian puts daemons) or on PATH, or a failure.
std::string MustFind(const std::string& name, absl::string_view package) {
  std::string path = absl::StrCat("/usr/sbin/", name);
  if (::access(path.c_str(), X_OK) != 0) path = FindProgram(name);
  EXPECT_FALSE(path.empty()) << name << " is missing: apt-get install " << package
                             << " (tools/setup.sh installs it); this test fails rather than skip";
  return path;
}

// A port nobody listens on now (the kernel's pick, released): for the balancer's
// listener, which cannot report the port it chose.
uint16_t FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return 0;
  socklen_t len = sizeof(a);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

bool Listening(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

std::string TempDir(absl::string_view name) {
  const std::string dir = TestTempPath(name);
  EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0) << dir;
  return dir;
}

// Starts a balancer with the config `make_config(port)` on a free port, until it
// listens (a few attempts: another process could take the port in between).
std::unique_ptr<Subprocess> StartBalancer(
    const std::function<std::vector<std::string>(uint16_t port)>& argv_for, uint16_t* port) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    *port = FreePort();
    if (*port == 0) continue;
    absl::StatusOr<std::unique_ptr<Subprocess>> started =
        Subprocess::Start(argv_for(*port), SubprocessOptions{.stderr_to_stdout = true});
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return nullptr;
    const absl::Time deadline = absl::Now() + kStartTimeout;
    while (absl::Now() < deadline && (*started)->Running() && !Listening(*port)) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    if ((*started)->Running() && Listening(*port)) return *std::move(started);
    ADD_FAILURE() << "balancer did not listen on " << *port << ": " << (*started)->Stdout();
  }
  return nullptr;
}

// curl from 127.0.0.2 through the balancer: its body, then "client=IP:PORT".
struct CurlResult {
  std::string body;
  std::string client;  // "127.0.0.2:41234"
};
CurlResult Curl(const std::string& url, bool insecure = false) {
  const std::string curl = FindProgram("curl");
  EXPECT_FALSE(curl.empty()) << "curl is missing (tools/setup.sh installs it)";
  std::vector<std::string> argv = {curl, "-sS", "--max-time", "10", "--interface", "127.0.0.2",
                                   "-w", "\nclient=%{local_ip}:%{local_port}\n"};
  if (insecure) argv.push_back("-k");
  argv.push_back(url);
  const CommandResult result = RunCommand(argv);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  CurlResult out;
  const size_t at = result.output.rfind("\nclient=");
  if (at == std::string::npos) return out;
  out.body = result.output.substr(0, at);
  out.client = std::string(absl::StripSuffix(result.output.substr(at + 8), "\n"));
  return out;
}

// The harness logged a connection from `client` (its debug lines name the remote).
void ExpectRemote(Harness& h, const std::string& client) {
  const std::string want = absl::StrCat("remote=", client);
  EXPECT_TRUE(h.process->WaitForStderr(
      [&](absl::string_view s) { return absl::StrContains(s, want); }, kIoTimeout))
      << "no " << want << " in the harness's log:\n" << h.process->Stderr();
}

// curl from 127.0.0.2 through the balancer at `url` gets http_hello's answer, and the
// harness names curl's own address as the connection's remote; then the harness stops.
void ExpectClientSeenThrough(Harness& h, const std::string& url, bool insecure = false) {
  const CurlResult got = Curl(url, insecure);
  EXPECT_THAT(got.body, HasSubstr("Hello"));
  ASSERT_TRUE(absl::StartsWith(got.client, "127.0.0.2:")) << got.client;
  ExpectRemote(h, got.client);
  StopAndExpectExit0(*h.process);
}

// HAProxy in mode tcp on a free port, from a generated config in `dir`: `defaults` adds
// to the timeouts, `backend` is the backend's lines (its servers).
std::unique_ptr<Subprocess> StartHaproxy(const std::string& haproxy, const std::string& dir,
                                         absl::string_view defaults, absl::string_view backend,
                                         uint16_t* port) {
  return StartBalancer(
      [&](uint16_t p) {
        const std::string config = absl::StrCat(dir, "/haproxy-", p, ".cfg");
        EXPECT_TRUE(WriteFileAt(
            config, absl::StrCat("defaults\n  mode tcp\n  timeout connect 5s\n"
                                 "  timeout client 30s\n  timeout server 30s\n", defaults,
                                 "frontend fe\n  bind 127.0.0.1:", p,
                                 "\n  default_backend be\nbackend be\n", backend)));
        return std::vector<std::string>{haproxy, "-db", "-f", config};
      },
      port);
}

TEST(HarnessProxyProtocolTest, HaproxySendProxyV2) {
  const std::string haproxy = MustFind("haproxy", "haproxy");
  ASSERT_FALSE(haproxy.empty());
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--handler=http_hello", "--log=debug",
                                        "--proxy_protocol=v2", "--proxy_trusted=127.0.0.1/32"},
                                       &h));
  const std::string dir = TempDir("haproxy");
  uint16_t port = 0;
  std::unique_ptr<Subprocess> balancer = StartHaproxy(
      haproxy, dir, "",
      absl::StrCat("  server islet 127.0.0.1:", h.port, " send-proxy-v2 proxy-v2-options crc32c\n"),
      &port);
  ASSERT_NE(balancer, nullptr);
  ExpectClientSeenThrough(h, absl::StrCat("http://127.0.0.1:", port, "/"));
}

TEST(HarnessProxyProtocolTest, HaproxyTlsPassthroughWithSendProxyV2Ssl) {
  const std::string haproxy = MustFind("haproxy", "haproxy");
  ASSERT_FALSE(haproxy.empty());
  const TestCertificateAuthority ca = TestCertificateAuthority::Create();
  const TestCertificate server = ca.IssueServer("localhost");
  const std::string cert = WriteTestFile("server.pem", server.chain_pem() + server.key_pem);
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--port=0", "--handler=http_hello", "--log=debug", "--transport=tls",
       absl::StrCat("--certfile=", cert), "--proxy_protocol=v2",
       "--proxy_trusted=127.0.0.1/32"},
      &h));
  const std::string dir = TempDir("haproxy-tls");
  uint16_t port = 0;
  // mode tcp: the TLS stream passes through untouched, after the v2 header (with an
  // SSL TLV saying the client did not use TLS to HAProxy, and a CRC32C).
  std::unique_ptr<Subprocess> balancer = StartHaproxy(
      haproxy, dir, "",
      absl::StrCat("  server islet 127.0.0.1:", h.port,
                   " send-proxy-v2-ssl proxy-v2-options crc32c\n"),
      &port);
  ASSERT_NE(balancer, nullptr);
  ExpectClientSeenThrough(h, absl::StrCat("https://127.0.0.1:", port, "/"), /*insecure=*/true);
}

TEST(HarnessProxyProtocolTest, NginxStreamProxyProtocolV1) {
  const std::string nginx = MustFind("nginx", "nginx libnginx-mod-stream");
  ASSERT_FALSE(nginx.empty());
  const std::string module = "/usr/lib/nginx/modules/ngx_stream_module.so";
  ASSERT_EQ(::access(module.c_str(), R_OK), 0)
      << module << " is missing: apt-get install libnginx-mod-stream (tools/setup.sh)";
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--handler=http_hello", "--log=debug",
                                        "--proxy_protocol=v1", "--proxy_trusted=127.0.0.1/32"},
                                       &h));
  const std::string dir = TempDir("nginx");
  uint16_t port = 0;
  // In the foreground, one process, every path in the test's directory; as root the
  // worker would otherwise switch to "nobody", who cannot read it.
  std::unique_ptr<Subprocess> balancer = StartBalancer(
      [&](uint16_t p) {
        const std::string config = absl::StrCat(dir, "/nginx-", p, ".conf");
        EXPECT_TRUE(WriteFileAt(
            config,
            absl::StrCat("load_module ", module, ";\n",
                         ::geteuid() == 0 ? "user root;\n" : "",
                         "daemon off;\nmaster_process off;\n"
                         "pid ", dir, "/nginx-", p, ".pid;\n"
                         "error_log ", dir, "/error-", p, ".log;\n"
                         "events { worker_connections 64; }\n"
                         "stream {\n  server {\n    listen 127.0.0.1:", p, ";\n"
                         "    proxy_pass 127.0.0.1:", h.port, ";\n"
                         "    proxy_protocol on;\n  }\n}\n")));
        return std::vector<std::string>{nginx, "-p", dir, "-e",
                                        absl::StrCat(dir, "/error-", p, ".log"), "-c", config};
      },
      &port);
  ASSERT_NE(balancer, nullptr);
  ExpectClientSeenThrough(h, absl::StrCat("http://127.0.0.1:", port, "/"));
}

// ---- A fleet behind HAProxy, restarted one instance at a time ----

// A unix socket path for a hand-off, short enough for sun_path.
std::string HandoffPathIn(const std::string& dir, absl::string_view name) {
  return absl::StrCat(dir, "/", name, ".sock");
}

// The flags every generation of one instance shares: PROXY v2 from the balancer,
// http_hello, its own hand-off socket, and a grace on stopping, so that a keep-alive
// request already on its way to the old process is answered (Connection: close) rather
// than met by a close.
std::vector<std::string> FleetFlags(const std::string& handoff, uint16_t port) {
  return {absl::StrCat("--port=", port), "--handler=http_hello", "--num_workers=1",
          "--shutdown_timeout=5s", "--shutdown_grace=1s", "--log=warning", "--proxy_protocol=v2",
          "--proxy_trusted=127.0.0.1/32", absl::StrCat("--handoff_socket=", handoff)};
}

// Replaces `instance` by a new process that takes its listening socket over (the
// deploy's one command), and waits for the old one to drain and exit 0.
void RollOver(Harness& instance, const std::string& handoff) {
  Harness successor;
  std::vector<std::string> flags = FleetFlags(handoff, instance.port);
  flags.push_back(absl::StrCat("--takeover=", handoff));
  ASSERT_NO_FATAL_FAILURE(StartHarness(flags, &successor));
  ASSERT_EQ(successor.port, instance.port);
  std::optional<Subprocess::Exit> exit = instance.process->Wait(kExitTimeout + absl::Seconds(5));
  ASSERT_TRUE(exit.has_value()) << "the old instance did not exit" << Describe(*instance.process);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(*instance.process);
  instance = std::move(successor);
}

TEST(HarnessFleetTest, ARollingRestartBehindHaproxyLosesNoConnectionAndNoRequest) {
  const std::string haproxy = MustFind("haproxy", "haproxy");
  ASSERT_FALSE(haproxy.empty());
  // Not TEST_TMPDIR: a unix socket's path must fit in 108 bytes.
  std::string dir = "/tmp/islet-fleet.XXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string handoff_a = HandoffPathIn(dir, "a");
  const std::string handoff_b = HandoffPathIn(dir, "b");
  Harness a;
  Harness b;
  ASSERT_NO_FATAL_FAILURE(StartHarness(FleetFlags(handoff_a, 0), &a));
  ASSERT_NO_FATAL_FAILURE(StartHarness(FleetFlags(handoff_b, 0), &b));

  // Health checks every 100 ms, which send the PROXY header too (check-send-proxy): a
  // harness that requires it would refuse a bare check. No retries: HAProxy would
  // otherwise hide a refused backend connect (a naive stop-and-start restart passes
  // with its default of 3), and the test is about the restart losing nothing itself.
  uint16_t port = 0;
  std::unique_ptr<Subprocess> balancer = StartHaproxy(
      haproxy, dir, "  balance roundrobin\n  retries 0\n",
      absl::StrCat("  default-server send-proxy-v2 check check-send-proxy inter 100ms\n"
                   "  server a 127.0.0.1:", a.port, "\n  server b 127.0.0.1:", b.port, "\n"),
      &port);
  ASSERT_NE(balancer, nullptr);

  HttpLoad load(port, /*fresh=*/2, /*kept=*/2);
  ASSERT_TRUE(load.WaitForServed(300)) << load.served() << " served" << Describe(*a.process);
  ASSERT_NO_FATAL_FAILURE(RollOver(a, handoff_a));
  ASSERT_TRUE(load.WaitForServed(load.served() + 300))
      << ::testing::PrintToString(load.failures()) << Describe(*a.process);
  ASSERT_NO_FATAL_FAILURE(RollOver(b, handoff_b));
  ASSERT_TRUE(load.WaitForServed(load.served() + 300))
      << ::testing::PrintToString(load.failures()) << Describe(*b.process);
  load.Stop();

  EXPECT_EQ(load.refused(), 0);
  EXPECT_TRUE(load.failures().empty()) << ::testing::PrintToString(load.failures());
  // With the grace, not even a keep-alive request needed sending again.
  EXPECT_EQ(load.retries(), 0);
  std::printf("rolling restart behind HAProxy: %lld requests served, %lld keep-alive retries\n",
              static_cast<long long>(load.served()), static_cast<long long>(load.retries()));
  // Both new instances served through the balancer (the round robin reached each).
  for (Harness* h : {&a, &b}) ASSERT_NO_FATAL_FAILURE(StopAndExpectExit0(*h->process));
  balancer->Kill();
  for (const char* name : {"a", "b"}) ::unlink(HandoffPathIn(dir, name).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace islet::harness
