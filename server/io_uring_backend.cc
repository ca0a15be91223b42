// The io_uring backend, readiness over a ring: each watched descriptor has one poll
// armed at a time, and one io_uring_enter per loop iteration submits every poll, removal
// and wake-up read queued in the iteration, then waits.
//
// Level-triggered readiness from one-shot polls: a one-shot poll checks the descriptor
// when it is armed, so arming it again after each delivery reports data a watcher left
// unread at once, as level-triggered epoll does. (The kernel here refuses
// IORING_POLL_ADD_LEVEL with EINVAL; multishot polls report wake-ups, not levels.) The
// one exception: io_uring reports EPOLLRDHUP whatever the mask, so a half-closed peer
// would complete every one-shot poll at once. A completion with nothing asked for in it
// switches that descriptor to a multishot poll, which then reports only changes, until a
// change brings something asked for; then it goes back to one-shot polls.
//
// Every poll carries (generation, fd) as its user data; Modify and Remove abandon the
// armed poll (a poll_remove, whose success posts nothing) and bump the generation, so a
// completion already on its way for the old poll is recognised and dropped.
//
// Receiving (EventLoop::SocketChannel, step 4 of docs/IO_URING.md): a connection's input
// arrives by one multishot recv into a provided-buffer ring the loop's connections share,
// so an idle connection holds no buffer and a busy one only what its handler has not
// read. Only on a DEFER_TASKRUN ring: there the kernel moves data into the buffers only
// inside this loop's own io_uring_enter, and Reap files every arrival of a batch with its
// receiver before any watcher runs, so while a watcher runs, what a Receiver holds is
// all the ring has taken from the socket, and a socket may go on to read its descriptor
// directly (a blocking Recv) without reordering the stream. Receives are armed only at
// the flush before the submit of a Wait, never by a submit in between, for the same
// reason.
//
// Accepting (EventLoop::AcceptChannel, step 5): one multishot accept per listening
// socket an acceptor takes from, its descriptors filed with the channel as they are
// collected and told to the acceptor as EPOLLIN; armed only while the acceptor takes
// them and the channel holds fewer than kMaxQueuedAccepts, so what waits beyond that
// waits in the listener's backlog, as with accept(2).
// The kernel's accept waits on the socket exclusively (one waiter woken per
// connection): stopping one takes the poll off the socket at once and accepts what it
// may have been woken for (RingAcceptChannel's SetAccepting), or a connection could
// be left in the backlog while another loop (a successor after a hand-off) waits.
//
// Thread rule: the ring is set up with SINGLE_ISSUER|DEFER_TASKRUN where the kernel has
// them (what keeps a ring from costing more CPU than epoll, docs/IO_URING.md), created
// disabled and enabled by the first Wait, so the thread that runs the loop is its only
// submitter. Add, Modify and Remove only queue work (no system call), so they also work
// before Run and after it, from the thread that holds the loop.
#include <liburing.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/loop_backend.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

constexpr unsigned kSubmissionEntries = 512;
// Readiness of many descriptors at once lands here; beyond it the kernel keeps the
// overflow (IORING_FEAT_NODROP) until the loop reaps.
constexpr unsigned kCompletionEntries = 8192;

// User data: generation << 32 | fd. Generation 0 is for the backend's own operations.
// The failure of a poll_remove (its poll had completed) or of a MSG_RING (the target
// gone); their successes post nothing (IOSQE_CQE_SKIP_SUCCESS).
constexpr uint64_t kIgnoreTag = 0;
constexpr uint64_t kWakeTag = 1;    // the read of the wake-up eventfd
constexpr uint64_t kCancelTag = 2;  // Quiesce's cancel of everything
constexpr uint64_t kMessageTag = 3;  // a wake-up another loop's ring sent (MSG_RING)
constexpr uint32_t kMaxGeneration = 0x1fffffff;  // 29 bits: bits 61 to 63 are tags
// User data of a receive: this bit | generation << 32 | fd. Its generations count the
// receives armed on one descriptor number, across channels, so that completions of a
// channel's closed predecessor are told apart (after 2^29 receives armed on one number
// they wrap, and a completion that late could be misfiled: not a practical concern).
constexpr uint64_t kReceiveBit = uint64_t{1} << 63;
// User data of a send: this bit | the channel's first generation << 32 | fd. One send
// at a time per channel.
constexpr uint64_t kSendBit = uint64_t{1} << 62;
// What an accept channel holds, accepted and not yet taken, before its accept stops (four
// of the acceptor's batches): beyond that, connections wait in the listener's backlog,
// which the kernel bounds, not in the loop, which a flood would otherwise grow.
constexpr size_t kMaxQueuedAccepts = 256;
// User data of an accept: this bit | the arm's generation << 40 | the accept channel's
// serial << 16 | its index (see IoUringBackend::AcceptData).
constexpr uint64_t kAcceptBit = uint64_t{1} << 61;
// What a channel stages at most: beyond it WriteSome says Unavailable, as a full socket
// would, and the rest waits in the connection's queue, where the server's output budget
// counts it. Staged bytes are not counted there: kept small, so that thousands of slow
// readers hold little beyond the budget (tools/abuse's slow-reader flood bounds it).
constexpr size_t kStagingLimit = 16 * 1024;

// The shared receive buffers: 256 of 16 KiB per loop (4 MiB of address space, pages
// touched only as the kernel fills them). Buffers in use at once are the connections
// with input their handler has not been handed yet (plus a few a pause catches in
// flight); when none is left a receive stops (-ENOBUFS) and is armed again once one
// comes back.
constexpr uint16_t kBufferGroup = 0;
constexpr unsigned kReceiveBuffers = 256;  // a power of two
constexpr unsigned kReceiveBufferSize = 16 * 1024;
// What one connection may hold of them (128 KiB) before its receive stops until it has
// read half: a peer sending faster than its handler reads cannot take the buffers of
// the loop's other connections. (The bytes wait in its socket, as on epoll.)
constexpr size_t kMaxHeldSegments = 8;

class IoUringBackend;
// The io_uring loop this thread is running, if any: its Wake of another io_uring loop
// goes as a message from ring to ring.
thread_local IoUringBackend* running_ring = nullptr;

