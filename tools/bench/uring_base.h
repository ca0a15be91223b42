// The minimal io_uring server the io_uring benchmark peers (uring_echo, uring_http) are
// built on: the floor of a completion-based server, as epoll_base.h is the ceiling of a
// readiness-based one. Same flags, same "listening" line, same protocols.
//
// Each thread owns one SO_REUSEPORT listener and one ring. The ring holds one multishot
// accept on the listener, one multishot recv per connection that picks its buffer from a
// provided-buffer ring shared by every connection of the thread, and the sends, each an
// SQE; one io_uring_submit_and_wait per loop iteration submits them all and waits.
// Accepted sockets go straight into the ring's registered file table (no descriptor in
// the process's table); recv, send and close name them by index.
//
// A send points at the bytes to send: the provided buffer the request arrived in (echo:
// the buffer goes back to the ring once its send completes) or static bytes (HTTP). A
// connection has at most one send in flight; what it writes meanwhile is copied into its
// pending output and sent as one SQE when the first completes. What the kernel refuses
// (a short send) is kept and sent again, and reading is paused meanwhile (the multishot
// recv is cancelled), as epoll_base does with backpressure; pending output over
// kPendingLimit pauses reading too. A multishot recv that ends (no IORING_CQE_F_MORE:
// cancelled, buffer ring empty, or the kernel's choice) is armed again unless paused or
// closing; after -ENOBUFS only once buffers have gone back to the ring. A peer that
// closes its side still gets the output owed to it before the connection closes, and so
// does one whose protocol asks to close.
//
// Every feature can be turned off, one by one, to measure what it buys (the defaults are
// all on): --accept=oneshot (--accept=poll: readiness, a poll then accept4(2) until
// EAGAIN, as the harness accepts; implies --fixed_files=off), --recv=oneshot (one-shot recv, still from the buffer ring),
// --send=syscall (send(2) from the loop; implies --fixed_files=off), --submit=split
// (io_uring_submit, then io_uring_wait_cqe), --fixed_files=off, --register_ring=off,
// --setup=coop|none (the ring flags: defer = SINGLE_ISSUER|DEFER_TASKRUN, falling back
// to coop = COOP_TASKRUN|TASKRUN_FLAG, then none, as far as the kernel refuses them).
// --peer_address=getpeername adds a getpeername(2) per accepted connection (what a
// server that reports its peers pays with an accept that gives no address; implies
// --fixed_files=off).
// --buffers=N sets the provided buffers per thread (512; tests make it tiny). The ring's
// flags and features in use are printed on stderr at start. --probe sets a ring up and
// exits: 0 if io_uring works, 77 if the kernel or its policy refuses it (ENOSYS, EPERM),
// which any start also does. Written from scratch for the benchmarks.
//
//   uring_echo --port=0 --threads=1 --ip=127.0.0.1
//
// Prints "NAME: listening on IP:PORT (N threads)" once listening; runs until killed.
#ifndef ISLET_TOOLS_BENCH_URING_BASE_H_
#define ISLET_TOOLS_BENCH_URING_BASE_H_

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tools/bench/epoll_base.h"

