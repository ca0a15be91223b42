// Connection: what a handler holds (the counterpart of ThousandIsland.Socket), and the
// state machine that runs one connection on its worker.
//
// A Connection& is valid only inside its own handler's callbacks, on its worker thread.
// To reach a connection from anywhere else (another connection, another thread), use
// its ConnectionHandle.
//
// Output never blocks the loop: Send writes what the kernel takes and queues the rest.
// Above ServerOptions::send_queue_high_water the connection stops reading until the
// queue drains (backpressure); a peer that drains nothing for send_timeout is closed;
// beyond send_queue_limit, Send fails with ResourceExhausted and the connection closes.
#ifndef ISLET_SERVER_CONNECTION_H_
#define ISLET_SERVER_CONNECTION_H_

#include <any>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/event_loop.h"
#include "server/handler.h"
#include "server/telemetry.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

class Worker;
struct AcceptorSlot;
struct WorkerMailbox;

// A reference to one connection, usable from any thread; copyable and cheap.
class ConnectionHandle {
 public:
  ConnectionHandle() = default;

  uint64_t id() const { return id_; }
  bool valid() const { return mailbox_ != nullptr; }

  // Runs the handler's HandleMessage with `message` on the connection's worker. OK once
  // queued (a message for a connection that closes first is dropped, as a message to a
  // dead process is); FailedPrecondition once the server has stopped.
  absl::Status Post(std::any message) const;
  // Closes the connection as if its handler had returned Close().
  absl::Status Close() const;

  bool operator==(const ConnectionHandle& other) const {
    return mailbox_ == other.mailbox_ && id_ == other.id_;
  }

 private:
  friend class Connection;
  ConnectionHandle(std::shared_ptr<WorkerMailbox> mailbox, uint64_t id)
      : mailbox_(std::move(mailbox)), id_(id) {}

  std::shared_ptr<WorkerMailbox> mailbox_;
  uint64_t id_ = 0;
};

// One live connection as Server::Connections() lists it.
struct ConnectionSummary {
  uint64_t id = 0;
  SocketInfo remote;
  int acceptor = -1;
  int worker = -1;
  absl::Duration age;
  ConnectionHandle handle;
};

class Connection : private EventLoop::Watcher {
 public:
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // ---- The Socket API (ThousandIsland.Socket) ----

  // Blocking read of exactly n bytes (n > 0) or of what is available (n == 0), bounded
  // by `timeout` (the connection's read timeout when omitted). Output still queued is
  // flushed first, so a request-reply exchange cannot deadlock. This stalls the worker:
  // prefer HandleData.
  absl::StatusOr<std::string> Recv(size_t n, std::optional<absl::Duration> timeout = {});

  // Queues bytes for the peer; never blocks. OK when written or queued.
  absl::Status Send(absl::string_view data);
  absl::Status Send(absl::Span<const absl::string_view> buffers);
  // Queues `length` bytes of the file at `path` from `offset` (0 = to its end); sent
  // with sendfile(2) where the transport can. Returns the number of bytes queued.
  absl::StatusOr<uint64_t> Sendfile(const std::string& path, uint64_t offset = 0,
                                    uint64_t length = 0);

  // kWrite (or kReadWrite) takes effect once queued output has gone out.
  absl::Status Shutdown(ShutdownWay way);
  // Closes once the current callback returns (queued output is flushed first);
  // HandleClose runs, as if the callback had returned HandlerResult::Close().
  void Close();

  absl::Status SetOptions(absl::Span<const SocketOption> options);
  absl::StatusOr<std::vector<SocketOption>> GetOptions(absl::Span<const SocketOptionName> names);
  absl::StatusOr<SocketInfo> LocalInfo() const;
  absl::StatusOr<SocketInfo> PeerInfo() const;
  // The peer's verified certificate (DER), if the transport is secure and got one.
  std::optional<std::string> PeerCertificate() const;
  bool Secure() const;
  absl::StatusOr<SocketStats> GetStat() const;
  absl::StatusOr<std::string> NegotiatedProtocol() const;
  absl::StatusOr<ConnectionInformation> GetConnectionInformation() const;

  uint64_t id() const { return id_; }
  // The connection's telemetry span, and its parent (the acceptor's span).
  uint64_t span_id() const { return span_id_; }
  uint64_t parent_span_id() const;
  ConnectionHandle handle() const;
  // Bytes queued for the peer and not yet taken by the kernel.
  size_t queued_bytes() const { return queued_bytes_; }
  // The transport socket, for what this API does not cover. Do not close it.
  Socket& socket() { return *socket_; }

 private:
  friend class Worker;

  enum class Phase : uint8_t { kHandshaking, kOpen, kDraining, kClosed };
  enum class Ending : uint8_t { kLocalClose, kPeerClose, kTimeout, kShutdown, kError };

