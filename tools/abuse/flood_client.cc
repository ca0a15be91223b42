// flood_client: a hostile client for the abuse tests and the abuse benchmark. Many
// connections to one port on 127.0.0.1 (nothing else is accepted), one thread, one
// level-triggered epoll loop, non-blocking sockets, bounded by --duration. It runs in a
// process of its own so that 10,000 connections fit beside the server's under the
// descriptor limit.
//
//   flood_client --target=127.0.0.1:4000 --mode=trickle --connections=10000 --interval=1s
//   flood_client --target=127.0.0.1:4000 --mode=trickle --reconnect --connections=10000
//   flood_client --target=127.0.0.1:4000 --mode=noread --payload=bytes --connections=1000
//   flood_client --target=127.0.0.1:4000 --mode=reset --connections=20000 --concurrency=256
//   flood_client --target=127.0.0.1:4000 --mode=silent --connections=200  # a chat room
//
// Modes:
// - trickle: each connection sends the next byte of an HTTP request head that never
//   ends ("GET / HTTP/1.1", then header lines without end) every --interval. The sends
//   are spread evenly over the interval (connection i sends at phase i/N of it), never
//   in a burst. What comes back is read and discarded.
// - noread: each connection sends --payload (pipelined HTTP GETs, or bytes for echo)
//   whenever its socket takes more, and never reads: the server's answers pile up.
//   --payload=lines sends 1 KiB lines (a chat flood for the messenger).
//   --rcvbuf shrinks the receive buffer so that they pile up in the server, not in the
//   kernel.
// - silent: connections that send nothing and read nothing (members of a chat room
//   who never read what it broadcasts to them).
// - reset: --connections connections in all, --concurrency at a time; each connects,
//   sends one request and closes with SO_LINGER 0, so the server sees a reset.
// With --reconnect (trickle, noread, silent) a connection the server closes or resets is opened
// again at once, as an attacker would. Failed connects (refused, no free local port,
// out of descriptors, no answer within --connect_timeout) are counted and retried after
// 100 ms; nothing here crashes or waits without a bound.
//
// Output on stdout, one line each, "flood: WHAT key=value ...":
// - trickle, noread, silent: once, "flood: ready connected=N of=N elapsed_ms=T" when N are open at
//   once, or "flood: not_ready connected=K of=N elapsed_ms=T" after --ready_timeout.
// - every --status_every (if set): "flood: status open=... connected=... eof=... ...".
// - at the end (--duration, SIGTERM or SIGINT, or every reset sent): "flood: summary
//   mode=M connected=C eof=E reset=R open=O reconnects=X rst_sent=S refused=...
//   addr_unavailable=... emfile=... connect_timeouts=... other_errors=... bytes_sent=...
//   bytes_received=... elapsed_ms=...". connected counts successful connects (reconnects
//   included), eof the connections the server closed (an orderly end), reset those it
//   reset (ECONNRESET, EPIPE), open those open at the end.
// Exit 0 after the summary; 2 on a bad flag value (one line on stderr).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/bench/load_target.h"
#include "transport/unique_fd.h"

ABSL_FLAG(std::string, target, "", "127.0.0.1:PORT (any 127.0.0.0/8 address); required");
ABSL_FLAG(std::string, mode, "trickle", "trickle, noread, silent or reset");
ABSL_FLAG(int, connections, 100, "connections at once (reset: in all)");
ABSL_FLAG(int, concurrency, 256, "reset: connections at once");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "stop after this long");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(1), "trickle: one byte per connection this often");
ABSL_FLAG(bool, reconnect, false, "trickle, noread, silent: reopen a connection the server ends");
ABSL_FLAG(std::string, payload, "http",
          "noread: http (pipelined GETs), bytes (for echo) or lines (for the messenger)");
ABSL_FLAG(int, rcvbuf, 0, "noread: SO_RCVBUF of each connection; 0 = the kernel's default");
ABSL_FLAG(int, sndbuf, 0, "SO_SNDBUF of each connection; 0 = the kernel's default");
ABSL_FLAG(int, mss, 0,
          "TCP_MAXSEG of each connection, announced to the server; 0 = the kernel's default");
