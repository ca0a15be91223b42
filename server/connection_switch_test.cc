// A connection that ends while a SwitchTransport waits for its clear-text output
// (kSwitching): the switch is abandoned, never carried out after the final callback.
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using testutil::kWait;
using testutil::WaitFor;

// Counts upgrades and refuses them.
class CountingTransport : public Transport {
 public:
  absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t, const ListenOptions&) override {
    return absl::UnimplementedError("counting transport: listen");
  }
  bool Secure() const override { return false; }
  absl::string_view Name() const override { return "counting"; }
  absl::StatusOr<std::unique_ptr<Socket>> Upgrade(std::unique_ptr<Socket> socket) override {
    upgrades.fetch_add(1);
    return absl::UnimplementedError("counting transport: upgrade");
  }
  std::atomic<int> upgrades{0};
};

// "switch": fills the kernel's buffers until a little output stays queued, then
// switches to `transport`. "hold": holds the worker until the test releases it.
class SwitchHandler : public Handler {
 public:
  static CountingTransport* transport;
  static ConnectionHandle* handle;
  static std::atomic<size_t> in_kernel;  // bytes sent that the kernel took
  static absl::Notification* switching;
  static absl::Notification* holding;
  static absl::Notification* release;
  static std::atomic<int> closes;

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "hold") {
      holding->Notify();
      release->WaitForNotificationWithTimeout(kWait);
      return HandlerResult::Continue();
    }
    if (data != "switch") return HandlerResult::Continue();
    const std::string chunk(1024, 'b');
    size_t sent = 0;
    // Well past the socket's buffers and what the loop stages (io_uring), so the switch
    // waits for the peer; `in_kernel` counts the staged bytes, which the kernel takes on
    // the loop's next turn (they fit in its buffers).
    while (conn.queued_bytes() < (32u << 10) && sent < (64u << 20)) {
      if (!conn.Send(chunk).ok()) return HandlerResult::Close();
      sent += chunk.size();
    }
    in_kernel = sent - conn.queued_bytes();
    *handle = conn.handle();
    switching->Notify();
    return HandlerResult::SwitchTransport(transport);
  }
  void HandleClose(Connection&) override { closes.fetch_add(1); }
};
CountingTransport* SwitchHandler::transport = nullptr;
ConnectionHandle* SwitchHandler::handle = nullptr;
std::atomic<size_t> SwitchHandler::in_kernel{0};
absl::Notification* SwitchHandler::switching = nullptr;
absl::Notification* SwitchHandler::holding = nullptr;
absl::Notification* SwitchHandler::release = nullptr;
std::atomic<int> SwitchHandler::closes{0};

// A handle closes the connection while its switch waits for the peer to take the
// clear-text output, and the close's own flush sends the rest: the connection closes
// (HandleClose, then an orderly end) without upgrading. Before, the flush inside Close
// found the queue drained in kSwitching and ran the upgrade after HandleClose.
TEST(ConnectionSwitchTest, CloseWhileSwitchingAbandonsTheSwitch) {
  CountingTransport transport;
  ConnectionHandle handle;
  absl::Notification switching, holding, release;
  SwitchHandler::transport = &transport;
  SwitchHandler::handle = &handle;
  SwitchHandler::switching = &switching;
  SwitchHandler::holding = &holding;
  SwitchHandler::release = &release;
  SwitchHandler::closes = 0;

  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<SwitchHandler>());
  options.num_workers = 1;  // the held worker is the switching connection's
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  ASSERT_OK_AND_ASSIGN(SocketInfo where, server->ListenerInfo());

  UniqueFd slow = testutil::RawConnect(where.port, 16 << 10);
  ASSERT_TRUE(slow.valid()) << errno;
  ASSERT_EQ(::send(slow.get(), "switch", 6, 0), 6);
  ASSERT_TRUE(switching.WaitForNotificationWithTimeout(kWait));

  // Hold the worker, so that the close below and the room the client makes are seen
  // in one turn: the close's flush sends what is left.
  std::unique_ptr<TcpSocket> holder = testutil::MustConnect(*server);
  ASSERT_NE(holder, nullptr);
  ASSERT_TRUE(holder->Send("hold").ok());
  ASSERT_TRUE(holding.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(handle.Close().ok());
  std::string taken(SwitchHandler::in_kernel.load(), '\0');
  size_t got = 0;
  while (got < taken.size()) {
    const ssize_t n = ::recv(slow.get(), taken.data() + got, taken.size() - got, 0);
    ASSERT_GT(n, 0) << errno;
    got += static_cast<size_t>(n);
  }
  absl::SleepFor(absl::Milliseconds(100));  // the window update reaches the server
  release.Notify();

  // The rest of the output, then the server's end of stream.
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(slow.get(), buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_EQ(n, 0) << "errno " << errno;
  EXPECT_EQ(SwitchHandler::closes.load(), 1);
  EXPECT_EQ(transport.upgrades.load(), 0);
  slow.reset();
  holder->Close();
  EXPECT_TRUE(WaitFor([&] { return server->active_connections() == 0; }));
}

}  // namespace
}  // namespace islet
