// Socket activation as systemd does it: a listening socket at descriptor 3 and
// LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES naming it. Each case runs in a forked child,
// whose descriptor table and environment are its own to rearrange.
#include "server/inherited_listeners.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::kWait;

// Runs `body` in a forked child and returns what it returned: "" when every check in it
// held, otherwise what failed. The child's pipe descriptors are moved out of the way
// first, so that the body may put what it likes at descriptor 3.
std::string InChild(const std::function<std::string()>& body) {
  std::unique_ptr<ChildProcess> child = ChildProcess::Fork([&body](int to_parent, int) {
    const int out = ::fcntl(to_parent, F_DUPFD_CLOEXEC, 100);
    ::close(to_parent);
    const std::string result = body();
    const uint32_t size = static_cast<uint32_t>(result.size());
    WriteAll(out, &size, sizeof(size));
    WriteAll(out, result.data(), result.size());
    return 0;
  });
  if (child == nullptr) return "fork failed";
  uint32_t size = 0;
  if (!child->Read(&size, sizeof(size), kWait)) return "no answer from the child";
  std::string result(size, '\0');
  if (!child->Read(result.data(), size, kWait)) return "a short answer from the child";
  child->Wait(kWait);
  return result;
}

// A listening socket on 127.0.0.1 (a free port), moved to descriptor `at`; its port.
uint16_t ListenAt(int at) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    return 0;
  }
  socklen_t length = sizeof(addr);
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length);
  if (fd.get() == at) {
    fd.release();  // already where it belongs
  } else if (::dup2(fd.get(), at) != at) {
    return 0;
  }
  return ntohs(addr.sin_port);
}

void SetSystemdVariables(const std::string& count, pid_t pid, const char* names) {
  ::setenv("LISTEN_FDS", count.c_str(), 1);
  ::setenv("LISTEN_PID", std::to_string(pid).c_str(), 1);
  if (names != nullptr) ::setenv("LISTEN_FDNAMES", names, 1);
}

bool VariablesGone() {
  return std::getenv("LISTEN_FDS") == nullptr && std::getenv("LISTEN_PID") == nullptr &&
         std::getenv("LISTEN_FDNAMES") == nullptr;
}

TEST(InheritedListenersTest, AServerServesOnTheSocketPassedAtDescriptorThree) {
  EXPECT_EQ(InChild([]() -> std::string {
              const uint16_t port = ListenAt(3);
              if (port == 0) return "could not listen at descriptor 3";
              SetSystemdVariables("1", ::getpid(), "web");
              absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
              if (!inherited.ok()) return std::string(inherited.status().message());
              if (!VariablesGone()) return "the variables are still set";
              if (inherited->size() != 1) return absl::StrCat(inherited->size(), " sockets");
              const InheritedListener& web = (*inherited)[0];
              if (web.name != "web") return "name " + web.name;
              if (web.fd.get() != 3) return absl::StrCat("descriptor ", web.fd.get());
              if ((::fcntl(3, F_GETFD) & FD_CLOEXEC) == 0) return "not close-on-exec";
              if (web.local.ToString() != absl::StrCat("127.0.0.1:", port)) {
                return "bound to " + web.local.ToString();
              }
              ServerOptions options = testutil::LoopbackOptions(
                  HandlerFactoryOf<testutil::EchoHandler>());
              options.port = port;
              if (absl::Status match = CheckListenersMatch({web.local}, options); !match.ok()) {
                return std::string(match.message());
              }
              options.listen_fds = {web.fd.get()};
              absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
              if (!server.ok()) return std::string(server.status().message());
              if ((*server)->ListenerInfo()->port != port) return "ListenerInfo: another port";
              absl::StatusOr<std::unique_ptr<TcpSocket>> client =
                  TcpSocket::Connect(web.local, kWait);
              if (!client.ok()) return std::string(client.status().message());
              if (!(*client)->Send("ping").ok()) return "send failed";
              absl::StatusOr<std::string> echo = (*client)->Recv(4, kWait);
              if (!echo.ok() || *echo != "ping") return "no echo";
              (*server)->Stop().IgnoreError();
              // Stop let go of its descriptor without shutting the socket down: the copy
              // still at descriptor 3 (systemd's, in real life) listens on.
              UniqueFd after = testutil::RawConnect(port);
              if (!after) return absl::StrCat("refused after Stop: errno ", errno);
              return "";
            }),
            "");
}

TEST(InheritedListenersTest, VariablesForAnotherProcessAreIgnoredAndRemoved) {
  EXPECT_EQ(InChild([]() -> std::string {
              if (ListenAt(3) == 0) return "could not listen at descriptor 3";
              SetSystemdVariables("1", ::getppid(), nullptr);
              absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
              if (!inherited.ok()) return std::string(inherited.status().message());
              if (!inherited->empty()) return "took a socket meant for another process";
              if (!VariablesGone()) return "the variables are still set";
              // Not ours, so not touched: still open, still inheritable.
              const int flags = ::fcntl(3, F_GETFD);
              if (flags < 0) return "descriptor 3 was closed";
              if ((flags & FD_CLOEXEC) != 0) return "descriptor 3 was changed";
              return "";
            }),
            "");
}

TEST(InheritedListenersTest, NoVariablesNoSockets) {
  EXPECT_EQ(InChild([]() -> std::string {
              ::unsetenv("LISTEN_FDS");
              ::unsetenv("LISTEN_PID");
              absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
              if (!inherited.ok()) return std::string(inherited.status().message());
              return inherited->empty() ? "" : "sockets out of nowhere";
            }),
            "");
}