// The provided-buffer ring: every buffer is the kernel's to fill until a completion names
// it, then the receiver's until it gives it back (Recycle).
class BufferRing {
 public:
  static absl::StatusOr<std::unique_ptr<BufferRing>> Register(io_uring* ring) {
    const size_t ring_bytes = kReceiveBuffers * sizeof(io_uring_buf);
    void* mapped = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE,
                          MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mapped == MAP_FAILED) return PosixError(errno, "event loop: buffer ring: mmap");
    auto buffers = std::unique_ptr<BufferRing>(
        new BufferRing(ring, static_cast<io_uring_buf_ring*>(mapped), ring_bytes));
    io_uring_buf_ring_init(buffers->ring_buffers_);
    io_uring_buf_reg reg = {};
    reg.ring_addr = reinterpret_cast<uintptr_t>(buffers->ring_buffers_);
    reg.ring_entries = kReceiveBuffers;
    reg.bgid = kBufferGroup;
    const int r = io_uring_register_buf_ring(ring, &reg, 0);
    if (r != 0) {
      buffers->registered_ = false;
      return PosixError(-r, "event loop: io_uring_register_buf_ring");
    }
    for (unsigned bid = 0; bid < kReceiveBuffers; ++bid) {
      io_uring_buf_ring_add(buffers->ring_buffers_, buffers->At(bid), kReceiveBufferSize,
                            static_cast<unsigned short>(bid),
                            io_uring_buf_ring_mask(kReceiveBuffers), static_cast<int>(bid));
    }
    io_uring_buf_ring_advance(buffers->ring_buffers_, static_cast<int>(kReceiveBuffers));
    return buffers;
  }

  ~BufferRing() {
    if (registered_) io_uring_unregister_buf_ring(ring_, kBufferGroup);
    ::munmap(ring_buffers_, ring_bytes_);
  }
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  char* At(unsigned bid) { return bytes_.get() + size_t{bid} * kReceiveBufferSize; }

  void Recycle(unsigned bid) {
    io_uring_buf_ring_add(ring_buffers_, At(bid), kReceiveBufferSize,
                          static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(kReceiveBuffers), 0);
    io_uring_buf_ring_advance(ring_buffers_, 1);
  }

 private:
  BufferRing(io_uring* ring, io_uring_buf_ring* ring_buffers, size_t ring_bytes)
      : ring_(ring),
        ring_buffers_(ring_buffers),
        ring_bytes_(ring_bytes),
        // Not zeroed: pages are touched only as the kernel fills them.
        bytes_(std::make_unique_for_overwrite<char[]>(size_t{kReceiveBuffers} *
                                                      kReceiveBufferSize)) {}

  io_uring* ring_;
  io_uring_buf_ring* ring_buffers_;
  size_t ring_bytes_;
  std::unique_ptr<char[]> bytes_;
  bool registered_ = true;
};

// One connection's receiving. Its state is the backend's to change (friend); the
// InputChannel side is what the socket reads.
class RingChannel final : public EventLoop::SocketChannel {
 public:
  RingChannel(IoUringBackend& backend, int fd, EventLoop::Watcher* watcher,
               uint32_t first_generation)
      : backend_(backend), fd_(fd), watcher_(watcher), first_generation_(first_generation) {}
  ~RingChannel() override;

  absl::string_view Front() const override;
  void Consume(size_t n) override;
  absl::string_view Take() override;
  void ReleaseTaken() override;
  absl::Status end() const override { return end_; }
  void SetReceiving(bool on) override;

  // Whether a receive of this generation was armed by this channel, not by a closed
  // predecessor on the same descriptor number: its generations follow first_generation_,
  // modulo the 29-bit wrap (a channel arms far fewer than 2^28).
  bool Owns(uint32_t generation) const {
    return ((generation - first_generation_) & kMaxGeneration) < (kMaxGeneration >> 1);
  }

  absl::StatusOr<size_t> Stage(absl::Span<const absl::string_view> buffers) override;
  size_t unsent() const override { return sending_.size() - sent_ + staged_.size(); }
  absl::Status WaitForSent(absl::Duration deadline) override;
  void SendBeforeClose() override;
  void SetNotifyWhenSent(bool on) override;

 private:
  friend class IoUringBackend;
  struct Segment {
    uint16_t bid;
    uint16_t begin;  // kReceiveBufferSize fits
    uint16_t end;
  };

  IoUringBackend& backend_;
  const int fd_;
  EventLoop::Watcher* const watcher_;
  const uint32_t first_generation_;
  uint32_t armed_generation_ = 0;
  int taken_ = -1;  // the buffer Take lent, until released
  bool want_ = false;
  bool armed_ = false;
  bool arm_queued_ = false;
  bool starved_ = false;
  bool full_ = false;  // holds kMaxHeldSegments: receiving stopped until it reads
  bool check_queued_ = false;  // in quiet_receives_: looked at by the next Wait
  uint32_t ready_events_ = 0;  // to tell the watcher at the end of this Reap
  absl::Status end_;
  absl::InlinedVector<Segment, 2> segments_;

  // Output: `sending_` (from `sent_` on) is the kernel's while a send is armed;
  // Stage appends to `staged_`, which follows it. Vectors, not strings: moving one
  // (an orphaned send) keeps its bytes where the kernel reads them.
  std::vector<char> sending_;
  size_t sent_ = 0;
  std::vector<char> staged_;
  absl::Status send_error_;
  bool send_armed_ = false;
  bool send_queued_ = false;
  bool notify_sent_ = false;
};

// A listening socket's multishot accept (EventLoop::AcceptChannel): the descriptors the
// kernel accepted are filed here as their completions are collected, and taken in order
// by Next.
class RingAcceptChannel final : public EventLoop::AcceptChannel {
 public:
  RingAcceptChannel(IoUringBackend& backend, int fd, EventLoop::Watcher* watcher,
                    uint16_t index, uint32_t serial)
      : backend_(backend), fd_(fd), watcher_(watcher), index_(index), serial_(serial) {}
  ~RingAcceptChannel() override;

  void SetAccepting(bool on) override;
  absl::StatusOr<UniqueFd> Next() override;

 private:
  friend class IoUringBackend;

  IoUringBackend& backend_;
  const int fd_;
  EventLoop::Watcher* const watcher_;
  const uint16_t index_;   // in the backend's accept_channels_
  const uint32_t serial_;  // tells its completions from those of a predecessor there
  uint32_t generation_ = 0;  // of the accept armed last
  bool want_ = false;
  bool armed_ = false;
  bool arm_queued_ = false;
  bool ready_queued_ = false;
  bool full_ = false;  // holds kMaxQueuedAccepts: accepting stopped until Next takes half
  // Accepted and not yet taken: at most kMaxQueuedAccepts, and what the kernel had
  // accepted by the time the accept stopped.
  std::deque<UniqueFd> accepted_;
  absl::Status error_;  // how the accept ended, given by Next after the descriptors
};

class IoUringBackend final : public LoopBackend {
 public:
  IoUringBackend(io_uring ring, UniqueFd wake, unsigned setup_flags, unsigned features)
      : ring_(ring),
        wake_(std::move(wake)),
        setup_flags_(setup_flags),
        skip_success_((features & IORING_FEAT_CQE_SKIP) != 0),
        enabled_((setup_flags & IORING_SETUP_R_DISABLED) == 0) {}

  ~IoUringBackend() override {
    // The buffer ring is unregistered before the ring goes.
    buffers_.reset();
    io_uring_queue_exit(&ring_);
  }

  std::unique_ptr<EventLoop::SocketChannel> MakeChannel(int fd, EventLoop::Watcher* watcher) override {
    if (fd < 0 || (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) == 0) return nullptr;
    if (buffers_ == nullptr) {
      if (buffers_failed_) return nullptr;
      absl::StatusOr<std::unique_ptr<BufferRing>> buffers = BufferRing::Register(&ring_);
      if (!buffers.ok()) {
        // Said once; the loop's sockets go on by readiness (as under epoll).
        buffers_failed_ = true;
        std::fprintf(stderr, "islet: io_uring: receiving by readiness only: %s\n",
                     buffers.status().ToString().c_str());
        return nullptr;
      }
      buffers_ = *std::move(buffers);
    }
    if (static_cast<size_t>(fd) >= channels_.size()) {
      const size_t size = std::max<size_t>(fd + 1, channels_.size() * 2);
      channels_.resize(size, nullptr);
      receive_generation_.resize(size, 0);
    }
    if (channels_[fd] != nullptr) return nullptr;  // one per descriptor
    auto receiver = std::make_unique<RingChannel>(*this, fd, watcher, NextGeneration(fd));
    channels_[fd] = receiver.get();
    return receiver;
  }

