// ConnectionImpl: the server's Connection, and the state machine that runs it on its
// worker. Internal to the server: handlers see only Connection (server/connection.h).
// The state machine is in connection_impl.cc, the Socket API a handler calls in
// connection_socket_api.cc, the connection's side of its output in
// connection_output.cc, and the queue itself in output_queue.h.
//
//   kHandshaking --done--> kOpen --final callback, output queued--> kDraining --> kClosed
//        ^                   |  |                                                  ^
//        |    SwitchTransport|  +---- failure, timeout, nothing to flush ----------+
//        +---- kSwitching <--+  (the clear-text output drains first)
//   kDraining (or an orderly close with nothing queued) --peer still open--> kLingering
//   (half-closed, discarding input until the peer's EOF or linger_timeout) --> kClosed
//
// Every call is on the worker's loop thread (asserted in debug builds). One timer covers
// every deadline (handshake, read, send progress, drain): it is armed for the earliest,
// and re-arms when it fires early because a deadline moved later.
#ifndef ISLET_SERVER_CONNECTION_IMPL_H_
#define ISLET_SERVER_CONNECTION_IMPL_H_

#include <any>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/connection.h"
#include "server/connection_host.h"
#include "server/event_loop.h"
#include "server/handler.h"
#include "server/mailbox.h"
#include "server/output_queue.h"
#include "server/server_context.h"
#include "server/telemetry.h"
#include "transport/transport.h"

namespace islet {

// Why a connection ends: it picks the one final callback, and what connection.stop
// reports.
enum class Ending : uint8_t {
  kLocalClose,    // the handler (or a handle) closed it: HandleClose
  kPeerClose,     // the peer closed its side: HandleClose
  kTimeout,       // no data within the read timeout: HandleTimeout
  kShutdown,      // the server stops: HandleShutdown
  kError,         // a transport or server failure: HandleError, always reported
  kHandlerError,  // the handler returned Error(): HandleError, reported unless
                  // silent_terminate_on_error
};

// What happens to queued output when a connection closes (Envoy's close types).
enum class CloseType : uint8_t {
  kFlushWrite,  // queued output drains first, bounded by send_timeout (and Stop's deadline)
  kNoFlush,     // the descriptor goes now; queued output is dropped
};

class ConnectionImpl final : public Connection, private EventLoop::Watcher {
 public:
  ConnectionImpl(ConnectionHost& host, uint64_t id, std::unique_ptr<Socket> socket,
                 std::shared_ptr<AcceptorSlot> acceptor, std::unique_ptr<Handler> handler);
  ~ConnectionImpl() override;

  // ---- The worker's side ----

  // Starts the handshake; HandleConnection follows when it is done.
  void Start();
  // A message from a handle: HandleMessage now, or after the handshake.
  void Deliver(PostedMessage message);
  // Reads what the transport holds that epoll cannot see (see PostReadIfBuffered).
  void ReadBuffered() { ReadAndDispatch(); }
  // The server stops: HandleShutdown, then output drains until `deadline` at the latest.
  void BeginShutdown(absl::Duration deadline);
  // Ends the connection: the final callback for `ending` (unless one already ran), then
  // the descriptor closes as `type` says. Every way a connection ends comes here.
  void Close(Ending ending, CloseType type, absl::Status error = absl::OkStatus());
  ConnectionSummary Summary() const;
  // Its final callback has run (or is running): it is on its way out.
  bool ended() const { return ended_; }
  // An outbound connection (Connection::Open): its parent span, its connect timeout
  // (in place of handshake_timeout) and the inbox its handle was made with. Before Start.
  void MakeOutbound(uint64_t parent_span_id, absl::Duration connect_timeout,
                    std::shared_ptr<ConnectionInbox> inbox);
  // Its timeouts may have shrunk (the server's overload state changed): the timer is
  // moved earlier if a deadline now comes sooner.
  void Retime() { ArmTimer(); }
  // Its place under max_connections_per_peer, given back when it closes.
  void HoldPeerSlot(PeerLimiter::Slot slot) {
    if (slot) peer_slot_ = std::make_unique<PeerLimiter::Slot>(std::move(slot));
  }

