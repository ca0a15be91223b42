#include "server/listener_handoff.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/inherited_listeners.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

constexpr absl::string_view kVersionLine = "islet-handoff 1";
constexpr absl::string_view kHeader = "islet-handoff ";
// More listening sockets than any server has (num_listen_sockets is at most the
// acceptors), and under the kernel's SCM_MAX_FD (253).
constexpr size_t kMaxSockets = 64;
// An offer for kMaxSockets unix paths, with room to spare; a reply is one short line.
constexpr size_t kMaxOffer = 64 * 1024;
constexpr size_t kMaxReply = 1024;

absl::StatusOr<sockaddr_un> UnixPath(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("hand-off socket: \"", path, "\" must have 1 to ",
                                                   sizeof(address.sun_path) - 1, " characters"));
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// Sends all of `data` by `deadline`, with `fds` attached to the first byte.
absl::Status SendAll(int fd, absl::string_view data, const std::vector<int>& fds,
                     absl::Duration deadline) {
  bool fds_sent = fds.empty();
  while (!data.empty()) {
    iovec iov = {const_cast<char*>(data.data()), data.size()};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control;
    if (!fds_sent) {
      control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      fds_sent = true;
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return PosixError(errno, "hand-off: send");
    absl::Status ready = WaitForIo(fd, IoInterest::kWrite, deadline, "hand-off: send");
    if (!ready.ok()) return ready;
  }
  return absl::OkStatus();
}

// Reads until `*text` holds `end` (true), the peer closes, `max` bytes or the
// deadline; descriptors that come along are appended to `fds` (close-on-exec).
absl::Status ReceiveUntil(int fd, absl::string_view end, size_t max, std::string* text,
                          std::vector<UniqueFd>* fds, absl::Duration deadline,
                          absl::string_view op) {
  while (!absl::StrContains(*text, end)) {
    if (text->size() >= max) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": more than ", max, " bytes"));
    }
    char buf[4096];
    iovec iov = {buf, std::min(sizeof(buf), max - text->size())};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxSockets)];
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = fds != nullptr ? control : nullptr;
    msg.msg_controllen = fds != nullptr ? sizeof(control) : 0;
    const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return PosixError(errno, absl::StrCat(op, ": recv"));
      absl::Status ready = WaitForIo(fd, IoInterest::kRead, deadline, op);
      if (!ready.ok()) return ready;
      continue;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (fds != nullptr) fds->emplace_back(received);
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": more descriptors than ", kMaxSockets));
    }
    if (n == 0) {
      return absl::AbortedError(absl::StrCat(op, ": the peer closed the connection"));
    }
    text->append(buf, static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Offer(const std::vector<ListeningSocket>& sockets) {
  std::string offer = absl::StrCat(kVersionLine, "\n");
  for (const ListeningSocket& s : sockets) {
    switch (s.local.family) {
      case AddressFamily::kIpv4:
      case AddressFamily::kIpv6:
        absl::StrAppend(&offer, "listener ", s.local.family == AddressFamily::kIpv4 ? "ipv4" : "ipv6",
                        " ", s.local.address, " ", s.local.port, "\n");
        break;
      case AddressFamily::kUnix:
        if (absl::StrContains(s.local.address, '\n') || s.local.address.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "hand-off: the unix socket \"", absl::CEscape(s.local.address),
              "\" has no path that can be described"));
        }
        absl::StrAppend(&offer, "listener unix ", s.local.address, "\n");
        break;
    }
  }
  absl::StrAppend(&offer, "end\n");
  return offer;
}

absl::StatusOr<std::vector<SocketInfo>> ParseOffer(absl::string_view text) {
  auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("hand-off: not an offer of listening sockets: ", why));
  };
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (lines.empty() || lines[0] != kVersionLine) {
    if (!lines.empty() && absl::StartsWith(lines[0], kHeader)) {
      return absl::UnimplementedError(absl::StrCat(
          "hand-off: the old process speaks \"", absl::CEscape(lines[0].substr(0, 64)),
          "\"; this one knows \"", kVersionLine, "\""));
    }
    return bad(absl::StrCat("it begins \"", absl::CEscape(text.substr(0, 32)), "\""));
  }
  std::vector<SocketInfo> described;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line == "end") return described;
    if (absl::StartsWith(line, "listener unix ")) {
      described.push_back({.family = AddressFamily::kUnix,
                           .address = std::string(line.substr(strlen("listener unix "))),
                           .port = 0});
      continue;
    }
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
    uint32_t port = 0;
    if (words.size() != 4 || words[0] != "listener" || (words[1] != "ipv4" && words[1] != "ipv6") ||
        !absl::SimpleAtoi(words[3], &port) || port > 65535) {
      return bad(absl::StrCat("line \"", absl::CEscape(line.substr(0, 64)), "\""));
    }
    described.push_back({.family = words[1] == "ipv4" ? AddressFamily::kIpv4 : AddressFamily::kIpv6,
                         .address = std::string(words[2]),
                         .port = static_cast<uint16_t>(port)});
  }
  return bad("no end line");
}

