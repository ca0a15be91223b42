#include "transport/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "transport/errors.h"
#include "transport/proxy_header.h"

namespace islet {
namespace {

// An IPv4 or IPv6 network; IPv4 ones are kept as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n),
// so that one comparison serves both families and mapped peers.
struct Network {
  std::array<uint8_t, 16> address{};
  int prefix = 0;  // in bits, over the 128

  bool Contains(const std::array<uint8_t, 16>& peer) const {
    int bits = prefix;
    for (size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
      const uint8_t mask = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
      if ((peer[i] & mask) != (address[i] & mask)) return false;
    }
    return true;
  }
};

std::array<uint8_t, 16> Mapped(const in_addr& v4) {
  std::array<uint8_t, 16> out{};
  out[10] = out[11] = 0xFF;
  std::memcpy(out.data() + 12, &v4, 4);
  return out;
}

absl::Status OptionError(absl::string_view field, absl::string_view value,
                         absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("proxy_protocol: ", field, ": \"", value, "\": ", why));
}

absl::StatusOr<Network> ParseNetwork(absl::string_view text) {
  const size_t slash = text.find('/');
  const std::string address(text.substr(0, slash));
  Network network;
  int max_prefix = 0;
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    network.address = Mapped(v4);
    max_prefix = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), &v6) == 1) {
    std::memcpy(network.address.data(), &v6, 16);
    max_prefix = 128;
  } else {
    return OptionError("trusted_networks", text, "not an IPv4 or IPv6 address");
  }
  int prefix = max_prefix;
  if (slash != absl::string_view::npos) {
    const absl::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        digits.find_first_not_of("0123456789") != absl::string_view::npos ||
        !absl::SimpleAtoi(digits, &prefix)) {
      return OptionError("trusted_networks", text, "the prefix length is not a number");
    }
    if (prefix > max_prefix) {
      return OptionError("trusted_networks", text,
                         absl::StrCat("prefix length above ", max_prefix));
    }
  }
  network.prefix = prefix + (max_prefix == 32 ? 96 : 0);
  return network;
}

}  // namespace

namespace proxy_protocol_internal {

// What the transport, its listeners and its sockets share.
struct Config {
  std::vector<Network> trusted;
  bool trust_unix_peers = false;
  bool required = true;
  ProxyParseOptions parse;

  // Whether the peer of the connected socket `fd` is trusted.
  absl::StatusOr<bool> Trusts(int fd) const {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) {
      return PosixError(errno, "PROXY: getpeername");
    }
    std::array<uint8_t, 16> address;
    switch (peer.ss_family) {
      case AF_UNIX:
        return trust_unix_peers;
      case AF_INET:
        address = Mapped(reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr);
        break;
      case AF_INET6:
        std::memcpy(address.data(), &reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr, 16);
        break;
      default:
        return false;
    }
    for (const Network& network : trusted) {
      if (network.Contains(address)) return true;
    }
    return false;
  }
};

}  // namespace proxy_protocol_internal

using proxy_protocol_internal::Config;

absl::Status ValidateProxyProtocolOptions(const ProxyProtocolOptions& options) {
  if (options.trusted_networks.empty() && !options.trust_unix_peers) {
    return absl::InvalidArgumentError(
        "proxy_protocol: trusted_networks: empty, and unix peers are not trusted: no "
        "balancer could send a header");
  }
  for (const std::string& network : options.trusted_networks) {
    if (absl::StatusOr<Network> parsed = ParseNetwork(network); !parsed.ok()) {
      return parsed.status();
    }
  }
  if (options.max_v2_length < kProxyV2FixedLength || options.max_v2_length > kProxyV2MaxLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "proxy_protocol: max_v2_length: ", options.max_v2_length, ": outside [",
        kProxyV2FixedLength, ", ", kProxyV2MaxLength, "]"));
  }
  return absl::OkStatus();
}