  // ---- Connection ----
  using Connection::Recv;
  using Connection::Sendfile;
  absl::StatusOr<std::string> Recv(size_t n, std::optional<absl::Duration> timeout) override;
  absl::Status Send(absl::string_view data) override;
  absl::Status Send(absl::Span<const absl::string_view> buffers) override;
  absl::StatusOr<uint64_t> Sendfile(const std::string& path, uint64_t offset,
                                    uint64_t length) override;
  absl::Status Shutdown(ShutdownWay way) override;
  void Close() override;
  using Connection::SetDeadline;
  void SetDeadline(absl::Duration from_now, TimeoutScaling scaling) override;
  void ClearDeadline() override;
  bool stopping() const override;
  void PauseReading() override;
  void ResumeReading() override;
  void NotifyWhenDrained(size_t low_water) override;
  absl::StatusOr<TimerId> SendAfter(absl::Duration delay, std::any message) override;
  bool CancelTimer(TimerId id) override;
  absl::StatusOr<ConnectionHandle> Open(OutboundOptions options) override;
  Connection* Sibling(const ConnectionHandle& handle) override;
  absl::Status SetOptions(absl::Span<const SocketOption> options) override;
  absl::StatusOr<std::vector<SocketOption>> GetOptions(
      absl::Span<const SocketOptionName> names) override;
  absl::StatusOr<SocketInfo> LocalInfo() const override;
  absl::StatusOr<SocketInfo> PeerInfo() const override;
  std::optional<std::string> PeerCertificate() const override;
  bool Secure() const override;
  absl::StatusOr<SocketStats> GetStat() const override;
  absl::StatusOr<std::string> NegotiatedProtocol() const override;
  absl::StatusOr<ConnectionInformation> GetConnectionInformation() const override;
  absl::StatusOr<ProxyHeader> GetProxyHeader() const override;
  uint64_t id() const override { return id_; }
  uint64_t span_id() const override { return span_id_; }
  uint64_t parent_span_id() const override;
  ConnectionHandle handle() const override;
  size_t queued_bytes() const override { return out_.bytes(); }
  Socket& socket() override { return *socket_; }

 private:
  // kSwitching: a SwitchTransport waits for the output queued before it to drain.
  enum class Phase : uint8_t { kHandshaking, kOpen, kSwitching, kDraining, kLingering, kClosed };
  // A write shutdown the handler asked for: it waits for queued output, then perhaps
  // for room to send what the transport sends last (a TLS close_notify).
  enum class WriteShutdown : uint8_t { kNone, kAfterOutput, kSending };
  // Whether a callback's result came from HandleMessage (see Apply).
  enum class Source : uint8_t { kClient, kMessage, kPeerFinished };

  void OnReady(uint32_t events) override;
  void ContinueHandshake();
  // After the first handshake, for a transport that learns the peer then (the PROXY
  // protocol): the peer's address in remote_, and the connection's place under
  // max_connections_per_peer. False when that refused it (it is then closed).
  bool AdoptHandshakePeer();
  // Reads once and hands the bytes to HandleData; false when nothing was delivered.
  bool ReadAndDispatch();
  // Lets the loop receive and send for the socket, where it can (EventLoop::MakeChannel).
  void AttachChannel();
  template <typename Callback>
  void RunCallback(Callback&& callback, Source source = Source::kClient);
  void Apply(HandlerResult result, Source source);
  void SwitchTransport(Transport* transport);
  // The switch itself, once nothing is queued: Upgrade, then the new handshake.
  void Upgrade();
  void WaitForData(absl::Duration timeout);
  void RunFinalCallback(Ending ending, const absl::Status& error);
  // The last step of every ending: unregisters, closes the socket, reports
  // connection.stop and hands the connection back to the worker.
  void CloseSocket();
  // The end of an orderly close, all output sent: CloseSocket, or first a lingering
  // close when the peer has not closed its side.
  void CloseSocketOrLinger();
  // kLingering: reads and drops what arrives; closes at the peer's EOF.
  void DiscardInput();
  void PostReadIfBuffered();

  // Output.
  absl::Status FailSend(absl::Status error);
  void OnQueued();
  // Stops reading until queued output drains to its low water mark (backpressure).
  void PauseForBackpressure();
  // Nothing queued, and nothing the transport accepted is left to hand to the kernel.
  bool AllSent() const {
    return out_.empty() && (socket_ == nullptr || !socket_->HasPendingOutput());
  }
  // Neither backpressure nor the handler holds reading back.
  bool ReadingAllowed() const { return !reading_paused_ && !handler_paused_ && !peer_closed_; }
  // NotifyWhenDrained's mark reached: HandleDrained on a later turn.
  void CheckDrained();
  void RunDrained();
  // Handler timers (SendAfter).
  void FireTimer(TimerId id);
  void CancelAllTimers();
  // Over the server's output budget: sheds this connection (the error) if it holds more
  // than its share, or pauses its reading.
  absl::Status CheckOutputBudget();
  absl::Status Flush();
  absl::Status FlushBlocking(absl::Duration deadline);
  // Starts or continues the write shutdown; never blocks. The transport's error, if it
  // failed (also reported in telemetry).
  absl::Status StepShutdown();
  void OnOutputDrained();
  void ResumeReadingIfDrained();
  void SetPendingError(absl::Status error);

