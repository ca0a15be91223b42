// Issue 12, test d: the harness (http_hello) gets SIGTERM while 50 keep-alive
// connections have requests in flight (--shutdown_timeout=2s). Every request a
// connection had sent before the signal is answered, and every connection ends with its
// responses and then an orderly end of stream: none sees a reset.
//
// Each connection sends a request every millisecond or so (up to 32 unanswered), before
// and after the signal, until the server ends it: so requests are still arriving while
// the server drains and closes, which is what its lingering close must absorb (with
// --linger_timeout=0 the late requests make the kernel reset the connections, and this
// test fails).
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/abuse/abuse_test_util.h"
#include "tools/harness/harness_test_util.h"

namespace islet::abuse {
namespace {

using harness::Describe;
using harness::Harness;
using harness::StartHarness;
using harness::StopAndExpectExit0;

constexpr int kConnections = 50;
constexpr int kMaxUnanswered = 32;
constexpr absl::Duration kLoadBeforeSignal = absl::Milliseconds(500);

struct Client {
  UniqueFd fd;
  std::string input;       // received, not yet parsed
  int64_t sent = 0;        // requests sent
  int64_t answered = 0;    // complete responses received
  int64_t sent_before_signal = -1;
  bool ended = false;
  std::string end;         // "eof", or what went wrong
};

// Counts the complete responses at the front of `client.input` (http_hello answers
// every GET with the same framing: a head and a 12-byte body).
void ParseResponses(Client& client) {
  for (;;) {
    const size_t head_end = client.input.find("\r\n\r\n");
    if (head_end == std::string::npos) return;
    const size_t total = head_end + 4 + std::strlen("Hello world!");
    if (client.input.size() < total) return;
    ASSERT_TRUE(absl::StartsWith(client.input, "HTTP/1.1 200 OK\r\n")) << client.input;
    client.input.erase(0, total);
    ++client.answered;
  }
}

void SendRequests(Client& client, int count) {
  std::string batch;
  for (int i = 0; i < count; ++i) absl::StrAppend(&batch, kGet);
  // A few dozen bytes into an almost empty socket buffer: all of it goes at once.
  const ssize_t n = ::send(client.fd.get(), batch.data(), batch.size(), MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(batch.size())) {
    client.sent += count;
  } else if (!client.ended) {
    ADD_FAILURE() << "send: " << (n < 0 ? strerror(errno) : "short");
  }
}

// Reads what is there.
void Service(Client& client) {
  char buffer[16 << 10];
  for (;;) {
    const ssize_t n = ::recv(client.fd.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      client.input.append(buffer, static_cast<size_t>(n));
      continue;
    }
    ParseResponses(client);
    if (n == 0) {
      client.ended = true;
      client.end = "eof";
    } else if (errno != EAGAIN && errno != EINTR) {
      client.ended = true;
      client.end = strerror(errno);
    }
    return;
  }
}

TEST(SigtermDrainTest, RequestsSentBeforeTheSignalAreAnsweredAndNoConnectionIsReset) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0", "--num_workers=2",
                                        "--shutdown_timeout=2s", "--log=warning"},
                                       &server));
  std::vector<Client> clients(kConnections);
  for (Client& client : clients) {
    absl::StatusOr<UniqueFd> fd = ConnectLoopback(server.port, absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(fd.ok()) << fd.status();
    client.fd = *std::move(fd);
  }
  std::vector<pollfd> polls(kConnections);
  const absl::Time signal_at = absl::Now() + kLoadBeforeSignal;
  const absl::Time deadline = signal_at + absl::Seconds(20);
  bool signalled = false;
  for (;;) {
    const absl::Time now = absl::Now();
    if (!signalled && now >= signal_at) {
      for (Client& client : clients) client.sent_before_signal = client.sent;
      // Everything sent so far must be in the server's socket buffers before the signal
      // is. Loopback usually delivers during send, but a busy machine can leave packets
      // to ksoftirqd for a while: wait until the server has acknowledged every byte.
      const absl::Time acked_by = absl::Now() + absl::Seconds(10);
      for (Client& client : clients) {
        int unacked = 0;
        while (::ioctl(client.fd.get(), SIOCOUTQ, &unacked) == 0 && unacked > 0 &&
               absl::Now() < acked_by) {
          absl::SleepFor(absl::Milliseconds(1));
        }
        ASSERT_EQ(unacked, 0) << "the server did not take the requests in 10 s";
      }
      ASSERT_TRUE(server.process->Signal(SIGTERM));
      signalled = true;
    }
    int open = 0;
    for (Client& client : clients) {
      if (!client.ended && client.sent - client.answered < kMaxUnanswered) {
        SendRequests(client, 1);
      }
    }
    for (int i = 0; i < kConnections; ++i) {
      polls[i] = {clients[i].ended ? -1 : clients[i].fd.get(), POLLIN, 0};
      if (!clients[i].ended) ++open;
    }
    if (open == 0) break;
    ASSERT_LT(now, deadline) << open << " connections still open" << Describe(*server.process);
    ::poll(polls.data(), polls.size(), 1);
    for (int i = 0; i < kConnections; ++i) {
      if (polls[i].revents != 0) Service(clients[i]);
    }
  }

  // A reset that follows the end of stream is not seen by recv (it returns 0 once the
  // FIN came), but it leaves an error on the socket (EPIPE): the server closed with our
  // requests unread instead of draining them. A lingering server still holds its end
  // open here (until we close ours), so nothing can come after the FIN.
  for (Client& client : clients) {
    int error = 0;
    socklen_t len = sizeof(error);
    ::getsockopt(client.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0 && client.end == "eof") {
      client.end = absl::StrCat("eof, then a reset (", strerror(error), ")");
    }
  }
  int64_t before_signal = 0;
  for (int i = 0; i < kConnections; ++i) {
    const Client& client = clients[i];
    before_signal += client.sent_before_signal;
    EXPECT_EQ(client.end, "eof") << "connection " << i << " ended with " << client.end
                                 << " after " << client.answered << " of " << client.sent
                                 << " answers";
    EXPECT_GE(client.answered, client.sent_before_signal)
        << "connection " << i << ": requests sent before the signal went unanswered";
    EXPECT_TRUE(client.input.empty()) << "connection " << i << ": a partial response";
  }
  // The load was real: requests were in flight on every connection at the signal.
  EXPECT_GE(before_signal, kConnections * 10);
  clients.clear();  // our close ends the server's lingering closes
  std::optional<Subprocess::Exit> exit = server.process->Wait(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value()) << Describe(*server.process);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString() << Describe(*server.process);
}

}  // namespace
}  // namespace islet::abuse