namespace {

// A socket whose first bytes are a PROXY header (or, from an untrusted peer or in
// optional mode, perhaps not): HandshakeStep reads the header, then hands over to the
// inner socket's handshake. Everything else is the inner socket's.
class ProxySocket final : public Socket {
 public:
  ProxySocket(std::unique_ptr<Socket> inner, std::shared_ptr<const Config> config)
      : inner_(std::move(inner)), config_(std::move(config)) {}

  absl::StatusOr<IoInterest> HandshakeStep() override;

  absl::Status Shutdown(ShutdownWay way) override { return inner_->Shutdown(way); }
  absl::StatusOr<IoInterest> ShutdownStep(ShutdownWay way) override {
    return inner_->ShutdownStep(way);
  }
  void Close() override { inner_->Close(); }
  bool IsClosed() const override { return inner_->IsClosed(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override {
    return Replaced(inner_->LocalInfo(), header_ ? &header_->destination : nullptr);
  }
  absl::StatusOr<SocketInfo> PeerInfo() const override {
    return Replaced(inner_->PeerInfo(), header_ ? &header_->source : nullptr);
  }
  absl::StatusOr<SocketStats> GetStat() const override { return inner_->GetStat(); }
  absl::StatusOr<std::string> NegotiatedProtocol() const override {
    return inner_->NegotiatedProtocol();
  }
  bool Secure() const override { return inner_->Secure(); }
  absl::StatusOr<ConnectionInformation> GetConnectionInformation() const override {
    return inner_->GetConnectionInformation();
  }
  const ProxyHeader* proxy_header() const override { return header_.get(); }
  int fd() const override { return inner_->fd(); }
  absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) override {
    return inner_->WriteSome(buffers);
  }
  absl::StatusOr<size_t> SendfileSome(int file_fd, uint64_t offset, size_t length) override {
    return inner_->SendfileSome(file_fd, offset, length);
  }
  bool AttachOutput(OutputChannel* output) override { return inner_->AttachOutput(output); }
  bool HasPendingOutput() const override { return inner_->HasPendingOutput(); }
  absl::Status WaitWritable(absl::Duration deadline, absl::string_view op) override {
    return inner_->WaitWritable(deadline, op);
  }
  // Only once the header is read: reading it peeks at the descriptor.
  bool AttachInput(InputChannel* input) override {
    if (state_ != State::kDone && input != nullptr) return false;
    return inner_->AttachInput(input);
  }

 protected:
  absl::string_view TakeTransportInput() override {
    return replay_.empty() ? inner_->TakeInput() : absl::string_view();
  }
  absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) override {
    if (!replay_.empty()) {
      if (inner_->IsClosed()) return ClosedError("recv");
      const size_t n = std::min(buf.size(), replay_.size());
      std::memcpy(buf.data(), replay_.data(), n);
      replay_.erase(0, n);
      if (replay_.empty()) std::string().swap(replay_);
      return n;
    }
    return inner_->ReadSome(buf);
  }
  bool TransportHasBufferedInput() const override {
    return !replay_.empty() || inner_->HasBufferedInput();
  }
  absl::Status ApplyOption(const SocketOption& option) override {
    return inner_->SetOptions({option});
  }
  absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const override {
    absl::StatusOr<std::vector<SocketOption>> values = inner_->GetOptions({name});
    if (!values.ok()) return values.status();
    return values->front();
  }

 private:
  enum class State : uint8_t { kStart, kV1, kV2, kDone };

  // `info` with the header's address, when the header has one; the certificate a
  // secure inner socket reports is kept.
  static absl::StatusOr<SocketInfo> Replaced(absl::StatusOr<SocketInfo> info,
                                             const std::optional<SocketInfo>* from_header) {
    if (from_header == nullptr || !from_header->has_value()) return info;
    SocketInfo out = **from_header;
    if (info.ok()) out.peer_certificate = std::move(info->peer_certificate);
    return out;
  }

