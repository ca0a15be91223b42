#include "tools/abuse/abuse_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tools/harness/harness_test_util.h"

namespace islet::abuse {

std::string Sanitizer() {
  const char* name = std::getenv("ISLET_SANITIZER");
  return name == nullptr ? "" : name;
}

int Scaled(int normal, int sanitized) { return Sanitizer().empty() ? normal : sanitized; }

int64_t FloodLine::Get(const std::string& key) const {
  auto it = fields.find(key);
  int64_t value = -1;
  if (it == fields.end() || !absl::SimpleAtoi(it->second, &value)) return -1;
  return value;
}

std::vector<FloodLine> ParseFloodLines(absl::string_view output) {
  std::vector<FloodLine> lines;
  for (absl::string_view text : absl::StrSplit(output, '\n')) {
    if (!absl::ConsumePrefix(&text, "flood: ")) continue;
    std::vector<absl::string_view> words = absl::StrSplit(text, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    FloodLine line;
    line.text = std::string(text);
    line.what = std::string(words[0]);
    for (size_t i = 1; i < words.size(); ++i) {
      const size_t eq = words[i].find('=');
      if (eq == absl::string_view::npos) continue;
      line.fields[std::string(words[i].substr(0, eq))] = std::string(words[i].substr(eq + 1));
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

absl::StatusOr<std::unique_ptr<Subprocess>> StartFlood(uint16_t port,
                                                      const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {harness::RunfilePath("tools/abuse/flood_client"),
                                   absl::StrCat("--target=127.0.0.1:", port)};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return Subprocess::Start(argv, SubprocessOptions{});
}

namespace {

std::optional<FloodLine> FindLine(absl::string_view output, absl::string_view what,
                                  absl::FunctionRef<bool(const FloodLine&)> accept) {
  for (FloodLine& line : ParseFloodLines(output)) {
    // A line is whole once its newline arrived; ParseFloodLines also returns the last,
    // possibly partial, one: require the newline after it.
    if (line.what == what && absl::StrContains(output, absl::StrCat(line.text, "\n")) &&
        accept(line)) {
      return std::move(line);
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<FloodLine> WaitForFloodLine(Subprocess& flood, absl::string_view what,
                                           absl::Duration timeout,
                                           absl::FunctionRef<bool(const FloodLine&)> accept) {
  flood.WaitForStdout(
      [&](absl::string_view out) { return FindLine(out, what, accept).has_value(); }, timeout);
  std::optional<FloodLine> line = FindLine(flood.Stdout(), what, accept);
  if (!line) {
    return absl::DeadlineExceededError(absl::StrCat("no \"flood: ", what, "\" line within ",
                                                    absl::FormatDuration(timeout),
                                                    harness::Describe(flood)));
  }
  return *std::move(line);
}

absl::StatusOr<FloodLine> StopFlood(Subprocess& flood, absl::Duration timeout) {
  flood.Signal(SIGTERM);
  return WaitForFloodLine(flood, "summary", timeout);
}

namespace {

// One connect to 127.0.0.1:port, given up at `deadline`.
absl::StatusOr<UniqueFd> ConnectOnce(uint16_t port, absl::Time deadline) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  if (errno != EINPROGRESS) return absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
  pollfd p = {fd.get(), POLLOUT, 0};
  const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
  if (::poll(&p, 1, static_cast<int>(ms)) <= 0) {
    return absl::DeadlineExceededError("connect: not established by the deadline");
  }
  int error = 0;
  socklen_t len = sizeof(error);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
  if (error != 0) return absl::UnavailableError(absl::StrCat("connect: ", strerror(error)));
  return fd;
}

}  // namespace

absl::StatusOr<UniqueFd> ConnectLoopback(uint16_t port, absl::Time deadline,
                                         absl::Duration attempt) {
  for (int attempts = 1;; ++attempts) {
    const absl::Time given_up = std::min(deadline, absl::Now() + attempt);
    absl::StatusOr<UniqueFd> fd = ConnectOnce(port, given_up);
    if (!absl::IsDeadlineExceeded(fd.status()) || given_up >= deadline) {
      if (fd.ok() || attempts == 1) return fd;
      return absl::Status(fd.status().code(),
                          absl::StrCat(fd.status().message(), " (", attempts, " attempts of ",
                                       absl::FormatDuration(attempt), ")"));
    }
  }
}

namespace {

// Waits for `events` on `fd` until `deadline`; false when it passed.
bool PollUntil(int fd, short events, absl::Time deadline) {
  for (;;) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms < 0) return false;
    pollfd p = {fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // the next call reports the error
  }
}

}  // namespace

absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    }
    if (!PollUntil(fd, POLLOUT, deadline)) return absl::DeadlineExceededError("send: no room");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadHttpResponse(int fd, std::string& buffer, absl::Time deadline) {
  auto read_more = [&]() -> absl::Status {
    char chunk[16 << 10];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
        return absl::OkStatus();
      }
      if (n == 0) return absl::OutOfRangeError("recv: the server closed the connection");
      if (errno != EAGAIN && errno != EINTR) {
        return absl::AbortedError(absl::StrCat("recv: ", strerror(errno)));
      }
      if (!PollUntil(fd, POLLIN, deadline)) {
        return absl::DeadlineExceededError("recv: no response by the deadline");
      }
    }
  };
  size_t head_end;
  while ((head_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (absl::Status s = read_more(); !s.ok()) return s;
  }
  const std::string head = buffer.substr(0, head_end);
  uint64_t length = 0;
  bool has_length = false;
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    const size_t colon = line.find(':');
    if (colon != absl::string_view::npos &&
        absl::EqualsIgnoreCase(line.substr(0, colon), "content-length")) {
      has_length = absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)), &length);
    }
  }
  if (!has_length) return absl::InternalError(absl::StrCat("no Content-Length in: ", head));
  while (buffer.size() < head_end + 4 + length) {
    if (absl::Status s = read_more(); !s.ok()) return s;
  }
  buffer.erase(0, head_end + 4 + length);
  return head.substr(0, head.find("\r\n"));
}

absl::StatusOr<std::string> GetOnNewConnection(uint16_t port, absl::Time deadline,
                                               absl::Duration connect_attempt) {
  absl::StatusOr<UniqueFd> fd = ConnectLoopback(port, deadline, connect_attempt);
  if (!fd.ok()) return fd.status();
  if (absl::Status s = SendAll(fd->get(), kGet, deadline); !s.ok()) return s;
  std::string buffer;
  return ReadHttpResponse(fd->get(), buffer, deadline);
}

int64_t ProcStatusKb(pid_t pid, absl::string_view field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field) || !absl::ConsumePrefix(&rest, ":")) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(rest, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t value = -1;
    if (!words.empty() && absl::SimpleAtoi(words[0], &value)) {
      return value;
    }
  }
  return -1;
}

int OpenDescriptors(pid_t pid) {
  DIR* dir = ::opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  return count;
}

}  // namespace islet::abuse