  std::unique_ptr<EventLoop::AcceptChannel> MakeAcceptChannel(int listen_fd,
                                                              EventLoop::Watcher* watcher) override {
    // Only where accepts, like receives, complete inside this loop's own io_uring_enter.
    if (listen_fd < 0 || (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) == 0) return nullptr;
    size_t index = 0;
    while (index < accept_channels_.size() && accept_channels_[index] != nullptr) ++index;
    if (index > kAcceptIndexMask) return nullptr;
    if (index == accept_channels_.size()) accept_channels_.push_back(nullptr);
    accept_serial_ = (accept_serial_ + 1) & kAcceptSerialMask;
    auto channel = std::make_unique<RingAcceptChannel>(
        *this, listen_fd, watcher, static_cast<uint16_t>(index), accept_serial_);
    accept_channels_[index] = channel.get();
    return channel;
  }

  absl::Status Add(int fd, uint32_t events, EventLoop::Watcher* watcher) override {
    if (fd < 0) return PosixError(EBADF, "event loop: watch");
    Slot& slot = SlotFor(fd);
    if (slot.active) return PosixError(EEXIST, "event loop: watch");
    slot.active = true;
    slot.watcher = watcher;
    slot.want = events;
    slot.edge = false;
    QueueArm(fd);
    return absl::OkStatus();
  }

