#include "examples/http_hello/http_hello.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "examples/http_hello/hello_response.h"

// This handler is the subject of the HTTP benchmarks, so its steady path is kept lean:
// requests are parsed in place in one pass over each head, and the responses are views
// of static text, so a keep-alive or pipelined request costs no allocation and no copy.

namespace islet::examples {
namespace {

constexpr absl::string_view kBadRequest = "400 Bad Request";
constexpr absl::string_view kHeadTooLarge = "431 Request Header Fields Too Large";
constexpr absl::string_view kBodyTooLarge = "413 Content Too Large";
constexpr absl::string_view kNotImplemented = "501 Not Implemented";
constexpr absl::string_view kVersionNotSupported = "505 HTTP Version Not Supported";

constexpr const auto& kHello = examples::kHelloResponse;
constexpr char kHelloKeepAlive10[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "Hello world!";
constexpr const auto& kHelloClose = examples::kHelloCloseResponse;

// How many copies of a keep-alive response one view can carry: enough for the deepest
// pipelines clients use (wrk's benchmark script sends 16), small enough to be cheap
// static data.
constexpr size_t kRun = 32;

// `text` (a string literal) kRun times back to back, built at compile time.
template <size_t kSize>
constexpr std::array<char, (kSize - 1) * kRun> Repeat(const char (&text)[kSize]) {
  std::array<char, (kSize - 1) * kRun> run{};
  for (size_t i = 0; i < run.size(); ++i) run[i] = text[i % (kSize - 1)];
  return run;
}

constexpr auto kHelloRun = Repeat(kHello);
constexpr auto kHelloKeepAlive10Run = Repeat(kHelloKeepAlive10);

// A response as Replies (below) takes it: `repeated` holds it kRun times back to back,
// or once for the closing one (nothing follows it), and `size` is one copy's length.
struct Reply {
  absl::string_view repeated;
  size_t size;
};

template <size_t kSize>
constexpr absl::string_view View(const std::array<char, kSize>& text) {
  return absl::string_view(text.data(), text.size());
}

constexpr Reply kHelloReply = {View(kHelloRun), sizeof(kHello) - 1};
constexpr Reply kHelloKeepAlive10Reply = {View(kHelloKeepAlive10Run),
                                          sizeof(kHelloKeepAlive10) - 1};
// With its length: the one-argument string_view checks the pointer for null, which the
// sanitizer builds do not take as a constant expression for another header's array.
constexpr Reply kHelloCloseReply = {absl::string_view(kHelloClose, sizeof(kHelloClose) - 1),
                                    sizeof(kHelloClose) - 1};

// tchar (RFC 9110, section 5.6.2) as a table: one load per character.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
  for (const char* c = "!#$%&'*+-.^_`|~"; *c != '\0'; ++c) {
    table[static_cast<unsigned char>(*c)] = true;
  }
  return table;
}();

bool IsTokenChar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }

// A request target has no spaces or control characters.
bool IsTargetChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f;
}

// The length of the longest prefix of `s` whose characters all satisfy `pred`.
template <typename Pred>
size_t PrefixLength(absl::string_view s, Pred pred) {
  size_t n = 0;
  while (n < s.size() && pred(s[n])) ++n;
  return n;
}

// EqualsIgnoreCase with the lengths compared inline first: most header names differ in
// length from the ones we look for, and then no call is made.
bool IsName(absl::string_view name, absl::string_view wanted) {
  return name.size() == wanted.size() && absl::EqualsIgnoreCase(name, wanted);
}

// What a request head says.
struct RequestHead {
  size_t size = 0;          // its bytes, through the empty line that ends it
  absl::string_view fault;  // empty, or the status line to refuse the request with
  bool http11 = false;
  bool keep_alive = false;
  bool has_length = false;
  uint64_t content_length = 0;
};

// Where the line that starts at `from` ends: the position of its CRLF, or npos while its
// LF has not arrived. A line ended by a bare LF is bad: head.fault is set and npos
// returned. (RFC 9112, section 2.2, lets a server take a bare LF as a line end; refusing
// it keeps one framing for everyone.) memchr finds the LF; a generic substring search
// costs several times more on these short lines.
inline size_t FindLineEnd(absl::string_view s, size_t from, RequestHead& head) {
  if (from >= s.size()) return absl::string_view::npos;
  const void* lf = std::memchr(s.data() + from, '\n', s.size() - from);
  if (lf == nullptr) return absl::string_view::npos;
  const size_t at = static_cast<size_t>(static_cast<const char*>(lf) - s.data());
  if (at == from || s[at - 1] != '\r') {
    head.fault = kBadRequest;
    return absl::string_view::npos;
  }
  return at - 1;
}

// HTTP-version is "HTTP/" DIGIT "." DIGIT (RFC 9112, section 2.3).
bool IsHttpVersion(absl::string_view v) {
  return v.size() == 8 && absl::StartsWith(v, "HTTP/") && absl::ascii_isdigit(v[5]) &&
         v[6] == '.' && absl::ascii_isdigit(v[7]);
}