TEST(InheritedListenersTest, ADescriptorThatIsNotASocketIsRefusedByNumberAndName) {
  EXPECT_EQ(InChild([]() -> std::string {
              int fds[2];
              if (::pipe(fds) != 0 || ::dup2(fds[0], 3) != 3) return "no pipe at 3";
              SetSystemdVariables("1", ::getpid(), "web");
              absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
              if (inherited.ok()) return "a pipe was taken as a listening socket";
              if (!absl::IsInvalidArgument(inherited.status())) {
                return absl::StrCat("code ", inherited.status().ToString());
              }
              const std::string message(inherited.status().message());
              if (message.find("descriptor 3 is not a socket") == std::string::npos ||
                  message.find("\"web\"") == std::string::npos) {
                return "unclear: " + message;
              }
              return VariablesGone() ? "" : "the variables are still set";
            }),
            "");
}

TEST(InheritedListenersTest, ASocketThatDoesNotListenIsRefused) {
  EXPECT_EQ(InChild([]() -> std::string {
              const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
              if (fd != 3 && ::dup2(fd, 3) != 3) return "no socket at 3";
              SetSystemdVariables("1", ::getpid(), nullptr);
              absl::StatusOr<std::vector<InheritedListener>> inherited = TakeInheritedListeners();
              if (inherited.ok()) return "an idle socket was taken as a listening one";
              const std::string message(inherited.status().message());
              return message.find("not listening") != std::string::npos ? "" : message;
            }),
            "");
}

TEST(InheritedListenersTest, BadVariablesAreRefused) {
  EXPECT_EQ(InChild([]() -> std::string {
              if (ListenAt(3) == 0) return "could not listen at descriptor 3";
              SetSystemdVariables("one", ::getpid(), nullptr);
              absl::StatusOr<std::vector<InheritedListener>> bad_count = TakeInheritedListeners();
              if (bad_count.ok() ||
                  std::string(bad_count.status().message()).find("LISTEN_FDS") == std::string::npos) {
                return "LISTEN_FDS=one: " + bad_count.status().ToString();
              }
              if (ListenAt(3) == 0) return "could not listen at descriptor 3 again";
              SetSystemdVariables("1", ::getpid(), "web:metrics");
              absl::StatusOr<std::vector<InheritedListener>> bad_names = TakeInheritedListeners();
              if (bad_names.ok() || std::string(bad_names.status().message()).find(
                                        "LISTEN_FDNAMES") == std::string::npos) {
                return "two names for one socket: " + bad_names.status().ToString();
              }
              return "";
            }),
            "");
}

SocketInfo Ip(const std::string& address, uint16_t port) {
  return {.family = address.find(':') == std::string::npos ? AddressFamily::kIpv4
                                                           : AddressFamily::kIpv6,
          .address = address,
          .port = port};
}

TEST(CheckListenersMatchTest, AcceptsWhatTheOptionsAskFor) {
  ServerOptions options;
  options.port = 4000;
  options.transport_options.address = "127.0.0.1";
  EXPECT_THAT(CheckListenersMatch({Ip("127.0.0.1", 4000)}, options), IsOk());
  options.port = 0;  // any port
  EXPECT_THAT(CheckListenersMatch({Ip("127.0.0.1", 4321)}, options), IsOk());
  options.transport_options.address = "0::1";
  EXPECT_THAT(CheckListenersMatch({Ip("::1", 4321)}, options), IsOk());
  options.transport_options.address = "";
  EXPECT_THAT(CheckListenersMatch({Ip("0.0.0.0", 4321)}, options), IsOk());
  options.num_listen_sockets = 2;
  options.num_acceptors = 2;
  EXPECT_THAT(CheckListenersMatch({Ip("0.0.0.0", 80), Ip("0.0.0.0", 80)}, options), IsOk());
  ServerOptions unix_options;
  unix_options.transport_options.unix_path = "/run/app.sock";
  EXPECT_THAT(CheckListenersMatch(
                  {{.family = AddressFamily::kUnix, .address = "/run/app.sock", .port = 0}},
                  unix_options),
              IsOk());
}

TEST(CheckListenersMatchTest, SaysWhatDiffers) {
  ServerOptions options;
  options.port = 4000;
  options.transport_options.address = "127.0.0.1";
  EXPECT_THAT(CheckListenersMatch({Ip("127.0.0.1", 4001)}, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "socket 1 is bound to 127.0.0.1:4001, but the server is asked for port 4000"));
  EXPECT_THAT(CheckListenersMatch({Ip("0.0.0.0", 4000)}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, "asked for address 127.0.0.1"));
  EXPECT_THAT(CheckListenersMatch({Ip("::1", 4000)}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, "asked for address 127.0.0.1"));
  EXPECT_THAT(CheckListenersMatch({Ip("127.0.0.1", 4000), Ip("127.0.0.1", 4000)}, options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "2 listening sockets given, but the server is asked for 1"));
  options.transport_options.unix_path = "/run/app.sock";
  EXPECT_THAT(CheckListenersMatch({Ip("127.0.0.1", 4000)}, options),
              StatusIs(absl::StatusCode::kInvalidArgument, "asked for the unix socket /run/app.sock"));
}

}  // namespace
}  // namespace islet