namespace islet::bench {

// The provided buffers of one thread: kBufferCount buffers (--buffers=N, a power of two:
// the ring's size) of kBufferSize bytes.
inline constexpr unsigned kBufferCount = 512;
inline constexpr unsigned kBufferSize = 16 * 1024;
inline constexpr int kBufferGroup = 0;
// Output a connection may hold (beyond the send in flight) before its reading pauses.
inline constexpr size_t kPendingLimit = 64 * 1024;

// What the loop uses of io_uring; each can be turned off to measure what it buys.
struct UringFeatures {
  enum class Setup { kDefer, kCoop, kNone };
  enum class Accept { kMultishot, kOneshot, kPoll };
  Accept accept = Accept::kMultishot;
  // getpeername(2) for each accepted connection, as a server that reports its peers
  // must do when the accept itself gives no address (a multishot accept).
  bool peer_address = false;
  bool multishot_recv = true;
  bool send_sqe = true;
  bool submit_and_wait = true;
  bool fixed_files = true;
  bool register_ring = true;
  Setup setup = Setup::kDefer;
};

struct UringServerFlags {
  EpollServerFlags server;
  UringFeatures features;
  unsigned buffers = kBufferCount;
  bool probe = false;
};

// Exit status of a server (and of --probe) that io_uring is refused to.
inline constexpr int kUringUnavailableExit = 77;

[[noreturn]] inline void DieUring(const char* name, const char* what, int error) {
  if (error == ENOSYS || error == EPERM) {
    std::fprintf(stderr, "%s: io_uring unavailable: %s: %s\n", name, what, std::strerror(error));
    std::exit(kUringUnavailableExit);
  }
  std::fprintf(stderr, "%s: %s: %s\n", name, what, std::strerror(error));
  std::exit(1);
}

inline UringServerFlags ParseUringServerFlags(const char* name, int argc, char** argv) {
  UringServerFlags f;
  UringFeatures& u = f.features;
  // The server flags (--ip, --port, --threads) go to epoll_base's parser.
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto choice = [&](const char* flag, const char* on, const char* off, bool* value) {
      const std::string prefix = std::string(flag) + "=";
      if (a.compare(0, prefix.size(), prefix) != 0) return false;
      const std::string v = a.substr(prefix.size());
      if (v != on && v != off) {
        std::fprintf(stderr, "%s: %s must be %s or %s\n", name, flag, on, off);
        std::exit(2);
      }
      *value = v == on;
      return true;
    };
    if (choice("--peer_address", "getpeername", "none", &u.peer_address) ||
        choice("--recv", "multishot", "oneshot", &u.multishot_recv) ||
        choice("--send", "sqe", "syscall", &u.send_sqe) ||
        choice("--submit", "combined", "split", &u.submit_and_wait) ||
        choice("--fixed_files", "on", "off", &u.fixed_files) ||
        choice("--register_ring", "on", "off", &u.register_ring)) {
      continue;
    }
    if (a == "--accept=multishot") {
      u.accept = UringFeatures::Accept::kMultishot;
    } else if (a == "--accept=oneshot") {
      u.accept = UringFeatures::Accept::kOneshot;
    } else if (a == "--accept=poll") {
      u.accept = UringFeatures::Accept::kPoll;
    } else if (a == "--setup=defer") {
      u.setup = UringFeatures::Setup::kDefer;
    } else if (a == "--setup=coop") {
      u.setup = UringFeatures::Setup::kCoop;
    } else if (a == "--setup=none") {
      u.setup = UringFeatures::Setup::kNone;
    } else if (a.compare(0, 10, "--buffers=") == 0) {
      f.buffers = static_cast<unsigned>(std::atoi(a.c_str() + 10));
      if (f.buffers == 0 || f.buffers > 32768 || (f.buffers & (f.buffers - 1)) != 0) {
        std::fprintf(stderr, "%s: --buffers must be a power of two up to 32768\n", name);
        std::exit(2);
      }
    } else if (a == "--probe") {
      f.probe = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  // A send(2), accept4(2) and getpeername(2) need a descriptor, which a registered file
  // is not.
  if (!u.send_sqe || u.accept == UringFeatures::Accept::kPoll || u.peer_address) {
    u.fixed_files = false;
  }
  f.server = ParseEpollServerFlags(name, static_cast<int>(rest.size()), rest.data());
  return f;
}

// One ring, set up with the strongest flags the kernel takes of those asked for; the
// flags it took are in flags().
class Ring {
 public:
  Ring(const char* name, const UringFeatures& features) {
    const unsigned defer = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    const unsigned coop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    std::vector<unsigned> tries;
    if (features.setup == UringFeatures::Setup::kDefer) tries.push_back(defer);
    if (features.setup != UringFeatures::Setup::kNone) tries.push_back(coop);
    tries.push_back(0);
    int ret = -EINVAL;
    for (unsigned flags : tries) {
      io_uring_params p = {};
      // Room for a completion per connection and more: an overflowing CQ costs a slow path.
      p.flags = flags | IORING_SETUP_CQSIZE;
      p.cq_entries = 16384;
      ret = io_uring_queue_init_params(1024, &ring_, &p);
      if (ret == 0) {
        flags_ = flags;
        break;
      }
      if (ret != -EINVAL) break;  // a refusal of io_uring itself, not of a flag
    }
    if (ret != 0) DieUring(name, "io_uring_queue_init_params", -ret);
    if (features.register_ring) registered_ = io_uring_register_ring_fd(&ring_) == 1;
  }
  ~Ring() { io_uring_queue_exit(&ring_); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* get() { return &ring_; }
  unsigned flags() const { return flags_; }
  bool registered() const { return registered_; }

  // A free SQE; submits what is queued first if the SQ is full.
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) DieUring("uring server", "no SQE after a submit", EBUSY);
    }
    return sqe;
  }