// METHOD SP target SP HTTP/1.x
void ParseRequestLine(absl::string_view line, RequestHead& head) {
  const size_t method = PrefixLength(line, IsTokenChar);
  if (method == 0 || method == line.size() || line[method] != ' ') {
    head.fault = kBadRequest;
    return;
  }
  line.remove_prefix(method + 1);
  const size_t target = PrefixLength(line, IsTargetChar);
  if (target == 0 || target == line.size() || line[target] != ' ') {
    head.fault = kBadRequest;
    return;
  }
  const absl::string_view version = line.substr(target + 1);
  if (version == "HTTP/1.1") {
    head.http11 = true;
  } else if (version != "HTTP/1.0") {
    if (!IsHttpVersion(version)) {
      head.fault = kBadRequest;
      return;
    }
    // A later HTTP/1 minor version is served as 1.1 (RFC 9110, section 2.5); another
    // major version is well-formed but not ours to speak.
    if (version[5] != '1') {
      head.fault = kVersionNotSupported;
      return;
    }
    head.http11 = true;
  }
  head.keep_alive = head.http11;
}

// name ":" value, where only three names matter here.
void ParseHeaderLine(absl::string_view line, RequestHead& head) {
  const size_t name_size = PrefixLength(line, IsTokenChar);
  if (name_size == 0 || name_size == line.size() || line[name_size] != ':') {
    head.fault = kBadRequest;
    return;
  }
  const absl::string_view name = line.substr(0, name_size);
  const absl::string_view value = line.substr(name_size + 1);
  if (IsName(name, "content-length")) {
    const absl::string_view digits = absl::StripAsciiWhitespace(value);
    uint64_t n;
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
        !absl::SimpleAtoi(digits, &n) || (head.has_length && n != head.content_length)) {
      head.fault = kBadRequest;  // unparsable or conflicting lengths: no safe framing
      return;
    }
    head.has_length = true;
    head.content_length = n;
  } else if (IsName(name, "transfer-encoding")) {
    // Chunked bodies are out of this example's scope; refusing beats misframing.
    head.fault = kNotImplemented;
  } else if (IsName(name, "connection")) {
    for (absl::string_view token : absl::StrSplit(value, ',')) {
      token = absl::StripAsciiWhitespace(token);
      if (absl::EqualsIgnoreCase(token, "close")) head.keep_alive = false;
      if (absl::EqualsIgnoreCase(token, "keep-alive")) head.keep_alive = true;
    }
  }
}

// Parses the request head at the start of `input` in one pass, line by line; it ends
// at the first empty line. Each line is checked as soon as it is complete, so a bad one
// is answered at once, without waiting for the rest of the head. Returns true with a
// verdict: the head is complete (head.size is set) or a line is bad (head.fault is set);
// false while the head is incomplete and its complete lines are good.
bool ParseHead(absl::string_view input, RequestHead& head) {
  size_t line_end = FindLineEnd(input, 0, head);
  if (line_end == absl::string_view::npos) return !head.fault.empty();
  ParseRequestLine(input.substr(0, line_end), head);
  while (head.fault.empty()) {
    const size_t line_start = line_end + 2;
    line_end = FindLineEnd(input, line_start, head);
    if (line_end == absl::string_view::npos) break;
    if (line_end == line_start) {
      head.size = line_end + 2;
      return true;
    }
    ParseHeaderLine(input.substr(line_start, line_end - line_start), head);
  }
  return !head.fault.empty();
}

}  // namespace

// The responses to the requests of one read, as views of the static texts above, sent
// with one gather Send when the read is done: nothing is copied or allocated. Identical
// consecutive responses share one view of their repeated text, so a pipelined batch is
// usually a single view. Order is kept: a full set of views is sent before any more.
class HttpHelloHandler::Replies {
 public:
  explicit Replies(Connection& conn) : conn_(conn) {}

  void Add(const Reply& reply) {
    if (!views_.empty()) {
      // The same response again, with room left in its repeated text: one more copy.
      absl::string_view& last = views_.back();
      if (last.data() == reply.repeated.data() &&
          last.size() + reply.size <= reply.repeated.size()) {
        last = absl::string_view(last.data(), last.size() + reply.size);
        return;
      }
    }
    if (views_.size() == kMaxViews) Flush();
    views_.push_back(reply.repeated.substr(0, reply.size));
  }

  // Sends what is left. Returns the first Send failure, if any.
  absl::Status Finish() {
    Flush();
    return status_;
  }

 private:
  static constexpr size_t kMaxViews = 16;

  void Flush() {
    if (!views_.empty() && status_.ok()) status_ = conn_.Send(views_);
    views_.clear();
  }

  Connection& conn_;
  absl::InlinedVector<absl::string_view, kMaxViews> views_;  // never more: no allocation
  absl::Status status_;
};

HttpHelloHandler::HttpHelloHandler(const std::any& options) {
  if (const auto* o = std::any_cast<HttpHelloOptions>(&options)) options_ = *o;
}