  // Readiness and timers.
  void UpdateInterest();
  // The earliest deadline the current phase acts on.
  absl::Duration NextDeadline() const;
  // The deadlines that shrink under overload, computed from their start each time.
  absl::Duration ReadDeadline() const;
  absl::Duration HandlerDeadline() const;
  absl::Duration HandshakeDeadline() const;
  // The end of shutdown_grace once the server stops: infinite before the stop, minus
  // infinity (at once) without a grace.
  absl::Duration GraceDeadline() const;
  // A handshake starts now: it has handshake_timeout (shrunk under overload) from here.
  void StartHandshakeClock();
  void ArmTimer();
  void OnTimer();
  // An event with this connection's fields filled in.
  TelemetryEvent NewEvent(TelemetryEventType type) const;
  void Emit(TelemetryEventType type, uint64_t bytes = 0, const absl::Status* error = nullptr,
            absl::string_view detail = {});
  void AssertInLoopThread() const { loop_.AssertInLoopThread(); }

  ConnectionHost& host_;
  EventLoop& loop_;
  const ServerOptions& options_;
  const uint64_t id_;
  const uint64_t span_id_;
  // The loop's I/O for the socket (io_uring), attached once the first handshake is done;
  // null on epoll. Declared before socket_, which points at it.
  std::unique_ptr<EventLoop::SocketChannel> channel_;
  std::unique_ptr<Socket> socket_;
  // Declared after socket_, so destroyed (unregistered) before the socket closes.
  EventLoop::Registration registration_;
  std::shared_ptr<AcceptorSlot> acceptor_;
  std::unique_ptr<Handler> handler_;
  SocketInfo remote_;
  absl::Duration started_;

  Phase phase_ = Phase::kHandshaking;
  bool ended_ = false;          // the final callback has run (or is running)
  bool in_callback_ = false;
  bool close_requested_ = false;
  WriteShutdown write_shutdown_ = WriteShutdown::kNone;
  ShutdownWay write_shutdown_way_ = ShutdownWay::kWrite;
  Transport* switch_to_ = nullptr;  // while kSwitching
  bool upgrading_ = false;      // handshaking after a SwitchTransport
  bool drained_after_switch_ = false;  // HandleDrained is due once the switch is done
  bool peer_closed_ = false;    // a read found the peer's end of stream
  absl::Status stop_error_;     // reported in connection.stop
  absl::string_view stop_ending_;  // connection.stop's detail (see telemetry.h)
  absl::Status pending_error_;  // a send failure noticed inside a callback
  IoInterest handshake_wants_ = IoInterest::kRead;

  absl::Duration read_timeout_;   // read_timeout, or the handler's persistent one
  // When the current wait for data began (infinite: not waiting); it ends
  // wait_timeout_ (one-shot or persistent, shrunk under overload) later.
  absl::Duration waiting_since_ = absl::InfiniteDuration();
  absl::Duration wait_timeout_ = absl::InfiniteDuration();
  absl::Duration phase_deadline_ = absl::InfiniteDuration(); // handshake or drain
  absl::Duration stop_deadline_ = absl::InfiniteDuration();  // the server's, once it stops
  absl::Duration handshake_started_;  // when the current handshake began
  absl::Duration shutdown_deadline_ = absl::InfiniteDuration();  // while kSending
  // SetDeadline: when it was set (infinite: none), its length, and whether it shrinks.
  absl::Duration handler_deadline_set_ = absl::InfiniteDuration();
  absl::Duration handler_deadline_length_;
  TimeoutScaling handler_deadline_scaling_ = TimeoutScaling::kFixed;
  bool reading_paused_ = false;   // backpressure
  bool handler_paused_ = false;   // PauseReading
  static constexpr size_t kNoDrainMark = static_cast<size_t>(-1);
  size_t drain_mark_ = kNoDrainMark;  // NotifyWhenDrained

  std::vector<PostedMessage> early_messages_;  // posted while the handshake ran
  // Made when a handle is first asked for: a connection nobody posts to has none.
  mutable std::shared_ptr<ConnectionInbox> inbox_;
  OutputQueue out_;

  std::unique_ptr<PeerLimiter::Slot> peer_slot_;  // only under max_connections_per_peer
  // The handler's pending timers, made on first use: an idle connection has none.
  struct HandlerTimers {
    struct Pending {
      EventLoop::TimerId loop_timer;
      PostedMessage message;  // holds its place under max_pending_messages
    };
    absl::flat_hash_map<TimerId, Pending> pending;
    TimerId next_id = 1;
  };
  std::unique_ptr<HandlerTimers> timers_;
  // Only for an outbound connection: an accepted one has none.
  struct Outbound {
    uint64_t parent_span_id = 0;
    absl::Duration connect_timeout;
  };
  std::unique_ptr<Outbound> outbound_;
  EventLoop::TimerId timer_id_ = 0;
  absl::Duration timer_at_ = absl::InfiniteDuration();
};

}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_IMPL_H_
