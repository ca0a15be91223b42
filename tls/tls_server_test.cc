// The TLS transport under the real server: handshakes driven non-blocking by the
// workers' event loops (HandshakeStep and IoInterest), queued output retried after a
// blocked record (WriteSome's retry rule through the server's queue), Sendfile through
// TLS, the handshake timeout, STARTTLS through HandlerResult::SwitchTransport, records
// read ahead (input the descriptor no longer shows: the worker must ask
// HasBufferedInput), and no close_notify in reply to the client's.
#include <sys/socket.h>

#include <any>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "testing/test_certs.h"
#include "testing/tls_test_util.h"
#include "tls/tls_transport.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

struct Pki {
  TestCertificateAuthority ca = TestCertificateAuthority::Create();
  TestCertificate server = ca.IssueServer("server.test");
  TestCertificate client = ca.IssueClient("alice");
};

const Pki& pki() {
  static const Pki* const p = new Pki;
  return *p;
}

TlsOptions ServerTlsOptions() {
  TlsOptions options;
  options.credentials = TlsCredentials::FromPem(pki().server.chain_pem(), pki().server.key_pem);
  options.alpn_protocols = {"echo/1"};
  options.client_certificate = ClientCertificateMode::kOptional;
  options.client_ca_pem = pki().ca.cert_pem();
  return options;
}

TlsClientOptions ClientOptions() {
  TlsClientOptions options;
  options.ca_pem = pki().ca.cert_pem();
  options.verify_host = "localhost";
  options.alpn = {"echo/1"};
  return options;
}

// Echoes; its first reply line describes the connection when the client asks "info".
class EchoHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "info") {
      absl::StatusOr<ConnectionInformation> info = conn.GetConnectionInformation();
      absl::StatusOr<std::string> alpn = conn.NegotiatedProtocol();
      std::optional<std::string> cert = conn.PeerCertificate();
      conn.Send(absl::StrCat(conn.Secure() ? "secure" : "plain", " ",
                             info.ok() ? info->protocol_version : "?", " ",
                             alpn.ok() ? *alpn : "-", " ",
                             cert ? CommonNameOfCertificate(*cert) : "nobody", "\n"))
          .IgnoreError();
      return HandlerResult::Continue();
    }
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }
};

// Plain text until "STARTTLS\r\n", then TLS (the transport comes in handler_options).
class StartTlsHandler : public Handler {
 public:
  explicit StartTlsHandler(const std::any& options)
      : tls_(std::any_cast<Transport*>(options)) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (!upgraded_) {
      line_.append(data.data(), data.size());
      if (line_ != "STARTTLS\r\n") return HandlerResult::Continue();
      upgraded_ = true;
      conn.Send("OK\r\n").IgnoreError();
      return HandlerResult::SwitchTransport(tls_);
    }
    conn.Send(absl::StrCat(conn.Secure() ? "secure:" : "plain:", data)).IgnoreError();
    return HandlerResult::Continue();
  }

 private:
  Transport* tls_;
  bool upgraded_ = false;
  std::string line_;
};

// Answers "GET\n" with the file named in handler_options, then closes.
class FileHandler : public Handler {
 public:
  explicit FileHandler(const std::any& options) : path_(std::any_cast<std::string>(options)) {}
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    absl::StatusOr<uint64_t> sent = conn.Sendfile(path_);
    if (!sent.ok()) return HandlerResult::Error(sent.status());
    return HandlerResult::Close();
  }

 private:
  std::string path_;
};

class TlsServerTest : public ::testing::Test {
 protected:
  absl::Status Start(std::shared_ptr<Transport> transport, HandlerFactory factory,
                     std::any handler_options = {},
                     absl::Duration handshake_timeout = absl::Seconds(5),
                     size_t max_pending_messages = ServerOptions().max_pending_messages,
                     int num_workers = 2, std::vector<SocketOption> socket_options = {}) {
    ServerOptions options;
    options.max_pending_messages = max_pending_messages;
    options.port = 0;
    options.transport_options.address = "127.0.0.1";
    options.transport = std::move(transport);
    options.handler_factory = std::move(factory);
    options.handler_options = std::move(handler_options);
    options.num_workers = num_workers;
    for (const SocketOption& o : socket_options) {
      options.transport_options.socket_options.push_back(o);
    }
    options.handshake_timeout = handshake_timeout;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    absl::StatusOr<SocketInfo> where = server_->ListenerInfo();
    if (!where.ok()) return where.status();
    port_ = where->port;
    return absl::OkStatus();
  }