HandlerResult HttpHelloHandler::HandleData(absl::string_view data, Connection& conn) {
  Replies replies(conn);
  // A stopping server answers what had arrived, each connection's last request with
  // Connection: close: HandleShutdown follows, and the client must not send more.
  const bool last = conn.stopping();
  int answered = 0;
  Verdict verdict;
  if (partial_.empty()) {
    // The steady path: parse straight from the read buffer, copy nothing.
    absl::string_view input = data;
    verdict = Serve(input, replies, last, answered);
    if (verdict == Verdict::kNeedMore) partial_.assign(input.data(), input.size());
  } else {
    partial_.append(data.data(), data.size());
    absl::string_view input = partial_;
    verdict = Serve(input, replies, last, answered);
    // Erasing keeps the capacity: a client that splits its requests often costs no
    // allocation per request either.
    partial_.erase(0, partial_.size() - input.size());
  }
  absl::Status sent = replies.Finish();
  if (!sent.ok()) return HandlerResult::Error(sent);
  switch (verdict) {
    case Verdict::kNeedMore:
      // A head begun and not finished has head_timeout in all, from its first byte. A
      // head that began in this read after an answered request (pipelined) is a new
      // one: its own deadline, not what was left of the one before.
      if (!partial_.empty() && body_left_ == 0 && (!head_deadline_ || answered > 0)) {
        conn.SetDeadline(options_.head_timeout, TimeoutScaling::kShrinkUnderPressure);
        head_deadline_ = true;
      } else if (partial_.empty() && head_deadline_) {
        conn.ClearDeadline();
        head_deadline_ = false;
      }
      return HandlerResult::Continue();
    case Verdict::kClose:
      return HandlerResult::Close();
    case Verdict::kReject:
      return Reject(conn, reject_status_);
  }
  return HandlerResult::Continue();
}

bool HttpHelloHandler::CompleteHeadFollows(absl::string_view input) const {
  if (body_left_ >= input.size()) return false;
  input.remove_prefix(static_cast<size_t>(body_left_));
  RequestHead next;
  return ParseHead(input.substr(0, options_.max_head_bytes), next);
}

HttpHelloHandler::Verdict HttpHelloHandler::Serve(absl::string_view& input, Replies& replies,
                                                  bool last, int& answered) {
  for (;;) {
    if (body_left_ > 0) {
      const uint64_t skip = std::min<uint64_t>(body_left_, input.size());
      body_left_ -= skip;
      input.remove_prefix(static_cast<size_t>(skip));
      if (body_left_ > 0) return Verdict::kNeedMore;
    }
    if (input.empty()) return Verdict::kNeedMore;
    // A head within the limit lies within its first max_head_bytes: looking further
    // would only find one too large. Whichever comes first decides, a bad line complete
    // within the limit or the limit, so the answer does not depend on how the bytes
    // were cut into reads.
    RequestHead head;
    if (!ParseHead(input.substr(0, options_.max_head_bytes), head)) {
      if (input.size() > options_.max_head_bytes) {
        reject_status_ = kHeadTooLarge;
        return Verdict::kReject;
      }
      return Verdict::kNeedMore;
    }
    if (!head.fault.empty()) {
      reject_status_ = head.fault;
      return Verdict::kReject;
    }
    if (head.content_length > options_.max_body_bytes) {
      reject_status_ = kBodyTooLarge;
      return Verdict::kReject;
    }
    input.remove_prefix(head.size);
    body_left_ = head.content_length;
    ++answered;
    // Stopping: every request that has arrived is answered, and only the last of them
    // says Connection: close (answering the first so would drop the rest unanswered).
    if (!head.keep_alive || (last && !CompleteHeadFollows(input))) {
      replies.Add(kHelloCloseReply);
      return Verdict::kClose;
    }
    replies.Add(head.http11 ? kHelloReply : kHelloKeepAlive10Reply);
  }
}

void HttpHelloHandler::HandleTimeout(Connection& conn) {
  if (partial_.empty()) return;  // idle between requests: just close
  constexpr absl::string_view kTimeout =
      "HTTP/1.1 408 Request Timeout\r\nServer: islet\r\nContent-Type: text/plain\r\n"
      "Content-Length: 16\r\nConnection: close\r\n\r\nRequest Timeout\n";
  conn.Send(kTimeout).IgnoreError();
}

HandlerResult HttpHelloHandler::Reject(Connection& conn, absl::string_view status_line) {
  const absl::string_view reason = status_line.substr(status_line.find(' ') + 1);
  conn.Send(absl::StrCat("HTTP/1.1 ", status_line,
                         "\r\nServer: islet\r\nContent-Type: text/plain\r\nContent-Length: ",
                         reason.size() + 1, "\r\nConnection: close\r\n\r\n", reason, "\n"))
      .IgnoreError();
  // The server's lingering close drains what the client still sends, within
  // linger_timeout in all, so the response is not destroyed by a reset.
  return HandlerResult::Close();
}

}  // namespace islet::examples