  absl::Status Modify(int fd, uint32_t events, EventLoop::Watcher* watcher) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size() || !slots_[fd].active) {
      return PosixError(ENOENT, "event loop: modify");
    }
    Slot& slot = slots_[fd];
    slot.watcher = watcher;
    if (events == slot.want) return absl::OkStatus();
    slot.want = events;
    Disarm(fd);
    slot.edge = false;
    QueueArm(fd);
    return absl::OkStatus();
  }

  void Remove(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= slots_.size() || !slots_[fd].active) return;
    Disarm(fd);
    Slot& slot = slots_[fd];
    slot.active = false;
    slot.watcher = nullptr;
  }

  void Wait(int timeout_ms, Dispatch dispatch) override {
    if (!enabled_) Enable();
    if (running_ring != this) {
      running_ring = this;
      takes_messages_.store(true, std::memory_order_release);
    }
    CheckQuietReceives();
    FlushArms();
    if (!wake_armed_) ArmWake();
    // Readiness already known (from a blocking send's wait): no waiting for more.
    if (!pending_.empty() || !ready_.empty() || !accept_ready_.empty()) timeout_ms = 0;
    int r;
    if (timeout_ms == 0) {
      r = io_uring_submit_and_get_events(&ring_);
    } else if (timeout_ms < 0) {
      r = io_uring_submit_and_wait(&ring_, 1);
    } else {
      __kernel_timespec ts = {};
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
      io_uring_cqe* cqe = nullptr;
      r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    }
    // -ETIME (the timeout), -EINTR (a signal) and -EBUSY (completions to reap first) all
    // mean: reap what is there. -EEXIST means a second thread submits to a ring that
    // SINGLE_ISSUER bound to the first: a misuse no retry can fix.
    if (r == -EEXIST) {
      std::fprintf(stderr,
                   "islet: an io_uring event loop ran on a second thread; a loop runs on "
                   "one thread for its life\n");
      std::abort();
    }
    Reap(dispatch);
  }

  // From another io_uring loop's thread: a message from that loop's ring to this one
  // (IORING_OP_MSG_RING), which rides the sender's next submit, so a batch of hand-overs
  // costs no system call of its own and the target reads nothing. From any other thread:
  // the eventfd, whose read the ring keeps armed.
  void Wake() override {
    IoUringBackend* sender = running_ring;
    // Only to a ring that is enabled: a message to one still disabled (its loop not yet
    // running) fails, and the wake-up would be lost.
    if (sender != nullptr && sender != this && takes_messages_.load(std::memory_order_acquire)) {
      sender->SendWake(ring_.ring_fd);
      return;
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_.get(), &one, sizeof(one));
  }

  void Quiesce() override {
    // Even with nothing armed: the removals queued since the last Wait must reach the
    // kernel, or the polls they remove keep their sockets open.
    if (!enabled_) return;
    takes_messages_.store(false, std::memory_order_release);
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    cancel_done_ = false;
    // Bounded: a cancel of polls completes at once; the bound only guards a kernel bug.
    for (int tries = 0;
         tries < 50 && (!cancel_done_ || armed_ > 0 || receives_armed_ > 0 || sends_armed_ > 0 ||
                          accepts_armed_ > 0 || !orphans_.empty() || wake_armed_);
         ++tries) {
      __kernel_timespec ts = {};
      ts.tv_nsec = 20 * 1000 * 1000;
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      // Whatever readiness arrives here is not lost: the polls are armed again, level
      // by level, when a Wait runs next.
      Reap([](EventLoop::Watcher*, uint32_t) {});
    }
    for (size_t fd = 0; fd < slots_.size(); ++fd) {
      Slot& slot = slots_[fd];
      slot.armed = false;
      if (slot.active) QueueArm(static_cast<int>(fd));
    }
    armed_ = 0;
    for (RingChannel* channel : channels_) {
      if (channel == nullptr) continue;
      channel->armed_ = false;
      if (channel->want_) QueueReceive(*channel);
      // A send the cancel stopped (it completed with -ECANCELED, filed above) goes again
      // if the loop runs again.
      if (channel->send_armed_) channel->send_armed_ = false;
      if (channel->unsent() > 0) QueueSend(*channel);
    }
    for (RingAcceptChannel* channel : accept_channels_) {
      if (channel == nullptr) continue;
      channel->armed_ = false;
      if (channel->want_) QueueAcceptArm(*channel);
    }
    receives_armed_ = 0;
    sends_armed_ = 0;
    accepts_armed_ = 0;
    orphans_.clear();
    wake_armed_ = false;
    if (running_ring == this) running_ring = nullptr;
  }

  absl::string_view name() const override { return "io_uring"; }

  // ---- RingChannel's side ----

  char* BufferAt(unsigned bid) { return buffers_->At(bid); }

  void Recycle(unsigned bid) {
    buffers_->Recycle(bid);
    --buffers_held_;
  }

  // A full channel has read half of what it held: it receives again.
  void Drained(RingChannel& channel) {
    if (!channel.full_ || channel.segments_.size() > kMaxHeldSegments / 2) return;
    channel.full_ = false;
    if (channel.want_) QueueReceive(channel);
  }

  void SetReceiving(RingChannel& receiver, bool on) {
    receiver.want_ = on;
    if (on) {
      QueueReceive(receiver);
    } else if (receiver.armed_) {
      CancelReceive(receiver);
    }
  }

  void Forget(RingChannel& channel) {
    if (channel.armed_) CancelReceive(channel);
    channel.ReleaseTaken();
    for (const RingChannel::Segment& segment : channel.segments_) Recycle(segment.bid);
    channel.segments_.clear();
    if (channel.send_armed_) {
      // The kernel reads these bytes until the send completes: they outlive the channel.
      // Cancelled, as a close drops what a socket could not send: SendBeforeClose gave
      // them their chance.
      const uint64_t user_data = SendData(channel);
      orphans_.push_back({user_data, std::move(channel.sending_)});
      io_uring_sqe* sqe = GetSqe();
      io_uring_prep_cancel64(sqe, user_data, 0);
      io_uring_sqe_set_data64(sqe, kIgnoreTag);
      if (skip_success_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
      --sends_armed_;
    }
    channels_[channel.fd_] = nullptr;
  }

  // Submits `channel`'s unsent bytes now, mid-turn: the send is issued in the submit and
  // takes its own reference to the socket, so it goes on after the descriptor closes.
  void SendNow(RingChannel& channel) {
    if (!running()) return;  // after Run: nothing submits (Worker::Stop's closes)
    if (!channel.send_armed_) ArmSend(channel);
    io_uring_submit(&ring_);
    Collect();  // see GetSqe
  }

  // Stage's caller is blocking (Socket::Send, a Recv after a Send): submits and waits
  // for completions, filing each (nothing of a watcher runs), until the kernel has
  // taken some of `channel`'s bytes or `deadline` passes.
  absl::Status WaitForSent(RingChannel& channel, absl::Duration deadline) {
    const size_t before = channel.unsent();
    if (before == 0 || !channel.send_error_.ok()) return channel.send_error_;
    if (!running()) {
      return absl::FailedPreconditionError("send: the event loop is not running");
    }
    for (;;) {
      if (!channel.send_armed_) ArmSend(channel);
      const absl::Duration left = deadline - MonotonicNow();
      if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("send");
      __kernel_timespec ts = {};
      if (left < absl::Seconds(1)) {
        ts.tv_nsec = absl::ToInt64Nanoseconds(left);
      } else {
        ts.tv_sec = 1;  // and check the deadline again
      }
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      Collect();
      if (!channel.send_error_.ok()) return channel.send_error_;
      if (channel.unsent() < before) return absl::OkStatus();
    }
  }

  void SetNotifyWhenSent(RingChannel& channel, bool on) {
    channel.notify_sent_ = on;
    if (on && channel.unsent() == 0) QueueReady(channel, EPOLLOUT);
  }

  void QueueSend(RingChannel& channel) {
    if (channel.send_armed_ || channel.send_queued_) return;
    channel.send_queued_ = true;
    send_queue_.push_back(channel.fd_);
  }

  // ---- RingAcceptChannel's side ----

  void SetAccepting(RingAcceptChannel& channel, bool on) {
    if (channel.want_ == on) return;
    channel.want_ = on;
    if (on) {
      QueueAcceptArm(channel);
      QueueAcceptReady(channel);
    } else if (channel.armed_) {
      CancelAccept(channel);
      if (!running()) return;
      // An accept waits on the listening socket exclusively: a wake-up its poll took
      // for a connection it will not accept now is lost to the socket's other waiters
      // (another acceptor, a successor after a hand-off), and that connection would
      // wait in the backlog until the next one arrives. So the cancel goes now, with
      // the task work that takes the poll off the socket's wait queue (on this ring it
      // runs only when asked for: until then the poll would take wake-ups still), and
      // what the poll may have been woken for is accepted here, for Next.
      io_uring_submit_and_get_events(&ring_);
      Collect();  // see GetSqe
      for (int i = 0; i < kAcceptDrainLimit; ++i) {
        const int fd = ::accept4(channel.fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          channel.accepted_.emplace_back(fd);
        } else if (errno != EINTR && errno != ECONNABORTED) {
          break;  // EAGAIN: the backlog is empty; anything else: the next accept says
        }
      }
    }
  }

  // Next took a descriptor (or how the accept ended): a full channel, half empty again,
  // or an ended accept, accepts again while wanted.
  void Taken(RingAcceptChannel& channel) {
    if (channel.full_ && channel.accepted_.size() <= kMaxQueuedAccepts / 2) {
      channel.full_ = false;
    }
    if (channel.want_ && !channel.full_) QueueAcceptArm(channel);
  }

  void ForgetAcceptChannel(RingAcceptChannel& channel) {
    if (channel.armed_) CancelAccept(channel);
    channel.accepted_.clear();  // closes them: those clients see the connection close
    accept_channels_[channel.index_] = nullptr;
  }

  std::string description() const override {
    std::string flags;
    if (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) {
      flags = "SINGLE_ISSUER|DEFER_TASKRUN";
    } else if (setup_flags_ & IORING_SETUP_COOP_TASKRUN) {
      flags = "COOP_TASKRUN";
    } else {
      flags = "no task-run flags";
    }
    return absl::StrCat("io_uring (", flags, ")");
  }

 private:
  struct Slot {
    EventLoop::Watcher* watcher = nullptr;
    uint32_t want = 0;
    uint32_t generation = 0;
    bool active = false;  // registered
    bool armed = false;   // a poll of this generation is with the kernel
    bool queued = false;  // in arms_, to be armed before the next submit
    bool edge = false;    // multishot: the last completion held nothing asked for
  };

  static uint64_t UserData(int fd, uint32_t generation) {
    return (static_cast<uint64_t>(generation) << 32) | static_cast<uint32_t>(fd);
  }

  Slot& SlotFor(int fd) {
    if (static_cast<size_t>(fd) >= slots_.size()) {
      slots_.resize(std::max<size_t>(fd + 1, slots_.size() * 2));
    }
    return slots_[fd];
  }

  void QueueArm(int fd) {
    Slot& slot = slots_[fd];
    if (slot.queued) return;
    slot.queued = true;
    arms_.push_back(fd);
  }

  // A free submission entry; submits what is queued when the ring is full. Before the
  // first Wait (the ring still disabled) arms are only queued, never submitted, so this
  // is reached there only by Disarm of a poll that is armed, which cannot be.
  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      io_uring_submit(&ring_);
      // With the completion queue overflowed, a submit also runs the ring's task work:
      // file what it received at once (see the top of the file).
      Collect();
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  // Takes `list` into `scratch`, keeping both capacities: the walk that follows may queue
  // more on `list` (see FlushArms).
  template <typename T>
  static std::vector<T>& TakeList(std::vector<T>& list, std::vector<T>& scratch) {
    scratch.clear();
    scratch.swap(list);
    return scratch;
  }

  bool ArmsQueued() const {
    return !arms_.empty() || !accept_arms_.empty() || !full_accepts_.empty() ||
           !full_channels_.empty() || !receive_arms_.empty() || !send_queue_.empty() ||
           (!starved_.empty() && buffers_held_ < kReceiveBuffers);
  }

  // Arms what was queued since the last submit. Arming takes submission entries, and a
  // full submission queue submits and collects (GetSqe), which queues more (a receive
  // that ended, or was refused for want of buffers, while arming others): each list is
  // taken before it is walked, and the walks go on until nothing is queued, so nothing
  // is left unarmed while the loop sleeps.
  void FlushArms() {
    do {
      for (int fd : TakeList(arms_, fd_scratch_)) {
        Slot& slot = slots_[fd];
        slot.queued = false;
        if (slot.active && !slot.armed) Arm(fd);
      }
      for (uint16_t index : TakeList(accept_arms_, index_scratch_)) {
        RingAcceptChannel* channel = accept_channels_[index];
        if (channel == nullptr || !channel->arm_queued_) continue;
        channel->arm_queued_ = false;
        if (channel->want_ && !channel->armed_ && channel->error_.ok() && !channel->full_) {
          ArmAccept(*channel);
        }
      }
      // A full channel's accept stops without SetAccepting(false)'s taking from the
      // backlog (which would fill it further): a wake-up its accept took is not lost,
      // since the accept armed again, once Next has taken half, first accepts what is
      // waiting.
      for (uint16_t index : TakeList(full_accepts_, index_scratch_)) {
        RingAcceptChannel* channel = accept_channels_[index];
        if (channel != nullptr && channel->full_ && channel->armed_) CancelAccept(*channel);
      }
      for (int fd : TakeList(full_channels_, fd_scratch_)) {
        RingChannel* channel = channels_[fd];
        if (channel != nullptr && channel->full_ && channel->armed_) CancelReceive(*channel);
      }
      // Starved receives go again once a buffer has come back (not at once: the ring
      // would only refuse them again, and wake the loop to say so).
      if (!starved_.empty() && buffers_held_ < kReceiveBuffers) {
        for (int fd : TakeList(starved_, fd_scratch_)) {
          RingChannel* receiver = channels_[fd];
          if (receiver == nullptr || !receiver->starved_) continue;
          receiver->starved_ = false;
          QueueReceive(*receiver);
        }
      }
      for (int fd : TakeList(receive_arms_, fd_scratch_)) {
        RingChannel* receiver = channels_[fd];
        if (receiver == nullptr || !receiver->arm_queued_) continue;
        receiver->arm_queued_ = false;
        if (receiver->want_ && !receiver->armed_ && !receiver->starved_ && !receiver->full_ &&
            receiver->end_.ok()) {
          ArmReceive(*receiver);
        }
      }
      for (int fd : TakeList(send_queue_, fd_scratch_)) {
        RingChannel* channel = channels_[fd];
        if (channel == nullptr || !channel->send_queued_) continue;
        channel->send_queued_ = false;
        if (!channel->send_armed_) ArmSend(*channel);
      }
    } while (ArmsQueued());
  }

  // A multishot receive that read a socket empty waits for the socket's next wake-up.
  // When the peer's reset is processed on another CPU just then, this kernel (6.18) can
  // lose that wake-up: the receive never ends, and its connection would wait for its
  // read timeout (a bare liburing program here: 9 of 100,000 connections that send a
  // byte, then reset). So each receive whose completion said the socket is empty is looked at once,
  // at the next Wait, with one poll(2) for all of them: a socket the peer has reset or
  // shut down while its receive is still armed gets its receive replaced, whose first
  // attempt reads what is left, then the end. (A reset processed after this look wakes
  // the receive as usual.)
  void CheckQuietReceives() {
    if (quiet_receives_.empty()) return;
    quiet_polls_.clear();
    for (int fd : quiet_receives_) {
      RingChannel* receiver = channels_[fd];
      if (receiver == nullptr || !receiver->check_queued_) continue;
      receiver->check_queued_ = false;
      if (receiver->armed_ && receiver->end_.ok()) quiet_polls_.push_back({fd, POLLRDHUP, 0});
    }
    quiet_receives_.clear();
    if (quiet_polls_.empty() || ::poll(quiet_polls_.data(), quiet_polls_.size(), 0) <= 0) {
      return;
    }
    for (const pollfd& p : quiet_polls_) {
      if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0) continue;
      RingChannel* receiver = channels_[p.fd];
      if (receiver == nullptr || !receiver->armed_) continue;
      CancelReceive(*receiver);
      if (receiver->want_) QueueReceive(*receiver);
    }
  }

  bool running() const { return enabled_ && running_ring == this; }

  static uint64_t SendData(const RingChannel& channel) {
    return kSendBit | UserData(channel.fd_, channel.first_generation_);
  }

  // One send of everything unsent; the bytes staged meanwhile go in the next one.
  void ArmSend(RingChannel& channel) {
    channel.send_queued_ = false;
    if (channel.sent_ == channel.sending_.size()) {
      channel.sending_.clear();
      channel.sent_ = 0;
      channel.sending_.swap(channel.staged_);
    }
    if (channel.sending_.empty() || !channel.send_error_.ok()) return;
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_send(sqe, channel.fd_, channel.sending_.data() + channel.sent_,
                       channel.sending_.size() - channel.sent_, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, SendData(channel));
    channel.send_armed_ = true;
    ++sends_armed_;
  }

  void CompleteSend(uint64_t user_data, int32_t res) {
    const int fd = static_cast<int>(user_data & 0xffffffff);
    RingChannel* channel = static_cast<size_t>(fd) < channels_.size() ? channels_[fd] : nullptr;
    if (channel == nullptr || !channel->send_armed_ || SendData(*channel) != user_data) {
      // A closed channel's: its bytes can go now.
      for (size_t i = 0; i < orphans_.size(); ++i) {
        if (orphans_[i].first != user_data) continue;
        orphans_[i] = std::move(orphans_.back());
        orphans_.pop_back();
        break;
      }
      return;
    }
    channel->send_armed_ = false;
    --sends_armed_;
    if (res == -ECANCELED) {
      QueueSend(*channel);  // Quiesce's: the bytes go if the loop runs again
      return;
    }
    if (res >= 0) {
      channel->sent_ += static_cast<size_t>(res);
      if (channel->sent_ == channel->sending_.size()) {
        // Freed, not kept: an idle connection holds no output buffer.
        std::vector<char>().swap(channel->sending_);
        channel->sent_ = 0;
      }
      if (channel->unsent() > 0) QueueSend(*channel);
    } else {
      // What the socket says on its own next write: ECONNRESET, EPIPE (never SIGPIPE).
      channel->send_error_ = PosixError(-res, "send");
      channel->sending_.clear();
      channel->sent_ = 0;
      channel->staged_.clear();
    }
    if (channel->notify_sent_) {
      QueueReady(*channel, res >= 0 ? EPOLLOUT : (EPOLLOUT | EPOLLERR));
    }
  }

  static constexpr uint64_t kAcceptIndexMask = 0xffff;
  // Connections SetAccepting(false) takes from the backlog at most (see there).
  static constexpr int kAcceptDrainLimit = 1024;
  static constexpr uint32_t kAcceptSerialMask = 0xffffff;
  static constexpr uint32_t kAcceptGenerationMask = 0xfffff;

  static uint64_t AcceptData(const RingAcceptChannel& channel, uint32_t generation) {
    return kAcceptBit | (uint64_t{generation & kAcceptGenerationMask} << 40) |
           (uint64_t{channel.serial_} << 16) | channel.index_;
  }

  void QueueAcceptArm(RingAcceptChannel& channel) {
    if (channel.arm_queued_ || channel.armed_) return;
    channel.arm_queued_ = true;
    accept_arms_.push_back(channel.index_);
  }

  void ArmAccept(RingAcceptChannel& channel) {
    channel.generation_ = (channel.generation_ + 1) & kAcceptGenerationMask;
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_multishot_accept(sqe, channel.fd_, nullptr, nullptr,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, AcceptData(channel, channel.generation_));
    channel.armed_ = true;
    ++accepts_armed_;
  }

  // Descriptors it accepted before the cancel still come, and are filed; its last
  // completion (-ECANCELED) is ignored.
  void CancelAccept(RingAcceptChannel& channel) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, AcceptData(channel, channel.generation_), 0);
    io_uring_sqe_set_data64(sqe, kIgnoreTag);
    if (skip_success_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    channel.armed_ = false;
    --accepts_armed_;
  }

  // The accept channel's watcher hears EPOLLIN at the end of this Reap, while it accepts
  // and has something for Next.
  void QueueAcceptReady(RingAcceptChannel& channel) {
    if (!channel.want_ || channel.ready_queued_) return;
    if (channel.accepted_.empty() && channel.error_.ok()) return;
    channel.ready_queued_ = true;
    accept_ready_.push_back(channel.index_);
  }

  // As TcpListener's TryAccept reports the same errno.
  static absl::Status AcceptError(int err) {
    switch (err) {
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        return PosixError(err, "accept");
      case EINVAL:
      case EBADF:
        return absl::FailedPreconditionError("accept: listener is closed");
      case ECONNABORTED:
        return absl::AbortedError(PosixError(err, "accept").message());
      default:
        return absl::UnknownError(PosixError(err, "accept").message());
    }
  }

  // Files an accept's completion with its channel (pass one of Reap).
  void CompleteAccept(uint64_t user_data, int32_t res, uint32_t flags) {
    const size_t index = user_data & kAcceptIndexMask;
    const uint32_t serial = static_cast<uint32_t>(user_data >> 16) & kAcceptSerialMask;
    const uint32_t generation = static_cast<uint32_t>(user_data >> 40) & kAcceptGenerationMask;
    RingAcceptChannel* channel =
        index < accept_channels_.size() ? accept_channels_[index] : nullptr;
    if (channel == nullptr || channel->serial_ != serial) {
      if (res >= 0) ::close(res);  // for a channel that is gone: nobody would serve it
      return;
    }
    if ((flags & IORING_CQE_F_MORE) == 0 && channel->armed_ &&
        generation == channel->generation_) {
      channel->armed_ = false;
      --accepts_armed_;
    }
    if (res >= 0) {
      channel->accepted_.emplace_back(res);
      if (channel->accepted_.size() >= kMaxQueuedAccepts && !channel->full_) {
        channel->full_ = true;
        full_accepts_.push_back(channel->index_);  // its accept is cancelled at the flush
      }
    } else if (res != -ECANCELED && channel->error_.ok()) {
      channel->error_ = AcceptError(-res);
    }
    QueueAcceptReady(*channel);
    // Ended without an error (the kernel may end a multishot): armed again.
    if (!channel->armed_ && channel->want_ && channel->error_.ok() && !channel->full_) {
      QueueAcceptArm(*channel);
    }
  }

  uint32_t NextGeneration(int fd) {
    uint32_t& generation = receive_generation_[fd];
    generation = generation >= kMaxGeneration ? 1 : generation + 1;
    return generation;
  }

  static uint64_t ReceiveData(int fd, uint32_t generation) {
    return kReceiveBit | UserData(fd, generation);
  }

  void QueueReceive(RingChannel& receiver) {
    if (receiver.arm_queued_ || receiver.armed_) return;
    receiver.arm_queued_ = true;
    receive_arms_.push_back(receiver.fd_);
  }

  void ArmReceive(RingChannel& receiver) {
    const uint32_t generation = NextGeneration(receiver.fd_);
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_recv_multishot(sqe, receiver.fd_, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    io_uring_sqe_set_data64(sqe, ReceiveData(receiver.fd_, generation));
    receiver.armed_ = true;
    receiver.armed_generation_ = generation;
    ++receives_armed_;
  }

  // What it already received stays; its last completion (-ECANCELED) is ignored.
  void CancelReceive(RingChannel& receiver) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_cancel64(sqe, ReceiveData(receiver.fd_, receiver.armed_generation_), 0);
    io_uring_sqe_set_data64(sqe, kIgnoreTag);
    if (skip_success_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    receiver.armed_ = false;
    --receives_armed_;
  }

  // Files a receive's completion with its receiver (pass one of Reap): bytes, the end,
  // or a stop for want of buffers.
  void CompleteReceive(uint64_t user_data, int32_t res, uint32_t flags) {
    const int fd = static_cast<int>(user_data & 0xffffffff);
    const uint32_t generation = static_cast<uint32_t>((user_data & ~kReceiveBit) >> 32);
    const bool has_buffer = (flags & IORING_CQE_F_BUFFER) != 0;
    const unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
    if (has_buffer) ++buffers_held_;
    RingChannel* receiver =
        static_cast<size_t>(fd) < channels_.size() ? channels_[fd] : nullptr;
    if (receiver == nullptr || !receiver->Owns(generation)) {
      if (has_buffer) Recycle(bid);  // a closed receiver's: nobody reads it
      return;
    }
    if ((flags & IORING_CQE_F_MORE) == 0 && receiver->armed_ &&
        generation == receiver->armed_generation_) {
      receiver->armed_ = false;
      --receives_armed_;
    }
    if (res > 0 && has_buffer && (flags & IORING_CQE_F_MORE) != 0 &&
        (flags & IORING_CQE_F_SOCK_NONEMPTY) == 0 && !receiver->check_queued_) {
      receiver->check_queued_ = true;  // see CheckQuietReceives
      quiet_receives_.push_back(fd);
    }
    if (res > 0 && has_buffer) {
      receiver->segments_.push_back(
          {static_cast<uint16_t>(bid), 0, static_cast<uint16_t>(res)});
      QueueReady(*receiver);
      if (receiver->segments_.size() >= kMaxHeldSegments && !receiver->full_) {
        receiver->full_ = true;
        full_channels_.push_back(fd);  // its receive is cancelled at the flush, unless read by then
      }
    } else {
      if (has_buffer) Recycle(bid);
      if (res == 0) {
        // The first end stays: a receive replaced by CheckQuietReceives may end with the
        // reset, and its successor then with 0.
        if (receiver->end_.ok()) receiver->end_ = PeerClosedError("recv");
        QueueReady(*receiver);
      } else if (res == -ENOBUFS) {
        if (!receiver->starved_) {
          receiver->starved_ = true;
          starved_.push_back(fd);
        }
      } else if (res != -ECANCELED && res < 0) {
        if (receiver->end_.ok()) receiver->end_ = PosixError(-res, "recv");
        QueueReady(*receiver);
      }
    }
    if (!receiver->armed_ && receiver->want_) QueueReceive(*receiver);
  }

  // Readiness for the channel's watcher at the end of this Reap (or the next one):
  // EPOLLIN only while receiving, EPOLLOUT only while asked for.
  void QueueReady(RingChannel& channel, uint32_t events = EPOLLIN) {
    if (!channel.want_) events &= ~static_cast<uint32_t>(EPOLLIN);
    if (!channel.notify_sent_) events &= ~static_cast<uint32_t>(EPOLLOUT | EPOLLERR);
    if (events == 0) return;
    if (channel.ready_events_ == 0) ready_.push_back(channel.fd_);
    channel.ready_events_ |= events;
  }

  void Arm(int fd) {
    Slot& slot = slots_[fd];
    slot.generation = slot.generation >= kMaxGeneration ? 1 : slot.generation + 1;
    io_uring_sqe* sqe = GetSqe();
    if (slot.edge) {
      io_uring_prep_poll_multishot(sqe, fd, slot.want);
    } else {
      io_uring_prep_poll_add(sqe, fd, slot.want);
    }
    io_uring_sqe_set_data64(sqe, UserData(fd, slot.generation));
    slot.armed = true;
    ++armed_;
  }

  // Abandons the armed poll, if any: completions of its generation are dropped.
  void Disarm(int fd) {
    Slot& slot = slots_[fd];
    if (!slot.armed) return;
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_poll_remove(sqe, UserData(fd, slot.generation));
    io_uring_sqe_set_data64(sqe, kIgnoreTag);
    if (skip_success_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    slot.armed = false;
    --armed_;
    slot.generation = slot.generation >= kMaxGeneration ? 1 : slot.generation + 1;
  }

  // The target's completion carries kMessageTag; a failure (the target gone) comes back
  // here as kIgnoreTag. Success posts nothing on this ring.
  void SendWake(int target_ring_fd) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_msg_ring(sqe, target_ring_fd, 0, kMessageTag, 0);
    io_uring_sqe_set_data64(sqe, kIgnoreTag);
    if (skip_success_) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  }

  void ArmWake() {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_read(sqe, wake_.get(), &wake_count_, sizeof(wake_count_), 0);
    io_uring_sqe_set_data64(sqe, kWakeTag);
    wake_armed_ = true;
  }

  void Enable() {
    // liburing 2.3 declares io_uring_enable_rings but its library lacks it: the call it
    // would make.
    if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                  nullptr, 0) != 0) {
      std::fprintf(stderr, "islet: io_uring: enabling the ring: %s\n", std::strerror(errno));
      std::abort();
    }
    enabled_ = true;
  }

  // Takes every completion there now: receives and sends are filed with their channels
  // at once, the rest kept in pending_ for the Reap to dispatch. So, whenever a watcher
  // runs, all the ring has received is with the channels (see the top of the file).
  void Collect() {
    unsigned head;
    io_uring_cqe* cqe;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      const Completion c = {cqe->user_data, cqe->res, cqe->flags};
      if ((c.user_data & kReceiveBit) != 0) {
        CompleteReceive(c.user_data, c.res, c.flags);
      } else if ((c.user_data & kSendBit) != 0) {
        CompleteSend(c.user_data, c.res);
      } else if ((c.user_data & kAcceptBit) != 0) {
        CompleteAccept(c.user_data, c.res, c.flags);
      } else {
        pending_.push_back(c);
      }
    }
    io_uring_cq_advance(&ring_, seen);
  }

  // Handles the completions there now (not those the handling makes: they wait for the
  // next Wait, so timers and posted tasks get their turn), then tells the channels'
  // watchers what came for them.
  void Reap(Dispatch dispatch) {
    Collect();
    // By index: a watcher's blocking send may collect more (WaitForSent).
    for (size_t i = 0; i < pending_.size(); ++i) {
      const Completion c = pending_[i];
      Complete(c.user_data, c.res, c.flags, dispatch);
    }
    pending_.clear();
    for (size_t i = 0; i < ready_.size(); ++i) {
      const int fd = ready_[i];
      RingChannel* channel = channels_[fd];
      if (channel == nullptr || channel->ready_events_ == 0) continue;  // closed since
      dispatch(channel->watcher_, std::exchange(channel->ready_events_, 0));
      // Level-triggered, as readiness is: input left unread (or an end not yet read)
      // is told again on the next turn, while the watcher still receives.
      channel = channels_[fd];
      if (channel != nullptr && channel->want_ && channel->ready_events_ == 0 &&
          (!channel->segments_.empty() || !channel->end_.ok())) {
        channel->ready_events_ = EPOLLIN;
        again_.push_back(fd);
      }
    }
    ready_.clear();
    ready_.swap(again_);  // Wait does not block while it holds any
    for (size_t i = 0; i < accept_ready_.size(); ++i) {
      const uint16_t index = accept_ready_[i];
      RingAcceptChannel* channel = accept_channels_[index];
      if (channel == nullptr || !channel->ready_queued_) continue;  // closed since
      channel->ready_queued_ = false;
      if (!channel->want_ || (channel->accepted_.empty() && channel->error_.ok())) continue;
      dispatch(channel->watcher_, EPOLLIN);
      // Level-triggered: what it left is told again on the next turn.
      channel = accept_channels_[index];
      if (channel != nullptr && channel->want_ && !channel->ready_queued_ &&
          (!channel->accepted_.empty() || !channel->error_.ok())) {
        channel->ready_queued_ = true;
        accept_again_.push_back(index);
      }
    }
    accept_ready_.clear();
    accept_ready_.swap(accept_again_);
  }

  void Complete(uint64_t user_data, int32_t res, uint32_t flags, Dispatch dispatch) {
    const uint32_t generation = static_cast<uint32_t>(user_data >> 32);
    if (generation == 0) {
      if (user_data == kWakeTag) wake_armed_ = false;
      if (user_data == kCancelTag) cancel_done_ = true;
      return;
    }
    const int fd = static_cast<int>(user_data & 0xffffffff);
    if (generation > kMaxGeneration || static_cast<size_t>(fd) >= slots_.size()) return;
    Slot& slot = slots_[fd];
    if (!slot.active || !slot.armed || slot.generation != generation) return;  // stale
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
      slot.armed = false;
      --armed_;
    }
    if (res < 0) {
      if (more) Disarm(fd);
      if (res == -ECANCELED) {
        QueueArm(fd);
        return;
      }
      // The descriptor cannot be polled (closed under its registration): said once;
      // armed again only when the watcher asks again (Modify), or it would repeat.
      slot.edge = false;
      EventLoop::Watcher* watcher = slot.watcher;
      dispatch(watcher, EPOLLERR);
      return;
    }
    const uint32_t ready = static_cast<uint32_t>(res) & (slot.want | EPOLLERR | EPOLLHUP);
    if (ready == 0) {
      slot.edge = true;
      if (!more) QueueArm(fd);
      return;
    }
    if (slot.edge) {
      if (more) Disarm(fd);
      slot.edge = false;
    }
    QueueArm(fd);
    EventLoop::Watcher* watcher = slot.watcher;
    dispatch(watcher, ready);  // may add, modify or remove any slot: `slot` is stale now
  }

  struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };

  io_uring ring_;
  UniqueFd wake_;
  const unsigned setup_flags_;
  const bool skip_success_;
  bool enabled_;
  std::vector<Slot> slots_;  // by descriptor
  std::vector<int> arms_;    // descriptors to arm before the next submit
  size_t armed_ = 0;         // polls with the kernel
  bool wake_armed_ = false;
  bool cancel_done_ = false;
  // Enabled and between its first Wait and Quiesce: other loops may wake it by message.
  std::atomic<bool> takes_messages_{false};
  uint64_t wake_count_ = 0;  // where the wake-up read lands

  // Receiving: made on the first MakeChannel (DEFER_TASKRUN rings only).
  std::unique_ptr<BufferRing> buffers_;
  bool buffers_failed_ = false;
  size_t buffers_held_ = 0;                  // named by a completion, not given back
  std::vector<RingChannel*> channels_;     // by descriptor
  std::vector<uint32_t> receive_generation_;  // by descriptor: the last one used
  std::vector<int> receive_arms_;    // receives to arm before the next submit
  std::vector<int> starved_;         // receives stopped by -ENOBUFS
  std::vector<int> full_channels_;   // channels that reached kMaxHeldSegments
  std::vector<int> ready_;           // channels with readiness to tell (ready_events_)
  std::vector<int> again_;           // Reap's: input left unread, told again next turn
  std::vector<int> send_queue_;      // sends to arm before the next submit
  std::vector<int> quiet_receives_;  // receives that read their socket empty
  std::vector<pollfd> quiet_polls_;  // CheckQuietReceives'
  std::vector<int> fd_scratch_;          // FlushArms' walks
  std::vector<uint16_t> index_scratch_;  // FlushArms' walks
  std::vector<Completion> pending_;  // collected, not yet dispatched
  // Sends of closed channels, with the bytes the kernel may still read.
  std::vector<std::pair<uint64_t, std::vector<char>>> orphans_;
  size_t sends_armed_ = 0;
  size_t receives_armed_ = 0;

  // Accepting (DEFER_TASKRUN rings only), by the channels' index.
  std::vector<RingAcceptChannel*> accept_channels_;
  uint32_t accept_serial_ = 0;
  std::vector<uint16_t> accept_arms_;   // accepts to arm before the next submit
  std::vector<uint16_t> full_accepts_;  // channels that reached kMaxQueuedAccepts
  std::vector<uint16_t> accept_ready_;  // channels with something for Next to tell
  std::vector<uint16_t> accept_again_;  // Reap's: left untaken, told again next turn
  size_t accepts_armed_ = 0;
};