  void TearDown() override {
    if (server_) {
      EXPECT_THAT(server_->Stop(), IsOk());
    }
  }

  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST_F(TlsServerTest, EchoesLargeStreamsForSeveralClientsAtOnce) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  std::vector<std::future<absl::Status>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::async(std::launch::async, [this, i]() -> absl::Status {
      absl::StatusOr<std::unique_ptr<TestTlsClient>> c = TestTlsClient::Connect(port_);
      if (!c.ok()) return c.status();
      if (absl::Status s = (*c)->StartTls(ClientOptions()); !s.ok()) return s;
      // Each round writes 1 MiB before reading any echo: the server must queue its
      // output (the client is not reading) and retry blocked records from its queue.
      for (int round = 0; round < 3; ++round) {
        const std::string data = RandomBytes(1 << 20, 10 * i + round);
        if (absl::Status s = (*c)->Write(data); !s.ok()) return s;
        absl::StatusOr<std::string> echo = (*c)->Read(data.size());
        if (!echo.ok()) return echo.status();
        if (*echo != data) return absl::DataLossError(absl::StrCat("echo corrupted, round ", round));
      }
      return absl::OkStatus();
    }));
  }
  for (auto& c : clients) EXPECT_THAT(c.get(), IsOk());
}

TEST_F(TlsServerTest, HandlerSeesTheConnectionInformation) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> anonymous, TestTlsClient::Connect(port_));
  ASSERT_THAT(anonymous->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(anonymous->Write("info"), IsOk());
  EXPECT_THAT(anonymous->Read(29), IsOkAndHolds(std::string("secure TLSv1.3 echo/1 nobody\n")));

  TlsClientOptions with_cert = ClientOptions();
  with_cert.cert_pem = pki().client.cert_pem;
  with_cert.key_pem = pki().client.key_pem;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> alice, TestTlsClient::Connect(port_));
  ASSERT_THAT(alice->StartTls(with_cert), IsOk());
  ASSERT_THAT(alice->Write("info"), IsOk());
  EXPECT_THAT(alice->Read(28), IsOkAndHolds(std::string("secure TLSv1.3 echo/1 alice\n")));
}

// One client write becomes many records arriving together; the worker decrypts them one
// SSL_read at a time and echoes them all, in order.
TEST_F(TlsServerTest, ManyRecordsInOneWriteAreAllDelivered) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  // 200 KiB: thirteen records, sent back to back.
  const std::string data = RandomBytes(200 * 1024, 99);
  ASSERT_THAT(c->Write(data), IsOk());
  absl::StatusOr<std::string> echo = c->Read(data.size());
  ASSERT_THAT(echo, IsOk());
  EXPECT_TRUE(*echo == data);
}

// Three records arrive in one segment, then nothing more: the TLS socket reads them all
// ahead in one recv, and the worker must go on reading what it holds although the
// descriptor stays silent (or this hangs until the client's read times out).
TEST_F(TlsServerTest, RecordsArrivingTogetherAreAllEchoed) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  for (int round = 0; round < 2; ++round) {
    c->HoldOutput();
    ASSERT_THAT(c->Write("one"), IsOk());
    ASSERT_THAT(c->Write("two"), IsOk());
    ASSERT_THAT(c->Write("three"), IsOk());
    ASSERT_THAT(c->ReleaseOutput(), IsOk());
    EXPECT_THAT(c->Read(11), IsOkAndHolds(std::string("onetwothree")));
  }
}

// The same with the records behind the client's Finished (TLS 1.3): they are read ahead
// by the handshake, and HandleConnection must not be the last thing that happens.
TEST_F(TlsServerTest, RecordsArrivingWithTheClientsFinishedAreAllEchoed) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  TlsClientOptions options = ClientOptions();
  options.min_version = TLS1_3_VERSION;
  options.hold_final_flight = true;
  ASSERT_THAT(c->StartTls(options), IsOk());
  ASSERT_THAT(c->Write("one"), IsOk());
  ASSERT_THAT(c->Write("two"), IsOk());
  ASSERT_THAT(c->ReleaseOutput(), IsOk());
  EXPECT_THAT(c->Read(6), IsOkAndHolds(std::string("onetwo")));
}