  // A queued piece of output: bytes, or a slice of a file.
  struct OutChunk {
    std::string data;
    size_t sent = 0;
    UniqueFd file;
    uint64_t file_offset = 0;
    uint64_t file_left = 0;
    bool is_file() const { return file.valid(); }
  };

  // The output queue. std::deque allocates its map and a first node on construction
  // (576 bytes here), which would be most of an idle connection's memory: this one
  // holds nothing until output is queued, and gives the memory back once drained.
  class OutQueue {
   public:
    using Chunks = std::deque<OutChunk>;
    bool empty() const { return chunks_ == nullptr; }
    OutChunk& front() { return chunks_->front(); }
    OutChunk& back() { return chunks_->back(); }
    Chunks::const_iterator begin() const {
      return chunks_ ? chunks_->cbegin() : Chunks::const_iterator();
    }
    Chunks::const_iterator end() const {
      return chunks_ ? chunks_->cend() : Chunks::const_iterator();
    }
    void push_back(OutChunk chunk) {
      if (chunks_ == nullptr) chunks_ = std::make_unique<Chunks>();
      chunks_->push_back(std::move(chunk));
    }
    void pop_front() {
      chunks_->pop_front();
      if (chunks_->empty()) chunks_.reset();
    }
    void clear() { chunks_.reset(); }

   private:
    std::unique_ptr<Chunks> chunks_;  // null when empty
  };

  Connection(Worker& worker, uint64_t id, std::unique_ptr<Socket> socket,
             std::shared_ptr<AcceptorSlot> acceptor, std::unique_ptr<Handler> handler);

  // Worker-facing.
  void Start();
  void Deliver(std::any& message);
  void DeliverEarlyMessages();
  void RequestClose();
  void BeginShutdown(absl::Duration deadline);
  void CloseNow();
  ConnectionSummary Summary() const;

  void OnReady(uint32_t events) override;
  void ContinueHandshake();
  void ReadAndDispatch();
  // `local_message`: the callback is HandleMessage (see Apply).
  template <typename Callback>
  void RunCallback(Callback&& callback, bool local_message = false);
  void Apply(HandlerResult result, bool local_message = false);
  void WaitForData(absl::Duration timeout);
  // Runs the one final callback, then flushes (when `drain`) and closes.
  void Finish(Ending ending, absl::Status error = absl::OkStatus(), bool from_handler = false,
              bool drain = true);
  void PostReadIfBuffered();
  void ResumeReadingIfDrained();
  absl::Status QueueOrWrite(absl::Span<const absl::string_view> buffers);
  // Queues what the kernel did not take of a Send of `total` bytes.
  absl::Status Queue(absl::Span<const absl::string_view> rest, size_t total);
  absl::Status FailSend(absl::Status error);
  absl::Status Flush();
  absl::Status FlushBlocking(absl::Duration deadline);
  void OnOutputDrained();
  void SetPendingError(absl::Status error);
  void UpdateInterest();
  void ArmTimer();
  void OnTimer();
  void Emit(TelemetryEventType type, uint64_t bytes = 0, const absl::Status* error = nullptr,
            absl::string_view detail = {});

  Worker& worker_;
  EventLoop& loop_;
  const uint64_t id_;
  const uint64_t span_id_;
  std::unique_ptr<Socket> socket_;
  std::shared_ptr<AcceptorSlot> acceptor_;
  std::unique_ptr<Handler> handler_;
  SocketInfo remote_;
  absl::Duration started_;
  int fd_ = -1;

  Phase phase_ = Phase::kHandshaking;
  bool ended_ = false;          // the final callback has run (or is running)
  bool in_callback_ = false;
  bool close_requested_ = false;
  bool shutdown_write_pending_ = false;
  ShutdownWay pending_shutdown_way_ = ShutdownWay::kWrite;
  bool upgrading_ = false;      // handshaking after a SwitchTransport
  absl::Status stop_error_;     // reported in connection.stop
  absl::Status pending_error_;  // a send failure noticed inside a callback
  IoInterest handshake_wants_ = IoInterest::kRead;
  uint32_t registered_events_ = 0;
  bool watching_ = false;

  absl::Duration read_timeout_;   // read_timeout, or the handler's persistent one
  absl::Duration read_deadline_ = absl::InfiniteDuration();  // while waiting for data
  absl::Duration send_deadline_ = absl::InfiniteDuration();  // while output is queued
  absl::Duration phase_deadline_ = absl::InfiniteDuration(); // handshake or drain
  bool reading_paused_ = false;   // backpressure
  absl::Duration wait_timeout_;   // the current wait for data (one-shot or persistent)

  std::vector<std::any> early_messages_;  // posted while the handshake ran
  OutQueue out_;
  size_t queued_bytes_ = 0;       // bytes in memory (file slices are not counted)
  size_t queued_files_ = 0;       // file slices waiting

  EventLoop::TimerId timer_id_ = 0;
  absl::Duration timer_at_ = absl::InfiniteDuration();
};

}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_H_