RingChannel::~RingChannel() { backend_.Forget(*this); }

RingAcceptChannel::~RingAcceptChannel() { backend_.ForgetAcceptChannel(*this); }

void RingAcceptChannel::SetAccepting(bool on) { backend_.SetAccepting(*this, on); }

absl::StatusOr<UniqueFd> RingAcceptChannel::Next() {
  if (!accepted_.empty()) {
    UniqueFd fd = std::move(accepted_.front());
    accepted_.pop_front();
    if (full_) backend_.Taken(*this);
    return fd;
  }
  if (!error_.ok()) {
    absl::Status error = std::exchange(error_, absl::OkStatus());
    backend_.Taken(*this);
    return error;
  }
  return WouldBlockError("accept");
}

absl::string_view RingChannel::Front() const {
  if (segments_.empty()) return {};
  const Segment& s = segments_.front();
  return absl::string_view(backend_.BufferAt(s.bid) + s.begin, s.end - s.begin);
}

void RingChannel::Consume(size_t n) {
  while (n > 0 && !segments_.empty()) {
    Segment& s = segments_.front();
    const size_t m = std::min<size_t>(n, s.end - s.begin);
    s.begin = static_cast<uint16_t>(s.begin + m);
    n -= m;
    if (s.begin == s.end) {
      backend_.Recycle(s.bid);
      segments_.erase(segments_.begin());
    }
  }
  backend_.Drained(*this);
}