 private:
  io_uring ring_;
  unsigned flags_ = 0;
  bool registered_ = false;
};

// The provided-buffer ring of one thread: `count` buffers, handed to the kernel at start
// and given back one by one (Recycle) once their bytes are no longer needed.
class BufferRing {
 public:
  BufferRing(const char* name, io_uring* ring, unsigned count)
      : ring_(ring),
        count_(count),
        // Not zeroed: the pages are touched only as the kernel fills them.
        bytes_(std::make_unique_for_overwrite<char[]>(size_t{count} * kBufferSize)) {
    ring_bytes_ = count * sizeof(io_uring_buf);
    void* mapped =
        ::mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mapped == MAP_FAILED) Die(name, "mmap");
    br_ = static_cast<io_uring_buf_ring*>(mapped);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg = {};
    reg.ring_addr = reinterpret_cast<uintptr_t>(br_);
    reg.ring_entries = count;
    reg.bgid = kBufferGroup;
    const int ret = io_uring_register_buf_ring(ring_, &reg, 0);
    if (ret != 0) DieUring(name, "io_uring_register_buf_ring", -ret);
    const int mask = io_uring_buf_ring_mask(count);
    for (unsigned bid = 0; bid < count; ++bid) {
      io_uring_buf_ring_add(br_, At(bid), kBufferSize, static_cast<unsigned short>(bid), mask,
                            static_cast<int>(bid));
    }
    io_uring_buf_ring_advance(br_, static_cast<int>(count));
  }
  ~BufferRing() {
    io_uring_unregister_buf_ring(ring_, kBufferGroup);
    ::munmap(br_, ring_bytes_);
  }
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  char* At(unsigned bid) { return bytes_.get() + size_t{bid} * kBufferSize; }

  void Recycle(unsigned bid) {
    io_uring_buf_ring_add(br_, At(bid), kBufferSize, static_cast<unsigned short>(bid),
                          io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(br_, 1);
  }

 private:
  io_uring* ring_;
  unsigned count_;
  std::unique_ptr<char[]> bytes_;
  io_uring_buf_ring* br_ = nullptr;
  size_t ring_bytes_ = 0;
};

// Protocol: as for EpollWorker (epoll_base.h): a default-constructible per-connection
// state with
//   template <typename Write> void OnData(const char* data, size_t n, Write&& write);
// which answers by calling write(bytes, length) any number of times; bytes are either
// within data or live as long as the program.
template <typename Protocol>
class UringWorker {
 public:
  UringWorker(const char* name, int listener, const UringFeatures& features, unsigned buffers)
      : name_(name), listener_(listener), features_(features), ring_(name, features),
        buffers_(name, ring_.get(), buffers) {
    if (features_.fixed_files) {
      rlimit lim = {};
      ::getrlimit(RLIMIT_NOFILE, &lim);
      // The table may not exceed the descriptor limit.
      const unsigned slots = static_cast<unsigned>(std::min<rlim_t>(lim.rlim_cur, 65536));
      const int ret = io_uring_register_files_sparse(ring_.get(), slots);
      if (ret != 0) {
        std::fprintf(stderr, "%s: io_uring_register_files_sparse(%u): %s: fixed files off\n", name_,
                     slots, std::strerror(-ret));
        features_.fixed_files = false;
      }
    }
    ArmAccept();
  }

