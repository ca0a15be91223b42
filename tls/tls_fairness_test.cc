// Fairness on one worker, end to end: a peer downloading a large file as fast as it can
// does not hold the worker's loop. A small request on another connection of the same
// worker (its accept, TLS handshake and request all need turns of that loop) is answered
// after a bounded amount of the big transfer, not after all of it, because a
// connection's output moves at most a flush budget per turn (OutputQueue::Limits).
// Whether a flush would also end because the socket filled depends on how fast this
// machine's client reads; OutputQueueTest.OneFlushWritesAtMostItsBudget pins the budget
// itself, deterministically.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

constexpr uint64_t kFileSize = uint64_t{4} << 30;  // sparse: no disk, all zeros
constexpr uint64_t kHeadStart = uint64_t{32} << 20;

// "file" queues the whole file; "ping" is answered with "pong".
class DownloadHandler : public Handler {
 public:
  explicit DownloadHandler(const std::any& options)
      : path_(std::any_cast<std::string>(options)) {}
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "file") {
      absl::StatusOr<uint64_t> queued = conn.Sendfile(path_);
      return queued.ok() ? HandlerResult::Continue() : HandlerResult::Error(queued.status());
    }
    if (data == "ping") conn.Send("pong").IgnoreError();
    return HandlerResult::Continue();
  }

 private:
  std::string path_;
};

// One side of the test, plain or TLS: connect, write, read some bytes.
struct Client {
  std::function<absl::Status(absl::string_view)> write;
  std::function<absl::StatusOr<std::string>()> read_some;
};

class FairnessTest : public ::testing::TestWithParam<bool> {
 protected:
  bool tls() const { return GetParam(); }

  void SetUp() override {
    path_ = TestTempPath("sparse.bin");
    UniqueFd f(::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(f.valid());
    ASSERT_EQ(::ftruncate(f.get(), static_cast<off_t>(kFileSize)), 0);

    ServerOptions options;
    options.port = 0;
    options.transport_options.address = "127.0.0.1";
    options.handler_factory = HandlerFactoryOf<DownloadHandler>();
    options.handler_options = path_;
    options.num_workers = 1;  // both connections on one loop
    if (tls()) {
      TlsOptions tls_options;
      tls_options.credentials = TlsCredentials::FromPem(ca_.server.chain_pem(), ca_.server.key_pem);
      ASSERT_OK_AND_ASSIGN(options.transport, TlsTransport::Create(std::move(tls_options)));
    }
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(std::move(options)));
    ASSERT_OK_AND_ASSIGN(SocketInfo where, server_->ListenerInfo());
    port_ = where.port;
  }

  void TearDown() override {
    if (server_) {
      EXPECT_THAT(server_->Stop(absl::Seconds(1)), IsOk());
    }
  }

  // A connected client (handshake done for TLS).
  absl::StatusOr<Client> Connect() {
    if (tls()) {
      absl::StatusOr<std::unique_ptr<TestTlsClient>> c = TestTlsClient::Connect(port_);
      if (!c.ok()) return c.status();
      TlsClientOptions client_options;
      client_options.ca_pem = ca_.ca.cert_pem();
      client_options.verify_host = "localhost";
      if (absl::Status s = (*c)->StartTls(client_options); !s.ok()) return s;
      std::shared_ptr<TestTlsClient> shared = *std::move(c);
      return Client{[shared](absl::string_view d) { return shared->Write(d); },
                    [shared] { return shared->ReadOnce(1 << 16); }};
    }
    absl::StatusOr<std::unique_ptr<TcpSocket>> c =
        TcpSocket::Connect({.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port_},
                           kTestWait);
    if (!c.ok()) return c.status();
    std::shared_ptr<TcpSocket> shared = *std::move(c);
    return Client{[shared](absl::string_view d) { return shared->Send(d); },
                  [shared] { return shared->Recv(0, kTestWait); }};
  }

  struct Pki {
    TestCertificateAuthority ca = TestCertificateAuthority::Create();
    TestCertificate server = ca.IssueServer("localhost");
  } ca_;
  std::string path_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_P(FairnessTest, ABigDownloadDoesNotHoldUpASmallRequestOnTheSameWorker) {
  ASSERT_OK_AND_ASSIGN(Client downloader, Connect());
  ASSERT_THAT(downloader.write("file"), IsOk());
  std::atomic<uint64_t> downloaded{0};
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    // Reads as fast as it can.
    while (!stop.load() && downloaded.load() < kFileSize) {
      absl::StatusOr<std::string> got = downloader.read_some();
      if (!got.ok()) break;
      downloaded.fetch_add(got->size());
    }
  });
  const absl::Time deadline = absl::Now() + kTestWait;
  while (downloaded.load() < kHeadStart && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GE(downloaded.load(), kHeadStart) << "the download never got going";

  // The small request: the handshake, the request and the answer all need turns of
  // the loop that is busy with the download.
  const uint64_t at_request = downloaded.load();
  absl::StatusOr<Client> asker = Connect();
  absl::StatusOr<std::string> pong = absl::UnknownError("no connection");
  if (asker.ok() && asker->write("ping").ok()) pong = asker->read_some();
  const uint64_t at_answer = downloaded.load();
  stop = true;
  reader.join();
  ASSERT_THAT(pong, IsOkAndHolds(std::string("pong")));
  // A bounded amount of the download went by meanwhile: a flush budget per turn of the
  // loop, plus what the kernel's socket buffers hold. Without the budget, the loop
  // stayed in the downloader's flush for as long as its reader kept up.
  EXPECT_LT(at_answer - at_request, uint64_t{512} << 20)
      << "the download moved " << (at_answer - at_request) << " bytes before the answer";
  EXPECT_LT(at_answer, kFileSize) << "the whole file went out first";
}

INSTANTIATE_TEST_SUITE_P(Transports, FairnessTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tls" : "Tcp";
                         });

}  // namespace
}  // namespace islet