  // Reads the header: kNone once done (or known absent), kRead while incomplete.
  absl::StatusOr<IoInterest> ReadHeader();
  absl::StatusOr<IoInterest> Start();
  absl::StatusOr<IoInterest> ReadV1();
  absl::StatusOr<IoInterest> ReadV2();
  // Takes up to `n` bytes off the descriptor into got_: those a peek has shown, or
  // (v2) those known to belong to the header. The count read, 0 at EOF, or an error.
  absl::StatusOr<size_t> Take(size_t n);
  absl::StatusOr<IoInterest> Finish(ProxyHeader header);
  // Not a header: the bytes taken so far go to the reader first.
  absl::StatusOr<IoInterest> NoHeader();
  std::string PeerName() const;
  const Config& config() const { return *config_; }

  std::unique_ptr<Socket> inner_;
  std::shared_ptr<const Config> config_;
  State state_ = State::kStart;
  bool trusted_ = false;
  std::string got_;     // the header's bytes so far (or a prefix not yet told apart)
  size_t v2_length_ = 0;  // once the fixed part is in
  std::string replay_;  // bytes taken that were not a header, for ReadSome
  std::unique_ptr<ProxyHeader> header_;
};

std::string ProxySocket::PeerName() const {
  absl::StatusOr<SocketInfo> peer = inner_->PeerInfo();
  return peer.ok() ? peer->ToString() : "an unknown peer";
}

absl::StatusOr<IoInterest> ProxySocket::HandshakeStep() {
  if (state_ != State::kDone) {
    if (inner_->IsClosed()) return ClosedError("handshake");
    absl::StatusOr<IoInterest> header = ReadHeader();
    if (!header.ok() || *header != IoInterest::kNone) return header;
  }
  return inner_->HandshakeStep();
}

absl::StatusOr<size_t> ProxySocket::Take(size_t n) {
  const size_t old = got_.size();
  got_.resize(old + n);
  ssize_t got;
  do {
    got = ::recv(inner_->fd(), got_.data() + old, n, 0);
  } while (got < 0 && errno == EINTR);
  const int err = errno;
  if (got < 0) {
    got_.resize(old);
    if (err == EAGAIN || err == EWOULDBLOCK) return WouldBlockError("PROXY header");
    return PosixError(err, "PROXY header: recv");
  }
  got_.resize(old + static_cast<size_t>(got));
  return static_cast<size_t>(got);
}

absl::StatusOr<IoInterest> ProxySocket::ReadHeader() {
  if (state_ == State::kStart) {
    absl::StatusOr<bool> trusted = config().Trusts(inner_->fd());
    if (!trusted.ok()) return trusted.status();
    trusted_ = *trusted;
  }
  while (true) {
    absl::StatusOr<IoInterest> step;
    switch (state_) {
      case State::kStart:
        step = Start();
        break;
      case State::kV1:
        step = ReadV1();
        break;
      case State::kV2:
        step = ReadV2();
        break;
      case State::kDone:
        return IoInterest::kNone;
    }
    if (!step.ok() || *step != IoInterest::kNone || state_ == State::kDone) return step;
  }
}

absl::StatusOr<IoInterest> ProxySocket::Start() {
  // Looks (without taking) at no more than the longest marker: whatever it is, the
  // bytes may belong to the inner transport.
  std::array<char, 12> peek;
  const size_t want = kProxyV2Signature.size() - got_.size();
  ssize_t n;
  do {
    n = ::recv(inner_->fd(), peek.data(), want, MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IoInterest::kRead;
    return PosixError(errno, "PROXY header: recv");
  }
  if (n == 0) {
    // Closed before any byte: the inner transport sees the same EOF, unless a header
    // was owed.
    if (got_.empty() && !(trusted_ && config().required)) return NoHeader();
    return PeerClosedError("PROXY header: the peer closed before the header was complete");
  }
  const std::string seen = got_ + std::string(peek.data(), static_cast<size_t>(n));
  switch (MatchProxyMarker(seen)) {
    case ProxyMarker::kNone:
      if (trusted_ && config().required) {
        return absl::InvalidArgumentError(absl::StrCat(
            "PROXY: a header is required from ", PeerName(),
            " (a trusted network), and the connection began otherwise"));
      }
      return NoHeader();
    case ProxyMarker::kPartial: {
      // Taken, so that the level-triggered loop does not wake again for the same bytes.
      absl::StatusOr<size_t> taken = Take(static_cast<size_t>(n));
      if (!taken.ok()) return taken.status();
      return IoInterest::kRead;
    }
    case ProxyMarker::kV1:
    case ProxyMarker::kV2:
      if (!trusted_) {
        return absl::PermissionDeniedError(absl::StrCat(
            "PROXY: header from ", PeerName(), " refused: not a trusted network"));
      }
      state_ = seen[0] == 'P' ? State::kV1 : State::kV2;
      return IoInterest::kNone;
  }
  return absl::InternalError("PROXY: unreachable");
}

absl::StatusOr<IoInterest> ProxySocket::ReadV1() {
  if (!config().parse.accept_v1) {
    return absl::InvalidArgumentError("PROXY v1: version 1 is not accepted here");
  }
  // Peeks, then takes up to the LF (or all when there is none yet: every byte before
  // the LF is the header's).
  const size_t room = kProxyV1MaxLength - got_.size();
  std::array<char, kProxyV1MaxLength> peek;
  ssize_t n;
  do {
    n = ::recv(inner_->fd(), peek.data(), room, MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IoInterest::kRead;
    return PosixError(errno, "PROXY header: recv");
  }
  if (n == 0) return PeerClosedError("PROXY header: the peer closed before the header was complete");
  const absl::string_view seen(peek.data(), static_cast<size_t>(n));
  const size_t lf = seen.find('\n');
  absl::StatusOr<size_t> taken = Take(lf == absl::string_view::npos ? seen.size() : lf + 1);
  if (!taken.ok()) return taken.status();
  absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(got_, config().parse);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->has_value()) return IoInterest::kRead;
  return Finish(**std::move(parsed));
}

absl::StatusOr<IoInterest> ProxySocket::ReadV2() {
  while (true) {
    const size_t want = v2_length_ != 0 ? v2_length_ : kProxyV2FixedLength;
    absl::StatusOr<size_t> taken = Take(want - got_.size());
    if (!taken.ok()) {
      if (IsWouldBlock(taken.status())) return IoInterest::kRead;
      return taken.status();
    }
    if (*taken == 0) {
      return PeerClosedError("PROXY header: the peer closed before the header was complete");
    }
    if (got_.size() < want) continue;  // a short read; the next says would-block or more
    if (v2_length_ == 0) {
      if (!config().parse.accept_v2) {
        return absl::InvalidArgumentError("PROXY v2: version 2 is not accepted here");
      }
      absl::StatusOr<size_t> length = ProxyV2Length(got_, config().parse.max_v2_length);
      if (!length.ok()) return length.status();
      v2_length_ = *length;
      if (v2_length_ > got_.size()) continue;
    }
    absl::StatusOr<std::optional<ProxyHeader>> parsed = ParseProxyHeader(got_, config().parse);
    if (!parsed.ok()) return parsed.status();
    if (!parsed->has_value()) return absl::InternalError("PROXY v2: complete header not parsed");
    return Finish(**std::move(parsed));
  }
}

absl::StatusOr<IoInterest> ProxySocket::Finish(ProxyHeader header) {
  absl::StatusOr<SocketInfo> proxy = inner_->PeerInfo();
  if (proxy.ok()) {
    header.proxy = *std::move(proxy);
    header.proxy.peer_certificate.reset();
  }
  header_ = std::make_unique<ProxyHeader>(std::move(header));
  std::string().swap(got_);
  state_ = State::kDone;
  return IoInterest::kNone;
}

absl::StatusOr<IoInterest> ProxySocket::NoHeader() {
  if (!got_.empty()) {
    if (inner_->Secure()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PROXY: ", PeerName(), " began with ", got_.size(),
          " bytes of a PROXY marker and then not a header; a secure transport cannot "
          "begin with them"));
    }
    replay_ = std::move(got_);
    got_.clear();
  }
  state_ = State::kDone;
  return IoInterest::kNone;
}

}  // namespace

