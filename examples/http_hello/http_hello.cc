#include "examples/http_hello/http_hello.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace islet::examples {
namespace {

constexpr absl::string_view kHello =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "\r\n"
    "Hello world!";
constexpr absl::string_view kHelloKeepAlive10 =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "Hello world!";
constexpr absl::string_view kHelloClose =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello world!";

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// A request target has no spaces or control characters.
bool IsTarget(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u > 0x20 && u != 0x7f;
         });
}

}  // namespace

HttpHelloHandler::HttpHelloHandler(const std::any& options) {
  if (const auto* o = std::any_cast<HttpHelloOptions>(&options)) options_ = *o;
}

HandlerResult HttpHelloHandler::HandleData(absl::string_view data, Connection& conn) {
  if (lingering_) return HandlerResult::Continue();  // draining: input is ignored
  std::string responses;
  Verdict verdict;
  if (partial_.empty()) {
    // The steady path: parse straight from the read buffer, copy nothing.
    absl::string_view input = data;
    verdict = Serve(input, responses);
    if (verdict == Verdict::kNeedMore) partial_.assign(input.data(), input.size());
  } else {
    partial_.append(data.data(), data.size());
    absl::string_view input = partial_;
    verdict = Serve(input, responses);
    partial_ = std::string(input);
  }
  if (!responses.empty()) {
    absl::Status sent = conn.Send(responses);
    if (!sent.ok()) return HandlerResult::Error(sent);
  }
  switch (verdict) {
    case Verdict::kNeedMore:
      return HandlerResult::Continue();
    case Verdict::kClose:
      return Linger(conn);
    case Verdict::kReject:
      return Reject(conn, reject_status_);
  }
  return HandlerResult::Continue();
}

HttpHelloHandler::Verdict HttpHelloHandler::Serve(absl::string_view& input,
                                                  std::string& responses) {
  for (;;) {
    if (body_left_ > 0) {
      const uint64_t skip = std::min<uint64_t>(body_left_, input.size());
      body_left_ -= skip;
      input.remove_prefix(static_cast<size_t>(skip));
      if (body_left_ > 0) return Verdict::kNeedMore;
    }
    if (input.empty()) return Verdict::kNeedMore;
    const size_t head_end = input.find("\r\n\r\n");
    if (head_end == absl::string_view::npos) {
      if (input.size() > options_.max_head_bytes) {
        reject_status_ = "431 Request Header Fields Too Large";
        return Verdict::kReject;
      }
      return Verdict::kNeedMore;
    }
    if (head_end + 4 > options_.max_head_bytes) {
      reject_status_ = "431 Request Header Fields Too Large";
      return Verdict::kReject;
    }
    const absl::string_view head = input.substr(0, head_end);
    reject_status_ = "400 Bad Request";

    // Request line: METHOD SP target SP HTTP/1.x
    const size_t line_end = head.find("\r\n");
    const absl::string_view request_line = head.substr(0, line_end);
    std::vector<absl::string_view> parts = absl::StrSplit(request_line, ' ');
    if (parts.size() != 3 || !IsToken(parts[0]) || !IsTarget(parts[1])) return Verdict::kReject;
    bool http11;
    if (parts[2] == "HTTP/1.1") {
      http11 = true;
    } else if (parts[2] == "HTTP/1.0") {
      http11 = false;
    } else {
      return Verdict::kReject;
    }

    bool keep_alive = http11;
    bool has_length = false;
    uint64_t length = 0;
    absl::string_view rest =
        line_end == absl::string_view::npos ? absl::string_view() : head.substr(line_end + 2);
    for (absl::string_view line : absl::StrSplit(rest, "\r\n", absl::SkipEmpty())) {
      const size_t colon = line.find(':');
      if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
        return Verdict::kReject;
      }
      const absl::string_view name = line.substr(0, colon);
      const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
      if (absl::EqualsIgnoreCase(name, "content-length")) {
        uint64_t n;
        if (value.empty() || !std::all_of(value.begin(), value.end(), absl::ascii_isdigit) ||
            !absl::SimpleAtoi(value, &n) || (has_length && n != length)) {
          return Verdict::kReject;  // unparsable or conflicting lengths: no safe framing
        }
        has_length = true;
        length = n;
      } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
        // Chunked bodies are out of this example's scope; refusing beats misframing.
        reject_status_ = "501 Not Implemented";
        return Verdict::kReject;
      } else if (absl::EqualsIgnoreCase(name, "connection")) {
        for (absl::string_view token : absl::StrSplit(value, ',')) {
          token = absl::StripAsciiWhitespace(token);
          if (absl::EqualsIgnoreCase(token, "close")) keep_alive = false;
          if (absl::EqualsIgnoreCase(token, "keep-alive")) keep_alive = true;
        }
      }
    }
    if (length > options_.max_body_bytes) {
      reject_status_ = "413 Content Too Large";
      return Verdict::kReject;
    }
    input.remove_prefix(head_end + 4);
    body_left_ = length;
    if (!keep_alive) {
      responses.append(kHelloClose.data(), kHelloClose.size());
      return Verdict::kClose;
    }
    const absl::string_view hello = http11 ? kHello : kHelloKeepAlive10;
    responses.append(hello.data(), hello.size());
  }
}

HandlerResult HttpHelloHandler::Reject(Connection& conn, absl::string_view status_line) {
  const absl::string_view reason = status_line.substr(status_line.find(' ') + 1);
  conn.Send(absl::StrCat("HTTP/1.1 ", status_line,
                         "\r\nServer: islet\r\nContent-Type: text/plain\r\nContent-Length: ",
                         reason.size() + 1, "\r\nConnection: close\r\n\r\n", reason, "\n"))
      .IgnoreError();
  return Linger(conn);
}

HandlerResult HttpHelloHandler::Linger(Connection& conn) {
  // Half-close once the responses are out, then drain what the client still sends until
  // it closes or the linger time passes: closing with unread input would reset the
  // connection and could destroy the last response on its way.
  conn.Shutdown(ShutdownWay::kWrite).IgnoreError();
  lingering_ = true;
  partial_.clear();
  return HandlerResult::ContinueWithTimeout(options_.linger);
}

}  // namespace islet::examples