ABSL_FLAG(int, max_connecting, 512, "connects in progress at once");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(5),
          "a connect not done within this is abandoned and retried");
ABSL_FLAG(absl::Duration, ready_timeout, absl::Seconds(30),
          "print not_ready if the connections are not all open within this");
ABSL_FLAG(absl::Duration, status_every, absl::ZeroDuration(),
          "print a status line this often; 0 = never");

namespace {

constexpr absl::Duration kRetryBackoff = absl::Milliseconds(100);
// A connection's share of one turn of the loop: a socket the server drains fast does
// not starve the others.
constexpr size_t kMaxWritePerEvent = 256 << 10;

enum class Mode : uint8_t { kTrickle, kNoRead, kSilent, kReset };

struct Counters {
  uint64_t connected = 0;
  uint64_t eof = 0;
  uint64_t reset = 0;
  uint64_t reconnects = 0;
  uint64_t rst_sent = 0;
  uint64_t refused = 0;
  uint64_t addr_unavailable = 0;
  uint64_t emfile = 0;
  uint64_t connect_timeouts = 0;
  uint64_t other_errors = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
};

// The head a trickler sends: a request line and header lines that never end.
class EndlessHead {
 public:
  char At(uint64_t i) const {
    if (i < kStart.size()) return kStart[i];
    return kLine[(i - kStart.size()) % kLine.size()];
  }

 private:
  static constexpr std::string_view kStart = "GET / HTTP/1.1\r\nHost: flood\r\n";
  static constexpr std::string_view kLine = "X-Flood: 1\r\n";
};

struct Slot {
  enum class State : uint8_t { kIdle, kConnecting, kOpen };
  islet::UniqueFd socket;
  State state = State::kIdle;
  bool ever_open = false;
  uint32_t generation = 0;  // bumped at every close: stale timers and events are skipped
  uint64_t head_pos = 0;    // trickle: the next byte of the head
  size_t payload_pos = 0;   // noread: where the next write starts in the payload
};

[[noreturn]] void UsageError(const std::string& message) {
  std::fprintf(stderr, "flood_client: %s\n", message.c_str());
  std::exit(2);
}

uint64_t EpollKey(uint32_t slot, uint32_t generation) {
  return (uint64_t{generation} << 32) | slot;
}

class Flood {
 public:
  Flood(Mode mode, const sockaddr_in& target, std::string payload)
      : mode_(mode),
        target_(target),
        payload_(std::move(payload)),
        interval_(absl::GetFlag(FLAGS_interval)),
        connect_timeout_(absl::GetFlag(FLAGS_connect_timeout)),
        max_connecting_(absl::GetFlag(FLAGS_max_connecting)),
        reconnect_(absl::GetFlag(FLAGS_reconnect)),
        rcvbuf_(absl::GetFlag(FLAGS_rcvbuf)),
        sndbuf_(absl::GetFlag(FLAGS_sndbuf)),
        mss_(absl::GetFlag(FLAGS_mss)) {}