class ProxyProtocolTransport::ProxyListener : public Listener {
 public:
  ProxyListener(std::unique_ptr<Listener> inner, std::shared_ptr<const Config> config)
      : inner_(std::move(inner)), config_(std::move(config)) {}

  absl::StatusOr<std::unique_ptr<Socket>> Accept() override { return Wrap(inner_->Accept()); }
  int fd() const override { return inner_->fd(); }
  absl::StatusOr<std::unique_ptr<Socket>> TryAccept() override {
    return Wrap(inner_->TryAccept());
  }
  bool CanAdoptAccepted() const override { return inner_->CanAdoptAccepted(); }
  absl::StatusOr<std::unique_ptr<Socket>> AdoptAccepted(UniqueFd fd) override {
    return Wrap(inner_->AdoptAccepted(std::move(fd)));
  }
  void Close() override { inner_->Close(); }
  void Release() override { inner_->Release(); }
  absl::StatusOr<SocketInfo> LocalInfo() const override { return inner_->LocalInfo(); }

 private:
  absl::StatusOr<std::unique_ptr<Socket>> Wrap(absl::StatusOr<std::unique_ptr<Socket>> accepted) {
    if (!accepted.ok()) return accepted.status();
    return std::unique_ptr<Socket>(std::make_unique<ProxySocket>(*std::move(accepted), config_));
  }