  // What the ring took, for the start-up line.
  std::string Describe() const {
    std::string s;
    const unsigned f = ring_.flags();
    s += (f & IORING_SETUP_DEFER_TASKRUN) ? "SINGLE_ISSUER|DEFER_TASKRUN"
         : (f & IORING_SETUP_COOP_TASKRUN) ? "COOP_TASKRUN|TASKRUN_FLAG"
                                           : "no setup flags";
    s += features_.accept == UringFeatures::Accept::kMultishot ? ", multishot accept"
         : features_.accept == UringFeatures::Accept::kOneshot ? ", one-shot accept"
                                                                : ", poll + accept4";
    if (features_.peer_address) s += ", getpeername";
    s += features_.multishot_recv ? ", multishot recv" : ", one-shot recv";
    s += features_.send_sqe ? ", send SQEs" : ", send(2)";
    s += features_.submit_and_wait ? ", submit_and_wait" : ", submit + wait_cqe";
    s += features_.fixed_files ? ", fixed files" : ", plain descriptors";
    s += ring_.registered() ? ", registered ring fd" : ", ring fd not registered";
    return s;
  }

  [[noreturn]] void Run() {
    io_uring* ring = ring_.get();
    for (;;) {
      if (features_.submit_and_wait) {
        io_uring_submit_and_wait(ring, 1);
      } else {
        io_uring_submit(ring);
        io_uring_cqe* first = nullptr;
        io_uring_wait_cqe(ring, &first);
      }
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring, head, cqe) {
        Complete(cqe);
        ++seen;
      }
      io_uring_cq_advance(ring, seen);
      if (recycled_ && !starved_.empty()) RearmStarved();
      recycled_ = false;
    }
  }

 private:
  // What a completion is for: the low bits of its user_data (a Conn is 8-aligned).
  enum Tag : uint64_t { kIgnore = 0, kAccept = 1, kRecv = 2, kSend = 3 };
  static constexpr uint64_t kTagMask = 7;

  struct Conn {
    int fd = -1;  // a fixed-file index with fixed files
    size_t slot = 0;  // in conns_
    bool recv_armed = false;
    bool cancelling = false;  // a cancel of the recv is on its way
    bool paused = false;  // reading paused: output refused or over kPendingLimit
    bool starved = false;  // recv ended with -ENOBUFS; in starved_
    bool eof = false;  // the peer closed its side: close once the output is out
    bool closing = false;
    bool send_in_flight = false;
    int held_bid = -1;  // the provided buffer the send in flight points into
    const char* send_data = nullptr;
    size_t send_size = 0;
    std::string sending;  // owned bytes of the send in flight, if it points here
    std::string pending;  // written while a send was in flight
    Protocol protocol;
  };

  static uint64_t Data(Conn* c, Tag tag) { return reinterpret_cast<uint64_t>(c) | tag; }

  void Prep(io_uring_sqe* sqe, Conn* c, Tag tag) {
    io_uring_sqe_set_data64(sqe, Data(c, tag));
    if (features_.fixed_files && c != nullptr) sqe->flags |= IOSQE_FIXED_FILE;
  }

  void ArmAccept() {
    io_uring_sqe* sqe = ring_.Sqe();
    const bool multishot = features_.accept == UringFeatures::Accept::kMultishot;
    // A registered file has no descriptor to close on exec: SOCK_CLOEXEC is refused.
    if (features_.accept == UringFeatures::Accept::kPoll) {
      // Readiness, as the harness accepts: a poll, then accept4(2) until EAGAIN.
      io_uring_prep_poll_add(sqe, listener_, POLLIN);
    } else if (features_.fixed_files) {
      if (multishot) {
        io_uring_prep_multishot_accept_direct(sqe, listener_, nullptr, nullptr, 0);
      } else {
        io_uring_prep_accept_direct(sqe, listener_, nullptr, nullptr, 0,
                                    IORING_FILE_INDEX_ALLOC - 1);
      }
    } else if (multishot) {
      io_uring_prep_multishot_accept(sqe, listener_, nullptr, nullptr, SOCK_CLOEXEC);
    } else {
      io_uring_prep_accept(sqe, listener_, nullptr, nullptr, SOCK_CLOEXEC);
    }
    io_uring_sqe_set_data64(sqe, kAccept);
  }

  void ArmRecv(Conn* c) {
    io_uring_sqe* sqe = ring_.Sqe();
    if (features_.multishot_recv) {
      io_uring_prep_recv_multishot(sqe, c->fd, nullptr, 0, 0);
    } else {
      io_uring_prep_recv(sqe, c->fd, nullptr, 0, 0);
    }
    Prep(sqe, c, kRecv);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    c->recv_armed = true;
  }

  void CancelRecv(Conn* c) {
    if (!c->recv_armed || c->cancelling) return;
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_cancel64(sqe, Data(c, kRecv), 0);
    io_uring_sqe_set_data64(sqe, kIgnore);
    c->cancelling = true;
  }

  void SubmitSend(Conn* c, const char* data, size_t size) {
    io_uring_sqe* sqe = ring_.Sqe();
    io_uring_prep_send(sqe, c->fd, data, size, MSG_NOSIGNAL);
    Prep(sqe, c, kSend);
    c->send_in_flight = true;
    c->send_data = data;
    c->send_size = size;
  }

  void Recycle(int bid) {
    buffers_.Recycle(static_cast<unsigned>(bid));
    recycled_ = true;
  }

  void ReleaseHeld(Conn* c) {
    if (c->held_bid >= 0) Recycle(c->held_bid);
    c->held_bid = -1;
  }

  void Complete(io_uring_cqe* cqe) {
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    auto* c = reinterpret_cast<Conn*>(data & ~kTagMask);
    switch (data & kTagMask) {
      case kAccept:
        OnAccept(cqe);
        break;
      case kRecv:
        OnRecv(c, cqe);
        break;
      case kSend:
        OnSend(c, cqe->res);
        break;
      default:
        break;
    }
  }

  void Adopt(int fd) {
    if (features_.peer_address) {
      sockaddr_storage peer;
      socklen_t length = sizeof(peer);
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length);
    }
    auto conn = std::make_unique<Conn>();
    Conn* c = conn.get();
    c->fd = fd;
    c->slot = conns_.size();
    conns_.push_back(std::move(conn));
    ArmRecv(c);
  }

  void OnAccept(io_uring_cqe* cqe) {
    if (features_.accept == UringFeatures::Accept::kPoll) {
      for (;;) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          Adopt(fd);
        } else if (errno == EMFILE || errno == ENFILE) {
          accept_after_close_ = true;
          return;
        } else if (errno != EINTR && errno != ECONNABORTED) {
          break;  // EAGAIN: poll again
        }
      }
      ArmAccept();
      return;
    }
    const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (cqe->res >= 0) Adopt(cqe->res);
    if (more) return;
    switch (-cqe->res) {
      case ENFILE:
      case EMFILE:
        // Out of descriptors or table slots: accept again once a connection has
        // closed, not in a loop of failures.
        accept_after_close_ = true;
        break;
      case EINVAL:
      case EBADF:
      case ENOTSOCK:
      case EOPNOTSUPP:
        DieUring(name_, "accept", -cqe->res);  // would fail again at once
      default:
        ArmAccept();
    }
  }

  void OnRecv(Conn* c, io_uring_cqe* cqe) {
    if ((cqe->flags & IORING_CQE_F_MORE) == 0) {
      c->recv_armed = false;
      c->cancelling = false;
    }
    const int res = cqe->res;
    if (res > 0) {
      const int bid = static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
      if (c->closing || c->eof) {
        Recycle(bid);
      } else {
        Deliver(c, buffers_.At(static_cast<unsigned>(bid)), static_cast<size_t>(res), bid);
        if (c->protocol.close_requested && !c->closing) {
          // As if the peer had closed: no more reading, and the close once the output
          // is out.
          c->eof = true;
          if (c->send_in_flight) {
            CancelRecv(c);
          } else {
            StartClose(c);
          }
        }
      }
    } else if (res == -ENOBUFS) {
      c->starved = true;
      starved_.push_back(c);
    } else if (res == 0) {
      c->eof = true;
      if (!c->send_in_flight) StartClose(c);  // else once the output is out
    } else if (res != -ECANCELED) {
      StartClose(c);
    }
    if (!c->recv_armed) {
      if (c->closing) {
        FinishClose(c);
      } else if (!c->paused && !c->starved && !c->eof) {
        ArmRecv(c);
      }
    }
  }

  void Deliver(Conn* c, const char* data, size_t n, int bid) {
    bool hold = false;
    c->protocol.OnData(data, n, [&](const char* p, size_t len) {
      if (c->closing || len == 0) return;
      if (c->send_in_flight || !c->pending.empty()) {
        c->pending.append(p, len);
        if (c->pending.size() > kPendingLimit) Pause(c);
        return;
      }
      if (features_.send_sqe) {
        SubmitSend(c, p, len);
        hold = hold || (p >= data && p < data + n);
        return;
      }
      ssize_t w = ::send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno != EAGAIN) {
          StartClose(c);
          return;
        }
        w = 0;
      }
      if (static_cast<size_t>(w) < len) {
        // The rest goes out as an SQE, which waits for room in the socket itself.
        c->sending.assign(p + w, len - static_cast<size_t>(w));
        SubmitSend(c, c->sending.data(), c->sending.size());
        Pause(c);
      }
    });
    if (hold) {
      c->held_bid = bid;
    } else {
      Recycle(bid);
    }
  }

  void OnSend(Conn* c, int res) {
    c->send_in_flight = false;
    if (res < 0 || c->closing) {
      ReleaseHeld(c);
      if (res < 0) StartClose(c);
      FinishClose(c);
      return;
    }
    const size_t sent = static_cast<size_t>(res);
    if (sent < c->send_size) {
      // The kernel took part: keep the rest (in our own bytes, so that the provided
      // buffer goes back to the ring), send it when there is room, and stop reading.
      const char* rest = c->send_data + sent;
      const size_t rest_size = c->send_size - sent;
      const bool owned = !c->sending.empty() && rest >= c->sending.data() &&
                         rest < c->sending.data() + c->sending.size();
      if (!owned) {
        c->sending.assign(rest, rest_size);
        ReleaseHeld(c);
        SubmitSend(c, c->sending.data(), c->sending.size());
      } else {
        SubmitSend(c, rest, rest_size);
      }
      Pause(c);
      return;
    }
    ReleaseHeld(c);
    c->sending.clear();
    if (!c->pending.empty()) {
      std::swap(c->sending, c->pending);
      SubmitSend(c, c->sending.data(), c->sending.size());
      return;
    }
    if (c->eof) {
      StartClose(c);
      FinishClose(c);
      return;
    }
    Resume(c);
  }

  void Pause(Conn* c) {
    if (c->paused) return;
    c->paused = true;
    if (features_.multishot_recv) CancelRecv(c);
  }

  void Resume(Conn* c) {
    if (!c->paused) return;
    c->paused = false;
    if (!c->recv_armed && !c->closing && !c->starved && !c->eof) ArmRecv(c);
  }

  void RearmStarved() {
    std::vector<Conn*> starved;
    starved.swap(starved_);
    for (Conn* c : starved) {
      c->starved = false;
      if (!c->recv_armed && !c->closing && !c->paused && !c->eof) ArmRecv(c);
    }
  }

  void StartClose(Conn* c) {
    c->closing = true;
    CancelRecv(c);
  }

  // Frees a closing connection once nothing of the ring's refers to it.
  void FinishClose(Conn* c) {
    if (!c->closing || c->recv_armed || c->send_in_flight) return;
    ReleaseHeld(c);
    if (c->starved) starved_.erase(std::find(starved_.begin(), starved_.end(), c));
    io_uring_sqe* sqe = ring_.Sqe();
    if (features_.fixed_files) {
      io_uring_prep_close_direct(sqe, static_cast<unsigned>(c->fd));
    } else {
      io_uring_prep_close(sqe, c->fd);
    }
    io_uring_sqe_set_data64(sqe, kIgnore);
    const size_t slot = c->slot;
    if (slot + 1 != conns_.size()) {
      conns_[slot] = std::move(conns_.back());
      conns_[slot]->slot = slot;
    }
    conns_.pop_back();
    if (accept_after_close_) {
      accept_after_close_ = false;
      ArmAccept();
    }
  }

  const char* name_;
  int listener_;
  UringFeatures features_;
  Ring ring_;
  BufferRing buffers_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> starved_;  // waiting for buffers to go back to the ring
  bool recycled_ = false;  // a buffer went back to the ring in this iteration
  bool accept_after_close_ = false;
};