absl::string_view RingChannel::Take() {
  ReleaseTaken();
  if (segments_.empty()) return {};
  const Segment s = segments_.front();
  segments_.erase(segments_.begin());
  taken_ = s.bid;
  backend_.Drained(*this);
  return absl::string_view(backend_.BufferAt(s.bid) + s.begin, s.end - s.begin);
}

void RingChannel::ReleaseTaken() {
  if (taken_ < 0) return;
  backend_.Recycle(static_cast<unsigned>(std::exchange(taken_, -1)));
}

void RingChannel::SetReceiving(bool on) { backend_.SetReceiving(*this, on); }

absl::StatusOr<size_t> RingChannel::Stage(absl::Span<const absl::string_view> buffers) {
  if (!send_error_.ok()) return send_error_;
  const size_t held = unsent();
  if (held >= kStagingLimit) return WouldBlockError("send");
  size_t room = kStagingLimit - held;
  size_t total = 0;
  for (absl::string_view b : buffers) total += b.size();
  if (const size_t needed = staged_.size() + std::min(total, room);
      staged_.capacity() < needed) {
    // Grown as a vector grows (doubling) but never past kStagingLimit: a slow reader's
    // staging holds what it counts, not up to twice that.
    staged_.reserve(std::min(kStagingLimit, std::max(needed, 2 * staged_.capacity())));
  }
  size_t n = 0;
  for (absl::string_view b : buffers) {
    const size_t m = std::min(b.size(), room - n);
    staged_.insert(staged_.end(), b.data(), b.data() + m);
    n += m;
    if (n == room) break;
  }
  if (n == 0) return WouldBlockError("send");
  backend_.QueueSend(*this);
  return n;
}

