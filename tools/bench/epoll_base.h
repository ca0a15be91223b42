// The minimal epoll server the benchmark peers (epoll_echo, epoll_http) are built on:
// the ceiling for a socket server, the cost of the system calls and little else.
//
// Each thread owns one SO_REUSEPORT listener and one level-triggered epoll set; it
// accepts, reads with one recv() per readiness event into one shared 64 KiB buffer,
// and answers with one send(). What the kernel refuses is kept per connection and
// written on EPOLLOUT, with reading paused meanwhile (backpressure); a connection whose
// protocol asks to close is closed once that is out. No timers, no
// telemetry, no allocation on the steady path. Written from scratch for the benchmarks.
//
//   epoll_echo --port=0 --threads=1 --ip=127.0.0.1
//
// Prints "NAME: listening on IP:PORT (N threads)" once listening; runs until killed.
#ifndef ISLET_TOOLS_BENCH_EPOLL_BASE_H_
#define ISLET_TOOLS_BENCH_EPOLL_BASE_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace islet::bench {

struct EpollServerFlags {
  std::string ip = "127.0.0.1";
  int port = 0;
  int threads = 1;
};

[[noreturn]] inline void Die(const char* name, const char* what) {
  std::fprintf(stderr, "%s: %s: %s\n", name, what, std::strerror(errno));
  std::exit(1);
}

inline EpollServerFlags ParseEpollServerFlags(const char* name, int argc, char** argv) {
  EpollServerFlags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--ip=")) {
      f.ip = v;
    } else if (const char* v = value("--port=")) {
      f.port = std::atoi(v);
    } else if (const char* v = value("--threads=")) {
      f.threads = std::atoi(v);
    } else {
      std::fprintf(stderr, "%s: unknown argument %s (flags: --ip= --port= --threads=)\n", name,
                   argv[i]);
      std::exit(2);
    }
  }
  if (f.threads < 1 || f.port < 0 || f.port > 65535) {
    std::fprintf(stderr, "%s: bad --threads or --port\n", name);
    std::exit(2);
  }
  return f;
}

inline int Listen(const char* name, const std::string& ip, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(name, "socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "%s: --ip must be IPv4\n", name);
    std::exit(2);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die(name, "bind");
  if (::listen(fd, 1024) != 0) Die(name, "listen");
  return fd;
}

// Protocol: a default-constructible per-connection state with
//   template <typename Write> void OnData(const char* data, size_t n, Write&& write);
// which answers by calling write(bytes, length) any number of times.
template <typename Protocol>
class EpollWorker {
 public:
  explicit EpollWorker(int listener) : listener_(listener), buffer_(64 * 1024) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) Die("epoll server", "epoll_create1");
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the listener
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev) != 0) Die("epoll server", "epoll_ctl");
  }

  [[noreturn]] void Run() {
    epoll_event events[256];
    for (;;) {
      const int n = ::epoll_wait(epoll_, events, 256, -1);
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<Conn*>(events[i].data.ptr);
        if (c == nullptr) {
          Accept();
        } else {
          OnReady(c, events[i].events);
        }
      }
    }
  }

 private:
  struct Conn {
    int fd = -1;
    bool writing = false;  // registered for EPOLLOUT (reading paused)
    size_t out_sent = 0;
    std::string out;  // what the kernel refused
    Protocol protocol;
  };

  void Accept() {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors: level-triggered, tried again
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto* c = new Conn();
      c->fd = fd;
      epoll_event ev = {};
      ev.events = EPOLLIN;
      ev.data.ptr = c;
      if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        delete c;
      }
    }
  }

  void Close(Conn* c) {
    ::close(c->fd);  // also leaves the epoll set
    delete c;
  }

  void SetWriting(Conn* c, bool writing) {
    c->writing = writing;
    epoll_event ev = {};
    ev.events = writing ? EPOLLOUT : EPOLLIN;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
  }

  void OnReady(Conn* c, uint32_t events) {
    if (c->writing) {
      while (c->out_sent < c->out.size()) {
        const ssize_t w = ::send(c->fd, c->out.data() + c->out_sent, c->out.size() - c->out_sent,
                                 MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN) return;
          Close(c);
          return;
        }
        c->out_sent += static_cast<size_t>(w);
      }
      c->out.clear();
      c->out_sent = 0;
      if (c->protocol.close_requested) {
        Close(c);
        return;
      }
      SetWriting(c, false);
      return;
    }
    const ssize_t r = ::recv(c->fd, buffer_.data(), buffer_.size(), 0);
    if (r <= 0) {
      if (r < 0 && errno == EAGAIN) return;
      Close(c);
      return;
    }
    bool failed = false;
    c->protocol.OnData(buffer_.data(), static_cast<size_t>(r), [&](const char* p, size_t len) {
      if (failed) return;
      if (!c->out.empty()) {
        c->out.append(p, len);
        return;
      }
      ssize_t w = ::send(c->fd, p, len, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno != EAGAIN) {
          failed = true;
          return;
        }
        w = 0;
      }
      if (static_cast<size_t>(w) < len) c->out.append(p + w, len - static_cast<size_t>(w));
    });
    if (failed || (c->protocol.close_requested && c->out.empty())) {
      Close(c);
    } else if (!c->out.empty()) {
      SetWriting(c, true);
    }
  }

  int listener_;
  int epoll_ = -1;
  std::vector<char> buffer_;
};

template <typename Protocol>
[[noreturn]] void RunEpollServer(const char* name, int argc, char** argv) {
  const EpollServerFlags flags = ParseEpollServerFlags(name, argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  // The first listener picks the port (--port=0); the others share it (SO_REUSEPORT).
  std::vector<int> listeners;
  listeners.push_back(Listen(name, flags.ip, flags.port));
  sockaddr_in bound = {};
  socklen_t len = sizeof(bound);
  ::getsockname(listeners[0], reinterpret_cast<sockaddr*>(&bound), &len);
  const int port = ntohs(bound.sin_port);
  for (int i = 1; i < flags.threads; ++i) listeners.push_back(Listen(name, flags.ip, port));
  std::vector<EpollWorker<Protocol>*> workers;
  for (int fd : listeners) workers.push_back(new EpollWorker<Protocol>(fd));
  std::printf("%s: listening on %s:%d (%d threads)\n", name, flags.ip.c_str(), port,
              flags.threads);
  std::fflush(stdout);
  for (size_t i = 1; i < workers.size(); ++i) {
    std::thread([w = workers[i]] { w->Run(); }).detach();
  }
  workers[0]->Run();
}

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_EPOLL_BASE_H_