// Sets a ring and its buffer ring up as a server would, and exits: 0, or
// kUringUnavailableExit if io_uring is refused.
[[noreturn]] inline void ProbeUring(const char* name, const UringFeatures& features) {
  Ring ring(name, features);
  BufferRing buffers(name, ring.get(), kBufferCount);
  std::printf("%s: io_uring available\n", name);
  std::exit(0);
}

template <typename Protocol>
[[noreturn]] void RunUringServer(const char* name, int argc, char** argv) {
  const UringServerFlags flags = ParseUringServerFlags(name, argc, argv);
  if (flags.probe) ProbeUring(name, flags.features);
  ::signal(SIGPIPE, SIG_IGN);
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  const int threads = flags.server.threads;
  // The first listener picks the port (--port=0); the others share it (SO_REUSEPORT).
  // TCP_NODELAY on a listener is inherited by the sockets it accepts: no setsockopt per
  // connection (a registered file could not take one).
  const int one = 1;
  std::vector<int> listeners;
  listeners.push_back(Listen(name, flags.server.ip, flags.server.port));
  sockaddr_in bound = {};
  socklen_t len = sizeof(bound);
  ::getsockname(listeners[0], reinterpret_cast<sockaddr*>(&bound), &len);
  const int port = ntohs(bound.sin_port);
  for (int i = 1; i < threads; ++i) listeners.push_back(Listen(name, flags.server.ip, port));
  for (int fd : listeners) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // Each ring is set up on the thread that runs it (SINGLE_ISSUER).
  std::latch ready(threads - 1);
  for (int i = 1; i < threads; ++i) {
    std::thread([&, fd = listeners[static_cast<size_t>(i)]] {
      UringWorker<Protocol> worker(name, fd, flags.features, flags.buffers);
      ready.count_down();
      worker.Run();
    }).detach();
  }
  UringWorker<Protocol> worker(name, listeners[0], flags.features, flags.buffers);
  ready.wait();
  std::fprintf(stderr, "%s: %s\n", name, worker.Describe().c_str());
  std::printf("%s: listening on %s:%d (%d threads)\n", name, flags.server.ip.c_str(), port,
              threads);
  std::fflush(stdout);
  worker.Run();
}

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_URING_BASE_H_