  std::unique_ptr<Listener> inner_;
  std::shared_ptr<const Config> config_;
};

ProxyProtocolTransport::ProxyProtocolTransport(std::shared_ptr<Transport> inner,
                                               std::shared_ptr<const Config> config)
    : inner_(std::move(inner)),
      config_(std::move(config)),
      name_(absl::StrCat("proxy_protocol+", inner_->Name())) {}

ProxyProtocolTransport::~ProxyProtocolTransport() = default;

absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> ProxyProtocolTransport::Create(
    std::shared_ptr<Transport> inner, ProxyProtocolOptions options) {
  if (inner == nullptr) {
    return absl::InvalidArgumentError("proxy_protocol: no inner transport given");
  }
  if (absl::Status valid = ValidateProxyProtocolOptions(options); !valid.ok()) return valid;
  auto config = std::make_shared<Config>();
  for (const std::string& text : options.trusted_networks) {
    config->trusted.push_back(*ParseNetwork(text));
  }
  config->trust_unix_peers = options.trust_unix_peers;
  config->required = options.mode == ProxyProtocolOptions::Mode::kRequired;
  config->parse.accept_v1 = options.versions != ProxyProtocolOptions::Versions::kV2;
  config->parse.accept_v2 = options.versions != ProxyProtocolOptions::Versions::kV1;
  config->parse.max_v2_length = options.max_v2_length;
  return std::shared_ptr<ProxyProtocolTransport>(
      new ProxyProtocolTransport(std::move(inner), std::move(config)));
}

absl::StatusOr<std::unique_ptr<Listener>> ProxyProtocolTransport::Listen(
    uint16_t port, const ListenOptions& options) {
  absl::StatusOr<std::unique_ptr<Listener>> inner = inner_->Listen(port, options);
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<Listener>(
      std::make_unique<ProxyListener>(*std::move(inner), config_));
}

absl::StatusOr<std::unique_ptr<Listener>> ProxyProtocolTransport::Adopt(
    UniqueFd fd, const ListenOptions& options) {
  absl::StatusOr<std::unique_ptr<Listener>> inner = inner_->Adopt(std::move(fd), options);
  if (!inner.ok()) return inner.status();
  return std::unique_ptr<Listener>(
      std::make_unique<ProxyListener>(*std::move(inner), config_));
}

absl::StatusOr<std::unique_ptr<Socket>> ProxyProtocolTransport::Upgrade(
    std::unique_ptr<Socket> socket) {
  return inner_->Upgrade(std::move(socket));
}

absl::StatusOr<std::unique_ptr<Socket>> ProxyProtocolTransport::Wrap(
    std::unique_ptr<Socket> accepted) const {
  if (accepted == nullptr) return absl::InvalidArgumentError("proxy_protocol: no socket given");
  return std::unique_ptr<Socket>(std::make_unique<ProxySocket>(std::move(accepted), config_));
}

}  // namespace islet