// The client's close_notify is answered with the server's before the TCP close, as
// TLS 1.2 and 1.3 require: the client reads a clean end, not a truncation.
TEST_F(TlsServerTest, CloseNotifyIsAnsweredBeforeTheClose) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(c->Write("ping"), IsOk());
  EXPECT_THAT(c->Read(4), IsOkAndHolds(std::string("ping")));
  ASSERT_THAT(c->ShutdownTls(), IsOk());
  EXPECT_THAT(c->ReadToEnd(), IsOkAndHolds(std::string()));
}

TEST_F(TlsServerTest, StalledHandshakeIsClosedAtTheHandshakeTimeout) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>(), {}, absl::Milliseconds(300)), IsOk());
  for (absl::string_view sent : {absl::string_view(), absl::string_view("\x16\x03\x01", 3)}) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
    ASSERT_THAT(raw->WritePlain(sent), IsOk());
    const absl::Time start = absl::Now();
    char byte;
    const ssize_t n = ::recv(raw->fd(), &byte, 1, 0);  // SO_RCVTIMEO bounds it
    const absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << "n=" << n << " errno=" << errno;
    EXPECT_GE(took, absl::Milliseconds(200));
    EXPECT_LT(took, absl::Seconds(10));
  }
}

// A flood of handshakes that never finish fills the cap before the workers' next look
// at the pressure: the handshakes already running are re-timed, and shed at the floor
// long before their minute-long handshake_timeout.
TEST(TlsOverloadTest, StalledHandshakesAtTheCapAreShedLongBeforeTheirTimeout) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ServerOptions options;
  options.port = 0;
  options.transport_options.address = "127.0.0.1";
  options.transport = tls;
  options.handler_factory = HandlerFactoryOf<EchoHandler>();
  options.num_workers = 1;
  options.handshake_timeout = absl::Seconds(60);
  options.max_connections = 3;
  options.overload_scale_from = 0.5;
  options.overload_timeout_floor = absl::Milliseconds(200);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Server> server, Server::Start(std::move(options)));
  const uint16_t port = server->ListenerInfo()->port;

  std::vector<std::unique_ptr<TestTlsClient>> stalled;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port));
    ASSERT_THAT(raw->WritePlain(absl::string_view("\x16\x03\x01", 3)), IsOk());
    stalled.push_back(std::move(raw));
  }
  for (auto& raw : stalled) {
    char byte;
    const ssize_t n = ::recv(raw->fd(), &byte, 1, 0);  // SO_RCVTIMEO (20 s) bounds it
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << "n=" << n << " errno=" << errno;
  }
  EXPECT_THAT(server->Stop(), IsOk());
}