// The first line of `text`, without its newline.
absl::string_view FirstLine(absl::string_view text) { return text.substr(0, text.find('\n')); }

}  // namespace

// ---- The old process ----

absl::StatusOr<std::unique_ptr<HandoffPoint>> HandoffPoint::Listen(const std::string& path) {
  absl::StatusOr<sockaddr_un> address = UnixPath(path);
  if (!address.ok()) return address.status();
  const auto* sa = reinterpret_cast<const sockaddr*>(&*address);
  // A file left by a process that died blocks bind(); a live one must not be taken over.
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), sa, sizeof(*address)) == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("hand-off socket ", path, ": a running process listens there"));
    }
    if (errno == ECONNREFUSED) ::unlink(path.c_str());
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return PosixError(errno, "hand-off socket: socket");
  if (::bind(fd.get(), sa, sizeof(*address)) != 0) {
    return PosixError(errno, absl::StrCat("hand-off socket: bind ", path));
  }
  // Whoever connects gets our listening sockets: this user only. Nobody can connect
  // before listen(2), so there is no window with a wider mode.
  if (::chmod(path.c_str(), 0600) != 0 || ::listen(fd.get(), 4) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return PosixError(err, absl::StrCat("hand-off socket ", path));
  }
  return std::unique_ptr<HandoffPoint>(new HandoffPoint(std::move(fd), path));
}

HandoffPoint::~HandoffPoint() {
  if (fd_.valid()) ::unlink(path_.c_str());
}

absl::Status HandoffPoint::ServeOne(Server& server, absl::Duration timeout) {
  if (!fd_.valid()) return absl::FailedPreconditionError("hand-off: done already");
  const absl::Duration deadline = MonotonicNow() + timeout;
  UniqueFd peer;
  while (!peer.valid()) {
    peer.reset(::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (peer.valid()) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN) return PosixError(errno, "hand-off: accept");
    absl::Status ready = WaitForIo(fd_.get(), IoInterest::kRead, deadline, "hand-off: accept");
    if (!ready.ok()) return absl::UnavailableError("hand-off: no successor connected");
  }
  ucred credentials = {};
  socklen_t length = sizeof(credentials);
  if (::getsockopt(peer.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    return PosixError(errno, "hand-off: SO_PEERCRED");
  }
  if (credentials.uid != ::geteuid() && credentials.uid != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "hand-off: process ", credentials.pid, " of user ", credentials.uid,
        " asked for the listening sockets; only this user (", ::geteuid(), ") or root may"));
  }
  absl::StatusOr<std::vector<ListeningSocket>> sockets = server.DuplicateListeners();
  if (!sockets.ok()) return sockets.status();
  absl::StatusOr<std::string> offer = Offer(*sockets);
  if (!offer.ok()) return offer.status();
  std::vector<int> fds;
  for (const ListeningSocket& s : *sockets) fds.push_back(s.fd.get());
  absl::Status sent = SendAll(peer.get(), *offer, fds, deadline);
  if (!sent.ok()) return sent;

  std::string reply;
  absl::Status answered =
      ReceiveUntil(peer.get(), "\n", kMaxReply, &reply, nullptr, deadline, "hand-off: the successor's answer");
  if (!answered.ok()) {
    if (absl::IsAborted(answered)) {
      return absl::AbortedError("hand-off: the successor hung up before it was ready");
    }
    return answered;
  }
  const absl::string_view line = FirstLine(reply);
  if (absl::StartsWith(line, "refuse ")) {
    return absl::FailedPreconditionError(
        absl::StrCat("hand-off: the successor refused: ", absl::CEscape(line.substr(7))));
  }
  if (line != "ready") {
    return absl::InvalidArgumentError(absl::StrCat("hand-off: the successor answered \"",
                                                   absl::CEscape(line.substr(0, 64)), "\""));
  }
  // The successor accepts: stop accepting here (never a shutdown of the shared
  // sockets), and free the path for the successor's own hand-off point.
  absl::Status released = server.ReleaseListeners();
  if (!released.ok()) return released;
  fd_.reset();
  ::unlink(path_.c_str());
  // The successor serves whether or not it hears this; it only stops waiting.
  SendAll(peer.get(), "released\n", {}, deadline).IgnoreError();
  return absl::OkStatus();
}

