#include "transport/socket_options.h"

#include <array>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace islet {
namespace {

struct OptionSpec {
  SocketOptionName name;
  absl::string_view text;
  int64_t min;
  int64_t max;
  bool allows_minus_one;  // -1 is the documented "off" / "infinite" value.
};

// Buffer limits come from the kernel: beyond them Linux clamps silently, and a value
// that cannot read back as set is refused instead.
int64_t ReadSysctl(const char* path, int64_t fallback) {
  std::ifstream in(path);
  int64_t value = 0;
  if (in >> value && value > 0) return value;
  return fallback;
}

int64_t MaxRecvBuffer() {
  static const int64_t max = ReadSysctl("/proc/sys/net/core/rmem_max", 212992);
  return max;
}

int64_t MaxSendBuffer() {
  static const int64_t max = ReadSysctl("/proc/sys/net/core/wmem_max", 212992);
  return max;
}

constexpr int64_t kMaxSendTimeoutMs = int64_t{1} << 31;

std::array<OptionSpec, kSocketOptionNameCount> Specs() {
  return {{
      {SocketOptionName::kNoDelay, "nodelay", 0, 1, false},
      {SocketOptionName::kKeepAlive, "keepalive", 0, 1, false},
      {SocketOptionName::kKeepIdle, "keepidle", 1, 32767, false},
      {SocketOptionName::kKeepInterval, "keepintvl", 1, 32767, false},
      {SocketOptionName::kKeepCount, "keepcnt", 1, 127, false},
      {SocketOptionName::kRecvBuffer, "recv_buffer", 4096, MaxRecvBuffer(), false},
      {SocketOptionName::kSendBuffer, "send_buffer", 4096, MaxSendBuffer(), false},
      {SocketOptionName::kLinger, "linger", 0, 65535, true},
      {SocketOptionName::kTos, "tos", 0, 255, false},
      {SocketOptionName::kPriority, "priority", 0, 6, false},
      {SocketOptionName::kReuseAddress, "reuseaddr", 0, 1, false},
      {SocketOptionName::kBlocking, "blocking", 0, 0, false},
      {SocketOptionName::kSendTimeout, "send_timeout", 0, kMaxSendTimeoutMs, true},
  }};
}

const OptionSpec* FindSpec(SocketOptionName name) {
  static const auto specs = Specs();
  for (const OptionSpec& spec : specs) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace

absl::string_view SocketOptionNameString(SocketOptionName name) {
  const OptionSpec* spec = FindSpec(name);
  return spec ? spec->text : "unknown";
}

std::optional<SocketOptionName> ParseSocketOptionName(absl::string_view text) {
  for (const OptionSpec& spec : Specs()) {
    if (spec.text == text) return spec.name;
  }
  return std::nullopt;
}

std::string SocketOption::ToString() const {
  return absl::StrCat(SocketOptionNameString(name_), "=", value_);
}

absl::Status ValidateSocketOption(const SocketOption& option) {
  const OptionSpec* spec = FindSpec(option.name());
  if (spec == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("setopts: unknown option #", static_cast<int>(option.name())));
  }
  const int64_t v = option.value();
  if (option.name() == SocketOptionName::kBlocking && v != 0) {
    return absl::InvalidArgumentError(
        "setopts: blocking: server sockets must stay non-blocking");
  }
  if (option.name() == SocketOptionName::kTos && v >= 0 && v <= 255 && (v & 3) != 0) {
    // TCP owns the two ECN bits; Linux would silently drop them.
    return absl::InvalidArgumentError(
        absl::StrCat("setopts: tos: ", v, " sets the ECN bits (use a multiple of 4)"));
  }
  if ((v == -1 && spec->allows_minus_one) || (v >= spec->min && v <= spec->max)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "setopts: ", spec->text, ": ", v, " is out of range [", spec->min, ", ", spec->max,
      "]", spec->allows_minus_one ? " (or -1)" : ""));
}

}  // namespace islet