  int Run() {
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) {
      std::fprintf(stderr, "flood_client: epoll_create1: %s\n", strerror(errno));
      return 1;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    const islet::UniqueFd signals(signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kSignalKey;
    if (!signals || epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals.get(), &ev) != 0) {
      std::fprintf(stderr, "flood_client: signalfd: %s\n", strerror(errno));
      return 1;
    }

    target_count_ = absl::GetFlag(FLAGS_connections);
    const int slots = mode_ == Mode::kReset
                          ? std::min(target_count_, absl::GetFlag(FLAGS_concurrency))
                          : target_count_;
    slots_.resize(static_cast<size_t>(slots));
    start_ = absl::Now();
    for (int i = 0; i < slots; ++i) pending_.emplace_back(start_, static_cast<uint32_t>(i));
    started_resets_ = 0;
    const absl::Time end = start_ + absl::GetFlag(FLAGS_duration);
    const absl::Time ready_by = start_ + absl::GetFlag(FLAGS_ready_timeout);
    const absl::Duration status_every = absl::GetFlag(FLAGS_status_every);
    absl::Time next_status = start_ + status_every;
    bool ready_reported = mode_ == Mode::kReset;

    std::vector<epoll_event> events(1024);
    bool stop = false;
    while (!stop) {
      absl::Time now = absl::Now();
      if (now >= end) break;
      if (mode_ == Mode::kReset && counters_.rst_sent >= static_cast<uint64_t>(target_count_)) {
        break;
      }
      StartConnects(now);
      absl::Duration wait = std::min(end - now, absl::Milliseconds(50));
      if (!timers_.empty()) wait = std::min(wait, timers_.top().first - now);
      // Rounded up: a timer due in 0.3 ms waits 1 ms (and runs with its neighbours)
      // rather than spinning.
      const int timeout_ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1)))));
      const int n = epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                               timeout_ms);
      if (n < 0 && errno != EINTR) {
        std::fprintf(stderr, "flood_client: epoll_wait: %s\n", strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kSignalKey) {
          stop = true;
          continue;
        }
        OnEvent(events[i].data.u64, events[i].events);
      }
      now = absl::Now();
      RunTimers(now);
      ExpireConnects(now);
      if (!ready_reported && open_ >= target_count_) {
        Print("ready", absl::StrCat("connected=", open_, " of=", target_count_));
        ready_reported = true;
      } else if (!ready_reported && now >= ready_by) {
        Print("not_ready", absl::StrCat("connected=", open_, " of=", target_count_));
        ready_reported = true;
      }
      if (status_every > absl::ZeroDuration() && now >= next_status) {
        Print("status", absl::StrCat("open=", open_, " connected=", counters_.connected,
                                     " eof=", counters_.eof, " reset=", counters_.reset,
                                     " reconnects=", counters_.reconnects));
        next_status = now + status_every;
      }
    }
    if (!ready_reported) {
      Print("not_ready", absl::StrCat("connected=", open_, " of=", target_count_));
    }
    const Counters& c = counters_;
    Print("summary",
          absl::StrCat("mode=", absl::GetFlag(FLAGS_mode), " connected=", c.connected,
                       " eof=", c.eof, " reset=", c.reset, " open=", open_,
                       " reconnects=", c.reconnects, " rst_sent=", c.rst_sent,
                       " refused=", c.refused, " addr_unavailable=", c.addr_unavailable,
                       " emfile=", c.emfile, " connect_timeouts=", c.connect_timeouts,
                       " other_errors=", c.other_errors, " bytes_sent=", c.bytes_sent,
                       " bytes_received=", c.bytes_received));
    return 0;
  }

 private:
  static constexpr uint64_t kSignalKey = ~uint64_t{0};

  void Print(const char* what, const std::string& fields) {
    std::printf("flood: %s %s elapsed_ms=%lld\n", what, fields.c_str(),
                static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - start_)));
    std::fflush(stdout);
  }

  void StartConnects(absl::Time now) {
    while (!pending_.empty() && connecting_ < max_connecting_ && pending_.front().first <= now) {
      if (mode_ == Mode::kReset && started_resets_ >= target_count_) {
        pending_.clear();
        return;
      }
      const uint32_t index = pending_.front().second;
      pending_.pop_front();
      if (!StartConnect(index, now)) return;  // out of descriptors: later
    }
  }

  // False when no descriptor was to be had (the slot is queued again).
  bool StartConnect(uint32_t index, absl::Time now) {
    Slot& slot = slots_[index];
    islet::UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE) {
        ++counters_.emfile;
      } else {
        ++counters_.other_errors;
      }
      pending_.emplace_back(now + kRetryBackoff, index);
      return false;
    }
    if (rcvbuf_ > 0) setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf_, sizeof(rcvbuf_));
    if (sndbuf_ > 0) setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf_, sizeof(sndbuf_));
    if (mss_ > 0) setsockopt(fd.get(), IPPROTO_TCP, TCP_MAXSEG, &mss_, sizeof(mss_));
    slot.socket = std::move(fd);
    const int fd_number = slot.socket.get();
    if (mode_ == Mode::kReset) ++started_resets_;
    const int rc = connect(fd_number, reinterpret_cast<const sockaddr*>(&target_), sizeof(target_));
    if (rc != 0 && errno != EINPROGRESS) {
      CountConnectError(errno);
      CloseSlot(index);
      Retry(index, now + kRetryBackoff);
      return true;
    }
    slot.state = Slot::State::kConnecting;
    ++connecting_;
    connect_deadlines_.emplace_back(now + connect_timeout_,
                                    EpollKey(index, slot.generation));
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = EpollKey(index, slot.generation);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd_number, &ev) != 0) {
      ++counters_.other_errors;
      CloseSlot(index);
      Retry(index, now + kRetryBackoff);
    }
    return true;
  }

  void CountConnectError(int error) {
    switch (error) {
      case ECONNREFUSED:
        ++counters_.refused;
        break;
      case EADDRNOTAVAIL:
        ++counters_.addr_unavailable;
        break;
      case ETIMEDOUT:
        ++counters_.connect_timeouts;
        break;
      default:
        ++counters_.other_errors;
    }
  }

  // Queues the slot to connect again, unless its mode is done with it.
  // Queues the slot to connect again after a failed attempt. A reset storm counts only
  // the attempts that got through, so a failed one is not counted as started.
  void Retry(uint32_t index, absl::Time when) {
    if (mode_ == Mode::kReset) --started_resets_;
    pending_.emplace_back(when, index);
  }

  void CloseSlot(uint32_t index) {
    Slot& slot = slots_[index];
    if (slot.state == Slot::State::kConnecting) --connecting_;
    if (slot.state == Slot::State::kOpen) --open_;
    slot.socket.reset();
    slot.state = Slot::State::kIdle;
    ++slot.generation;
  }

  // The server ended an open connection: count it, and reopen with --reconnect.
  void Ended(uint32_t index, bool was_reset, absl::Time now) {
    ++(was_reset ? counters_.reset : counters_.eof);
    CloseSlot(index);
    if (reconnect_) pending_.emplace_back(now, index);
  }

  void OnEvent(uint64_t key, uint32_t events) {
    const uint32_t index = static_cast<uint32_t>(key);
    const uint32_t generation = static_cast<uint32_t>(key >> 32);
    if (index >= slots_.size()) return;
    Slot& slot = slots_[index];
    if (slot.generation != generation || !slot.socket.valid()) return;
    const absl::Time now = absl::Now();
    if (slot.state == Slot::State::kConnecting) {
      int error = 0;
      socklen_t len = sizeof(error);
      getsockopt(slot.socket.get(), SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0) {
        CountConnectError(error);
        CloseSlot(index);
        Retry(index, now + kRetryBackoff);
        return;
      }
      OnConnected(index, now);
      return;
    }
    if (events & EPOLLERR) {
      int error = 0;
      socklen_t len = sizeof(error);
      getsockopt(slot.socket.get(), SOL_SOCKET, SO_ERROR, &error, &len);
      const bool reset = error == ECONNRESET || error == EPIPE;
      if (!reset) ++counters_.other_errors;
      Ended(index, reset, now);
      return;
    }
    if (mode_ == Mode::kTrickle) {
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) DrainInput(index, now);
      return;
    }
    // noread, silent: the server's end shows as EPOLLRDHUP; we never read what it sent.
    if (events & (EPOLLRDHUP | EPOLLHUP)) {
      Ended(index, /*was_reset=*/false, now);
      return;
    }
    if (events & EPOLLOUT) WritePayload(index, now);
  }

  void OnConnected(uint32_t index, absl::Time now) {
    Slot& slot = slots_[index];
    --connecting_;
    slot.state = Slot::State::kOpen;
    ++open_;
    ++counters_.connected;
    if (slot.ever_open) ++counters_.reconnects;
    slot.ever_open = mode_ != Mode::kReset;  // a reset storm's slots are not reconnects
    slot.head_pos = 0;
    slot.payload_pos = 0;
    epoll_event ev{};
    ev.data.u64 = EpollKey(index, slot.generation);
    switch (mode_) {
      case Mode::kReset: {
        static constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: flood\r\n\r\n";
        const ssize_t n = send(slot.socket.get(), kRequest.data(), kRequest.size(), MSG_NOSIGNAL);
        if (n > 0) counters_.bytes_sent += static_cast<uint64_t>(n);
        const linger abort_on_close = {.l_onoff = 1, .l_linger = 0};
        setsockopt(slot.socket.get(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
        ++counters_.rst_sent;
        CloseSlot(index);
        if (started_resets_ < target_count_) pending_.emplace_back(now, index);
        return;
      }
      case Mode::kTrickle:
        ev.events = EPOLLIN | EPOLLRDHUP;
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, slot.socket.get(), &ev);
        // The first byte at once (the server's head deadline starts with it), the rest
        // on this connection's phase of the interval.
        SendNextByte(index, now);
        if (slot.socket.valid()) timers_.emplace(NextPhase(index, now), EpollKey(index, slot.generation));
        return;
      case Mode::kNoRead:
        ev.events = EPOLLOUT | EPOLLRDHUP;
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, slot.socket.get(), &ev);
        return;
      case Mode::kSilent:
        ev.events = EPOLLRDHUP;
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, slot.socket.get(), &ev);
        return;
    }
  }

  // Connection i sends at start + interval * (i / N + k): the first such time after now.
  absl::Time NextPhase(uint32_t index, absl::Time now) const {
    const absl::Duration interval = interval_;
    const absl::Duration offset = interval * (static_cast<double>(index) / slots_.size());
    absl::Duration remainder;
    const int64_t k = absl::IDivDuration(now - start_ - offset, interval, &remainder) + 1;
    return start_ + offset + interval * k;
  }

  void SendNextByte(uint32_t index, absl::Time now) {
    Slot& slot = slots_[index];
    const char byte = head_.At(slot.head_pos);
    const ssize_t n = send(slot.socket.get(), &byte, 1, MSG_NOSIGNAL);
    if (n == 1) {
      ++slot.head_pos;
      ++counters_.bytes_sent;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      Ended(index, errno == ECONNRESET || errno == EPIPE, now);
    }
  }

  void RunTimers(absl::Time now) {
    while (!timers_.empty() && timers_.top().first <= now) {
      const uint64_t key = timers_.top().second;
      timers_.pop();
      const uint32_t index = static_cast<uint32_t>(key);
      Slot& slot = slots_[index];
      if (slot.generation != static_cast<uint32_t>(key >> 32) ||
          slot.state != Slot::State::kOpen) {
        continue;
      }
      SendNextByte(index, now);
      if (slot.socket.valid() && slot.generation == static_cast<uint32_t>(key >> 32)) {
        timers_.emplace(now + interval_, key);
      }
    }
  }

  void DrainInput(uint32_t index, absl::Time now) {
    Slot& slot = slots_[index];
    char buffer[16 << 10];
    for (;;) {
      const ssize_t n = recv(slot.socket.get(), buffer, sizeof(buffer), 0);
      if (n > 0) {
        counters_.bytes_received += static_cast<uint64_t>(n);
        continue;
      }
      if (n == 0) {
        Ended(index, /*was_reset=*/false, now);
      } else if (errno == ECONNRESET || errno == EPIPE) {
        Ended(index, /*was_reset=*/true, now);
      } else if (errno != EAGAIN && errno != EINTR) {
        ++counters_.other_errors;
        Ended(index, /*was_reset=*/false, now);
      }
      return;
    }
  }

  void WritePayload(uint32_t index, absl::Time now) {
    Slot& slot = slots_[index];
    size_t written = 0;
    while (written < kMaxWritePerEvent) {
      const size_t left = payload_.size() - slot.payload_pos;
      const ssize_t n = send(slot.socket.get(), payload_.data() + slot.payload_pos, left, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        Ended(index, errno == ECONNRESET || errno == EPIPE, now);
        return;
      }
      counters_.bytes_sent += static_cast<uint64_t>(n);
      written += static_cast<size_t>(n);
      slot.payload_pos = (slot.payload_pos + static_cast<size_t>(n)) % payload_.size();
    }
  }

  void ExpireConnects(absl::Time now) {
    while (!connect_deadlines_.empty() && connect_deadlines_.front().first <= now) {
      const uint64_t key = connect_deadlines_.front().second;
      connect_deadlines_.pop_front();
      const uint32_t index = static_cast<uint32_t>(key);
      const Slot& slot = slots_[index];
      if (slot.generation != static_cast<uint32_t>(key >> 32) ||
          slot.state != Slot::State::kConnecting) {
        continue;
      }
      ++counters_.connect_timeouts;
      CloseSlot(index);
      Retry(index, now);
    }
  }

  const Mode mode_;
  const sockaddr_in target_;
  const std::string payload_;
  const EndlessHead head_{};
  const absl::Duration interval_;
  const absl::Duration connect_timeout_;
  const int max_connecting_;
  const bool reconnect_;
  const int rcvbuf_;
  const int sndbuf_;
  const int mss_;
  islet::UniqueFd epoll_;
  int target_count_ = 0;
  int started_resets_ = 0;  // reset: connects begun (whose attempt has not failed)
  int connecting_ = 0;
  int open_ = 0;
  absl::Time start_;
  std::vector<Slot> slots_;
  std::deque<std::pair<absl::Time, uint32_t>> pending_;  // slots to connect, and when
  std::deque<std::pair<absl::Time, uint64_t>> connect_deadlines_;  // in deadline order
  using Timer = std::pair<absl::Time, uint64_t>;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  Counters counters_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sockaddr_in target;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &target) ||
      (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
    UsageError(absl::StrCat("--target must be 127.x.y.z:PORT, not \"",
                            absl::GetFlag(FLAGS_target), "\""));
  }
  const std::string mode_name = absl::GetFlag(FLAGS_mode);
  Mode mode;
  if (mode_name == "trickle") {
    mode = Mode::kTrickle;
  } else if (mode_name == "noread") {
    mode = Mode::kNoRead;
  } else if (mode_name == "silent") {
    mode = Mode::kSilent;
  } else if (mode_name == "reset") {
    mode = Mode::kReset;
  } else {
    UsageError(
        absl::StrCat("--mode must be trickle, noread, silent or reset, not \"", mode_name, "\""));
  }
  if (absl::GetFlag(FLAGS_connections) < 1 || absl::GetFlag(FLAGS_concurrency) < 1 ||
      absl::GetFlag(FLAGS_max_connecting) < 1) {
    UsageError("--connections, --concurrency and --max_connecting must be at least 1");
  }
  if (absl::GetFlag(FLAGS_interval) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_duration) <= absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_connect_timeout) <= absl::ZeroDuration()) {
    UsageError("--interval, --duration and --connect_timeout must be positive");
  }
  std::string payload;
  const std::string payload_name = absl::GetFlag(FLAGS_payload);
  if (payload_name == "http") {
    // About 64 KiB of pipelined requests, each answered with more than it costs.
    for (int i = 0; i < 2048; ++i) payload += "GET / HTTP/1.1\r\nHost: flood\r\n\r\n";
  } else if (payload_name == "bytes") {
    payload.assign(64 << 10, 'x');
  } else if (payload_name == "lines") {
    for (int i = 0; i < 64; ++i) payload += std::string(1023, 'x') + "\n";
  } else {
    UsageError(
        absl::StrCat("--payload must be http, bytes or lines, not \"", payload_name, "\""));
  }
  islet::bench::RaiseDescriptorLimit();
  Flood flood(mode, target, std::move(payload));
  return flood.Run();
}