// ---- The new process ----

absl::StatusOr<std::unique_ptr<Takeover>> Takeover::Receive(const std::string& path,
                                                            absl::Duration timeout) {
  const absl::Duration deadline = MonotonicNow() + timeout;
  absl::StatusOr<sockaddr_un> address = UnixPath(path);
  if (!address.ok()) return address.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return PosixError(errno, "takeover: socket");
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) == 0) {
      break;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && MonotonicNow() < deadline) {  // its backlog is full: try again
      absl::SleepFor(absl::Milliseconds(5));
      continue;
    }
    if (err == ECONNREFUSED) {
      return absl::UnavailableError(absl::StrCat("takeover: nobody listens at ", path));
    }
    return PosixError(err, absl::StrCat("takeover: connect ", path));
  }
  std::string offer;
  std::vector<UniqueFd> fds;
  absl::Status received =
      ReceiveUntil(fd.get(), "\nend\n", kMaxOffer, &offer, &fds, deadline, "takeover: the offer");
  if (!received.ok()) return received;
  absl::StatusOr<std::vector<SocketInfo>> described = ParseOffer(offer);
  if (!described.ok()) return described.status();
  if (described->size() != fds.size() || fds.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("takeover: the offer describes ",
                                                   described->size(), " sockets and carries ",
                                                   fds.size()));
  }
  // The kernel's word, not the message's, on what each socket is.
  std::vector<SocketInfo> sockets;
  for (size_t i = 0; i < fds.size(); ++i) {
    absl::StatusOr<SocketInfo> actual = ListeningSocketInfo(fds[i].get());
    if (!actual.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("takeover: socket ", i + 1, ": ", actual.status().message()));
    }
    if (!(*actual == (*described)[i])) {
      return absl::InvalidArgumentError(absl::StrCat("takeover: socket ", i + 1, " is ",
                                                     actual->ToString(), ", described as ",
                                                     (*described)[i].ToString()));
    }
    sockets.push_back(*std::move(actual));
  }
  return std::unique_ptr<Takeover>(new Takeover(std::move(fd), std::move(fds), std::move(sockets)));
}

std::vector<int> Takeover::fds() const {
  std::vector<int> out;
  for (const UniqueFd& fd : fds_) out.push_back(fd.get());
  return out;
}

void Takeover::Refuse(absl::string_view why) {
  std::string line = absl::StrCat("refuse ", why.substr(0, 512), "\n");
  for (size_t i = 0; i + 1 < line.size(); ++i) {
    if (line[i] == '\n') line[i] = ' ';
  }
  SendAll(connection_.get(), line, {}, MonotonicNow() + absl::Seconds(1)).IgnoreError();
  connection_.reset();
  fds_.clear();
}

absl::Status Takeover::Confirm(absl::Duration timeout) {
  if (!connection_.valid()) return absl::FailedPreconditionError("takeover: refused already");
  const absl::Duration deadline = MonotonicNow() + timeout;
  absl::Status sent = SendAll(connection_.get(), "ready\n", {}, deadline);
  if (!sent.ok()) return sent;
  std::string reply;
  absl::Status answered = ReceiveUntil(connection_.get(), "\n", kMaxReply, &reply, nullptr,
                                       deadline, "takeover: the old process's confirmation");
  connection_.reset();
  if (!answered.ok()) return answered;
  if (FirstLine(reply) != "released") {
    return absl::InvalidArgumentError(absl::StrCat("takeover: the old process answered \"",
                                                   absl::CEscape(FirstLine(reply).substr(0, 64)), "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<TakeOverResult> TakeOver(const std::string& path, ServerOptions options,
                                        absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Takeover>> takeover = Takeover::Receive(path, timeout);
  if (!takeover.ok()) return takeover.status();
  absl::Status match = CheckListenersMatch((*takeover)->sockets(), options);
  if (!match.ok()) {
    (*takeover)->Refuse(match.message());
    return absl::InvalidArgumentError(absl::StrCat("takeover: ", match.message()));
  }
  options.listen_fds = (*takeover)->fds();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  if (!server.ok()) {
    (*takeover)->Refuse(absl::StrCat("could not start: ", server.status().message()));
    return server.status();
  }
  TakeOverResult result;
  result.server = *std::move(server);
  result.predecessor = (*takeover)->Confirm(timeout);
  return result;
}

}  // namespace islet
