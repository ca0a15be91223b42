// Typed socket options: the counterpart of Thousand Island's socket_set_options /
// socket_get_options. Each option is a name and an integer value in the unit the name
// documents; the named constructors spell the unit in the type where it helps.
//
//   Socket::SetOptions({SocketOption::NoDelay(true),
//                       SocketOption::Linger(absl::Seconds(5))});
//
// Validation is all-or-nothing: a list with any refused option changes nothing.
// An accepted option reads back through GetOptions with the value that was set.
#ifndef ISLET_TRANSPORT_SOCKET_OPTIONS_H_
#define ISLET_TRANSPORT_SOCKET_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace islet {

enum class SocketOptionName : uint8_t {
  kNoDelay,        // bool: TCP_NODELAY (TCP only).
  kKeepAlive,      // bool: SO_KEEPALIVE.
  kKeepIdle,       // seconds, 1..32767: TCP_KEEPIDLE (TCP only).
  kKeepInterval,   // seconds, 1..32767: TCP_KEEPINTVL (TCP only).
  kKeepCount,      // probes, 1..127: TCP_KEEPCNT (TCP only).
  kRecvBuffer,     // bytes, 4096..net.core.rmem_max: SO_RCVBUF as requested (Linux
                   // doubles it internally; we report the requested size).
  kSendBuffer,     // bytes, 4096..net.core.wmem_max: SO_SNDBUF, likewise.
  kLinger,         // seconds, 0..65535, or -1 for off: SO_LINGER.
  kTos,            // 0..255: IP_TOS / IPV6_TCLASS (IP only).
  kPriority,       // 0..6: SO_PRIORITY.
  kReuseAddress,   // bool: SO_REUSEADDR.
  kBlocking,       // bool: must stay false. Server sockets are non-blocking; asking
                   // for true is refused with InvalidArgument.
  kSendTimeout,    // milliseconds, 0..2^31, or -1 for infinite: how long a blocking
                   // Send may wait for the peer to drain (Thousand Island's
                   // send_timeout).
};

inline constexpr int kSocketOptionNameCount = 13;

// The option's name as users write it ("nodelay", "recv_buffer", ...).
absl::string_view SocketOptionNameString(SocketOptionName name);
std::optional<SocketOptionName> ParseSocketOptionName(absl::string_view text);

class SocketOption {
 public:
  static SocketOption NoDelay(bool on) { return {SocketOptionName::kNoDelay, on}; }
  static SocketOption KeepAlive(bool on) { return {SocketOptionName::kKeepAlive, on}; }
  static SocketOption KeepIdle(absl::Duration d) {
    return {SocketOptionName::kKeepIdle, absl::ToInt64Seconds(d)};
  }
  static SocketOption KeepInterval(absl::Duration d) {
    return {SocketOptionName::kKeepInterval, absl::ToInt64Seconds(d)};
  }
  static SocketOption KeepCount(int probes) { return {SocketOptionName::kKeepCount, probes}; }
  static SocketOption RecvBuffer(int bytes) { return {SocketOptionName::kRecvBuffer, bytes}; }
  static SocketOption SendBuffer(int bytes) { return {SocketOptionName::kSendBuffer, bytes}; }
  // std::nullopt turns lingering off.
  static SocketOption Linger(std::optional<absl::Duration> d) {
    return {SocketOptionName::kLinger, d ? absl::ToInt64Seconds(*d) : -1};
  }
  static SocketOption Tos(int tos) { return {SocketOptionName::kTos, tos}; }
  static SocketOption Priority(int priority) { return {SocketOptionName::kPriority, priority}; }
  static SocketOption ReuseAddress(bool on) { return {SocketOptionName::kReuseAddress, on}; }
  static SocketOption Blocking(bool on) { return {SocketOptionName::kBlocking, on}; }
  // absl::InfiniteDuration() waits forever.
  static SocketOption SendTimeout(absl::Duration d) {
    return {SocketOptionName::kSendTimeout,
            d == absl::InfiniteDuration() ? -1 : absl::ToInt64Milliseconds(d)};
  }
  // Any name with a raw value in the name's unit; for parsers and fuzzers.
  static SocketOption Raw(SocketOptionName name, int64_t value) { return {name, value}; }

  SocketOptionName name() const { return name_; }
  int64_t value() const { return value_; }
  bool operator==(const SocketOption&) const = default;

  // "nodelay=1", "linger=-1", ...
  std::string ToString() const;

 private:
  SocketOption(SocketOptionName name, int64_t value) : name_(name), value_(value) {}

  SocketOptionName name_;
  int64_t value_;
};

// Checks the name is known and the value in its range. OK or InvalidArgument naming
// the option. Kernel limits (rmem_max, wmem_max) are read from /proc once.
absl::Status ValidateSocketOption(const SocketOption& option);

}  // namespace islet

#endif  // ISLET_TRANSPORT_SOCKET_OPTIONS_H_