TEST_F(TlsServerTest, GarbageIsClosedAtOnce) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<EchoHandler>(), {}, absl::Seconds(30)), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> raw, TestTlsClient::Connect(port_));
  ASSERT_THAT(raw->WritePlain("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), IsOk());
  const absl::Time start = absl::Now();
  char buf[64];
  ssize_t n;
  while ((n = ::recv(raw->fd(), buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "errno=" << errno;
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(TlsServerTest, StartTlsThroughSwitchTransport) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  // A plain server (nullptr transport = TCP) whose handler switches to TLS.
  ASSERT_THAT(Start(nullptr, HandlerFactoryOf<StartTlsHandler>(),
                    std::any(static_cast<Transport*>(tls.get()))),
              IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->WritePlain("STARTTLS\r\n"), IsOk());
  EXPECT_THAT(c->ReadPlainLine(), IsOkAndHolds(std::string("OK\r\n")));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(c->Write("hello"), IsOk());
  EXPECT_THAT(c->Read(12), IsOkAndHolds(std::string("secure:hello")));
  ASSERT_THAT(c->Write("again"), IsOk());
  EXPECT_THAT(c->Read(12), IsOkAndHolds(std::string("secure:again")));
}

// Plain text: "STARTTLS\r\n" is answered with a big banner, then TLS; "ping" gets "pong".
class BigBannerStartTlsHandler : public Handler {
 public:
  static constexpr size_t kBanner = 2 << 20;
  explicit BigBannerStartTlsHandler(const std::any& options)
      : tls_(std::any_cast<Transport*>(options)) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (conn.Secure()) {
      conn.Send(absl::StrCat("secure:", data)).IgnoreError();
      return HandlerResult::Continue();
    }
    if (data == "ping") {
      conn.Send("pong").IgnoreError();
      return HandlerResult::Continue();
    }
    if (data != "STARTTLS\r\n") return HandlerResult::Continue();
    conn.Send(std::string(kBanner, 'b')).IgnoreError();
    conn.Send("OK\r\n").IgnoreError();
    return HandlerResult::SwitchTransport(tls_);
  }

 private:
  Transport* tls_;
};

// The clear-text output queued before a SwitchTransport drains as all output does, on
// writability, never by waiting on the worker: while a client that asked for STARTTLS
// reads nothing of a big banner, another connection of the same worker is served; the
// first then reads the banner and the switch goes on. Before, the switch flushed with
// a blocking wait of up to send_timeout (30 s) on the worker, stalling the other.
TEST_F(TlsServerTest, SwitchTransportDoesNotBlockTheWorker) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(nullptr, HandlerFactoryOf<BigBannerStartTlsHandler>(),
                    std::any(static_cast<Transport*>(tls.get())), absl::Seconds(20),
                    ServerOptions().max_pending_messages, /*num_workers=*/1,
                    // A small kernel buffer: most of the banner stays in our queue.
                    {SocketOption::SendBuffer(16 << 10)}),
              IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> slow, TestTlsClient::Connect(port_));
  ASSERT_THAT(slow->WritePlain("STARTTLS\r\n"), IsOk());

  // Served while the banner waits for the slow client (same worker, one loop).
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> other, TestTlsClient::Connect(port_));
  ASSERT_THAT(other->WritePlain("ping"), IsOk());
  std::string pong(4, '\0');
  ASSERT_EQ(::recv(other->fd(), pong.data(), pong.size(), MSG_WAITALL), 4) << errno;
  EXPECT_EQ(pong, "pong");

  // Now the slow client reads the banner, and the switch completes.
  std::string banner(BigBannerStartTlsHandler::kBanner + 4, '\0');
  size_t got = 0;
  while (got < banner.size()) {
    const ssize_t n = ::recv(slow->fd(), banner.data() + got, banner.size() - got, 0);
    ASSERT_GT(n, 0) << "errno " << errno << " after " << got << " bytes";
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(banner.substr(banner.size() - 4), "OK\r\n");
  EXPECT_EQ(banner.find_first_not_of('b'), BigBannerStartTlsHandler::kBanner);
  ASSERT_THAT(slow->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(slow->Write("hello"), IsOk());
  EXPECT_THAT(slow->Read(12), IsOkAndHolds(std::string("secure:hello")));
}

// Plain text: "STARTTLS\r\n" is answered with a big banner, a drain mark of 0, then
// TLS; HandleDrained says "drained", over TLS.
class DrainedAcrossStartTlsHandler : public Handler {
 public:
  explicit DrainedAcrossStartTlsHandler(const std::any& options)
      : tls_(std::any_cast<Transport*>(options)) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data != "STARTTLS\r\n") return HandlerResult::Continue();
    conn.Send(std::string(BigBannerStartTlsHandler::kBanner, 'b')).IgnoreError();
    conn.Send("OK\r\n").IgnoreError();
    conn.NotifyWhenDrained(0);
    return HandlerResult::SwitchTransport(tls_);
  }
  HandlerResult HandleDrained(Connection& conn) override {
    conn.Send(conn.Secure() ? "drained" : "plain!!").IgnoreError();
    return HandlerResult::Continue();
  }

 private:
  Transport* tls_;
};