absl::Status RingChannel::WaitForSent(absl::Duration deadline) {
  return backend_.WaitForSent(*this, deadline);
}

void RingChannel::SendBeforeClose() {
  if (unsent() > 0 && send_error_.ok()) backend_.SendNow(*this);
}

void RingChannel::SetNotifyWhenSent(bool on) { backend_.SetNotifyWhenSent(*this, on); }

absl::Status RefusedError(int err) {
  switch (err) {
    case ENOSYS:
      return absl::UnavailableError(
          "event loop: io_uring is not available: this kernel has no io_uring (ENOSYS)");
    case EPERM:
    case EACCES:
      return absl::UnavailableError(absl::StrCat(
          "event loop: io_uring is refused here (", std::strerror(err),
          "): kernel.io_uring_disabled, or a seccomp policy (containers) forbids it"));
    case ENOMEM:
      return absl::ResourceExhaustedError(
          "event loop: io_uring_setup: out of memory (RLIMIT_MEMLOCK too low for the ring?)");
    default:
      return PosixError(err, "event loop: io_uring_setup");
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoopBackend>> MakeIoUringBackend() {
  // The best task-run mode the kernel takes: DEFER_TASKRUN (6.1), then COOP_TASKRUN
  // (5.19), then none.
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
      0,
  };
  io_uring ring;
  io_uring_params params;
  int r = -EINVAL;
  unsigned flags = 0;
  // Set up on a thread of its own that ends at once. The kernel keeps the creating
  // thread on the ring's list of users, and when the ring goes it interrupts every
  // thread on that list (its next blocking call with a timeout fails with EINTR): that
  // must not be the caller, a user's thread. The loop thread, its only other user, has
  // ended by then.
  std::thread([&] {
    for (unsigned candidate : candidates) {
      std::memset(&params, 0, sizeof(params));
      params.flags = candidate | IORING_SETUP_CQSIZE;
      params.cq_entries = kCompletionEntries;
      r = io_uring_queue_init_params(kSubmissionEntries, &ring, &params);
      if (r != -EINVAL) {
        flags = candidate;
        break;
      }
    }
  }).join();
  if (r < 0) return RefusedError(-r);
  // Timeouts in the io_uring_enter call itself, and no completion dropped when the
  // completion queue is full.
  constexpr unsigned kNeeded = IORING_FEAT_EXT_ARG | IORING_FEAT_NODROP;
  if ((params.features & kNeeded) != kNeeded) {
    io_uring_queue_exit(&ring);
    return absl::UnavailableError(
        "event loop: this kernel's io_uring is too old (it lacks IORING_FEAT_EXT_ARG; "
        "Linux 5.11 or later is needed)");
  }
  // Blocking on purpose: only the ring reads it, and a read of a non-blocking eventfd
  // would fail with EAGAIN instead of waiting.
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC));
  if (!wake) {
    const int err = errno;
    io_uring_queue_exit(&ring);
    return PosixError(err, "event loop: eventfd");
  }
  return std::make_unique<IoUringBackend>(ring, std::move(wake), flags, params.features);
}

}  // namespace islet
