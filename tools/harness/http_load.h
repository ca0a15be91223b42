// Clients for the harness's restart and fleet tests: a blocking loopback connect, a
// stream of HTTP/1.1 clients that counts what was served, refused and failed, and a
// short unix socket path for a hand-off. Testonly.
#ifndef ISLET_TOOLS_HARNESS_HTTP_LOAD_H_
#define ISLET_TOOLS_HARNESS_HTTP_LOAD_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/harness/harness_test_util.h"
#include "transport/unique_fd.h"

namespace islet::harness {

// A blocking client of 127.0.0.1:`port` whose reads and writes time out after
// kIoTimeout; invalid (errno set) when the connect fails.
inline UniqueFd Connect(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv = {.tv_sec = absl::ToInt64Seconds(kIoTimeout), .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

// HTTP/1.1 clients in threads: `fresh` threads open a new connection per request (and
// so reach whichever process accepts), `kept` threads send request after request on
// one keep-alive connection. A request answered by "200 OK" counts as served. A kept
// connection that ends before any byte of an answer, after it served at least one
// request, is retried once on a new connection, as HTTP clients retry an idempotent
// request (the race of a keep-alive connection closed while the request was on its
// way, which a server that stops cannot avoid); anything else is a failure.
class HttpLoad {
 public:
  HttpLoad(uint16_t port, int fresh, int kept) : port_(port) {
    for (int i = 0; i < fresh; ++i) threads_.emplace_back([this] { Run(/*keep_alive=*/false); });
    for (int i = 0; i < kept; ++i) threads_.emplace_back([this] { Run(/*keep_alive=*/true); });
  }
  ~HttpLoad() { Stop(); }

  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t served() const { return served_.load(); }
  int64_t retries() const { return retries_.load(); }
  int64_t refused() const { return refused_.load(); }
  std::vector<std::string> failures() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }
  bool WaitForServed(int64_t n) {
    const absl::Time deadline = absl::Now() + kStartTimeout;
    while (served() < n && absl::Now() < deadline && failures().empty()) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return served() >= n;
  }

 private:
  enum class Outcome { kServed, kClosedBeforeAnswer, kFailed };

  // One request on `fd`; `*close` when the answer says Connection: close.
  Outcome Request(int fd, bool keep_alive, bool* close, std::string* why) {
    const std::string request = keep_alive ? "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
                                           : "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      *why = absl::StrCat("send: ", strerror(errno));
      return Outcome::kClosedBeforeAnswer;
    }
    std::string answer;
    char buf[4096];
    size_t head_end = std::string::npos;
    while (head_end == std::string::npos || answer.size() < head_end + 4 + 12) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        *why = absl::StrCat("recv after ", answer.size(), " bytes: ",
                            n == 0 ? "closed" : strerror(errno));
        return answer.empty() && (n == 0 || errno == ECONNRESET) ? Outcome::kClosedBeforeAnswer
                                                                 : Outcome::kFailed;
      }
      answer.append(buf, static_cast<size_t>(n));
      head_end = answer.find("\r\n\r\n");
    }
    if (!absl::StartsWith(answer, "HTTP/1.1 200 OK\r\n") ||
        !absl::EndsWith(answer, "Hello world!")) {
      *why = "unexpected answer: " + answer.substr(0, 64);
      return Outcome::kFailed;
    }
    *close = absl::StrContains(answer, "Connection: close");
    return Outcome::kServed;
  }

  void Fail(const std::string& why) {
    absl::MutexLock lock(&mu_);
    if (failures_.size() < 5) failures_.push_back(why);
  }

  void Run(bool keep_alive) {
    UniqueFd fd;
    int served_here = 0;  // requests served on `fd`
    while (!stop_.load()) {
      if (!fd) {
        fd = Connect(port_);
        served_here = 0;
        if (!fd) {
          if (errno == ECONNREFUSED) refused_.fetch_add(1);
          Fail(absl::StrCat("connect: ", strerror(errno)));
          absl::SleepFor(absl::Milliseconds(10));
          continue;
        }
      }
      bool close = false;
      std::string why;
      const Outcome outcome = Request(fd.get(), keep_alive, &close, &why);
      if (outcome == Outcome::kServed) {
        served_.fetch_add(1);
        ++served_here;
        if (close || !keep_alive) fd.reset();
        continue;
      }
      fd.reset();
      if (outcome == Outcome::kClosedBeforeAnswer && keep_alive && served_here > 0) {
        retries_.fetch_add(1);  // the next turn sends it again on a new connection
        continue;
      }
      Fail(why);
    }
  }

  const uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> served_{0};
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> refused_{0};
  absl::Mutex mu_;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// A unix socket path short enough for sun_path, removed at the end.
class HandoffPath {
 public:
  HandoffPath() {
    std::string dir = "/tmp/islet-restart.XXXXXX";
    if (::mkdtemp(dir.data()) != nullptr) dir_ = dir;
    path_ = dir_ + "/handoff.sock";
  }
  ~HandoffPath() {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& get() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace islet::harness

#endif  // ISLET_TOOLS_HARNESS_HTTP_LOAD_H_