// The banner drains while the switch waits for it, before the TLS handshake: the
// handler still hears it, once the switch is done. Before, the notice was dropped.
TEST_F(TlsServerTest, ADrainMarkReachedDuringASwitchIsDeliveredAfterIt) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(nullptr, HandlerFactoryOf<DrainedAcrossStartTlsHandler>(),
                    std::any(static_cast<Transport*>(tls.get())), absl::Seconds(20),
                    ServerOptions().max_pending_messages, /*num_workers=*/1,
                    {SocketOption::SendBuffer(16 << 10)}),
              IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->WritePlain("STARTTLS\r\n"), IsOk());
  std::string banner(BigBannerStartTlsHandler::kBanner + 4, '\0');
  size_t got = 0;
  while (got < banner.size()) {
    const ssize_t n = ::recv(c->fd(), banner.data() + got, banner.size() - got, 0);
    ASSERT_GT(n, 0) << "errno " << errno << " after " << got << " bytes";
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(banner.substr(banner.size() - 4), "OK\r\n");
  // Not part of what is asserted: a pause, so that the drain is seen while the server
  // waits for the ClientHello, where it used to be lost (a prompt client could finish
  // the handshake first).
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  EXPECT_THAT(c->Read(7), IsOkAndHolds(std::string("drained")));
}

TEST_F(TlsServerTest, SendfileThroughTheServerQueue) {
  const std::string contents = RandomBytes(5 * 1024 * 1024 + 333, 5);
  const std::string path = WriteTestFile("served.bin", contents);
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<FileHandler>(), std::any(path)), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(port_));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(c->Write("GET\n"), IsOk());
  // Read slowly at first, so the server's sendfile blocks mid-record and retries.
  absl::SleepFor(absl::Milliseconds(100));
  absl::StatusOr<std::string> got = c->ReadToEnd();  // ends with close_notify
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->size(), contents.size());
  EXPECT_TRUE(*got == contents) << "file corrupted";
}

// Replies to a posted message with its text; says "hello" when the connection is ready.
class GreeterHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    conn.Send("hello\n").IgnoreError();
    return HandlerResult::Continue();
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    conn.Send(std::any_cast<std::string>(message)).IgnoreError();
    return HandlerResult::Continue();
  }
};

// A message posted while the handshake is still running is kept, and delivered after
// HandleConnection once the connection is ready (not dropped).
TEST_F(TlsServerTest, MessagePostedDuringTheHandshakeArrivesAfterHandleConnection) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<GreeterHandler>()), IsOk());
  // Connected, but no ClientHello yet: the server side sits in its handshake.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> client, TestTlsClient::Connect(port_));
  std::vector<ConnectionSummary> live;
  const absl::Time deadline = absl::Now() + kTestWait;
  while ((live = server_->Connections()).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_EQ(live.size(), 1u);
  ASSERT_THAT(live[0].handle.Post(std::string("early\n")), IsOk());
  ASSERT_THAT(client->StartTls(ClientOptions()), IsOk());
  EXPECT_THAT(client->Read(12), IsOkAndHolds(std::string("hello\nearly\n")));
}

// What is kept during a handshake counts against max_pending_messages: a client that
// never finishes its handshake cannot make the server hoard messages for it. Before
// the bound, every one was kept.
TEST_F(TlsServerTest, MessagesKeptDuringTheHandshakeAreBounded) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  ASSERT_THAT(Start(tls, HandlerFactoryOf<GreeterHandler>(), {}, absl::Seconds(20),
                    /*max_pending_messages=*/3),
              IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> client, TestTlsClient::Connect(port_));
  std::vector<ConnectionSummary> live;
  const absl::Time deadline = absl::Now() + kTestWait;
  while ((live = server_->Connections()).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  ASSERT_EQ(live.size(), 1u);
  for (const char* m : {"a\n", "b\n", "c\n"}) {
    ASSERT_THAT(live[0].handle.Post(std::string(m)), IsOk()) << m;
  }
  // The posts are queued to the worker at once, and kept there by the handshake.
  EXPECT_THAT(live[0].handle.Post(std::string("d\n")),
              StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_THAT(client->StartTls(ClientOptions()), IsOk());
  EXPECT_THAT(client->Read(12), IsOkAndHolds(std::string("hello\na\nb\nc\n")));
}

// "go": writes straight to the socket until the kernel stays full (the last record
// stays pending in the TLS socket, outside the connection's queue), then shuts the write
// side down: close_notify has no room and waits for writability (kSending). It then
// waits, inside the callback, until the test has made room, and closes: the close's own
// shutdown step sends close_notify, and the lingering close begins. "ping": "pong".
class StalledShutdownHandler : public Handler {
 public:
  static absl::Notification* shut;
  static absl::Notification* drained;

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "ping") {
      conn.Send("pong").IgnoreError();
      return HandlerResult::Continue();
    }
    const std::string chunk(16 << 10, 's');
    const absl::string_view view = chunk;
    // Until nothing more is taken: the peer's receive window may still open a little
    // after a refusal, and on io_uring the loop's staged bytes reach the kernel only
    // while the socket waits for room (WaitWritable). (Every retry carries the same
    // bytes, as a pending record needs.)
    for (int settled = 0, i = 0; settled < 3 && i < 100000; ++i) {
      if (conn.socket().WriteSome(absl::MakeConstSpan(&view, 1)).ok()) {
        settled = 0;
        continue;
      }
      if (conn.socket().WaitWritable(MonotonicNow() + absl::Milliseconds(20), "test").ok()) {
        continue;
      }
      ++settled;
    }
    if (!conn.Shutdown(ShutdownWay::kWrite).ok()) return HandlerResult::Continue();
    shut->Notify();
    drained->WaitForNotificationWithTimeout(kTestWait);
    return HandlerResult::Close();
  }
};
absl::Notification* StalledShutdownHandler::shut = nullptr;
absl::Notification* StalledShutdownHandler::drained = nullptr;

// A connection closes while its close_notify waits for room (a write shutdown the
// handler asked for), and the close finds room: it lingers, and its worker goes on
// serving. Before, the write shutdown's deadline (send_timeout) stayed set through the
// lingering close, whose timer ignored it: once it passed, the timer re-armed for it at
// once, inside the same run of due timers, forever: the worker hung.
TEST_F(TlsServerTest, LingeringAfterAStalledWriteShutdownDoesNotHangTheWorker) {
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<TlsTransport> tls, TlsTransport::Create(ServerTlsOptions()));
  absl::Notification shut, drained;
  StalledShutdownHandler::shut = &shut;
  StalledShutdownHandler::drained = &drained;
  ServerOptions options;
  options.port = 0;
  options.transport_options.address = "127.0.0.1";
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  options.transport = tls;
  options.handler_factory = HandlerFactoryOf<StalledShutdownHandler>();
  options.num_workers = 1;
  options.send_timeout = absl::Milliseconds(300);
  options.linger_timeout = kTestWait;
  ASSERT_OK_AND_ASSIGN(server_, Server::Start(std::move(options)));
  ASSERT_OK_AND_ASSIGN(SocketInfo where, server_->ListenerInfo());

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> c, TestTlsClient::Connect(where.port));
  ASSERT_THAT(c->StartTls(ClientOptions()), IsOk());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestTlsClient> other, TestTlsClient::Connect(where.port));
  ASSERT_THAT(other->StartTls(ClientOptions()), IsOk());
  ASSERT_THAT(c->Write("go"), IsOk());
  ASSERT_TRUE(shut.WaitForNotificationWithTimeout(kTestWait));
  char buf[1 << 16];
  for (;;) {  // the raw ciphertext: this client's TLS is not used again
    absl::SleepFor(absl::Milliseconds(20));
    if (::recv(c->fd(), buf, sizeof(buf), MSG_DONTWAIT) <= 0) break;
    while (::recv(c->fd(), buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
  }
  drained.Notify();

  // Past the write shutdown's deadline, the worker still serves its other connection,
  // and the first one still lingers (the client has not closed).
  absl::SleepFor(absl::Seconds(1));
  ASSERT_THAT(other->Write("ping"), IsOk());
  EXPECT_THAT(other->Read(4), IsOkAndHolds(std::string("pong")));
  EXPECT_EQ(server_->active_connections(), 2);

  c->CloseTcp();  // the lingering close ends at our end of stream
  const absl::Time deadline = absl::Now() + kTestWait;
  while (server_->active_connections() > 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(server_->active_connections(), 1);
  if (server_->active_connections() == 2) {
    // The worker is stuck: Stop could never return.
    server_.release();  // NOLINT: leaked on purpose so the test can end
  }
}

}  // namespace
}  // namespace islet
