// HTTP hello world: answers "Hello world!" to every HTTP/1.x request, with keep-alive,
// pipelining and correct framing. Request bodies framed by Content-Length are read and
// ignored. A malformed request (answered as soon as its first bad line is complete), an
// HTTP version other than 1.x (505), a chunked body, or a head over the size limit gets
// an error response and a close. A request answered while the server stops
// (Connection::stopping) gets "Connection: close", and the connection closes after
// it. A request head must be complete within head_timeout of its first byte, pipelined
// heads each within their own. The server's lingering close (half-close, then input
// drained for at most ServerOptions::linger_timeout in all) keeps a reset from
// destroying the response before the client reads it.
#ifndef ISLET_EXAMPLES_HTTP_HELLO_HTTP_HELLO_H_
#define ISLET_EXAMPLES_HTTP_HELLO_HTTP_HELLO_H_

#include <any>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/connection.h"
#include "server/handler.h"

namespace islet::examples {

struct HttpHelloOptions {
  // The request line plus headers may not exceed this (431 beyond, unless a bad line
  // within the limit comes first: that one is answered).
  size_t max_head_bytes = 8 * 1024;
  // Bodies above this are refused (413) instead of being read.
  uint64_t max_body_bytes = 64 << 20;
  // A request head must be complete within this from its first byte, however the
  // client trickles it (Connection::SetDeadline; the read timeout alone restarts with
  // every byte): 408 and a close otherwise. Kestrel allows 30 s, nginx 60 s. It shrinks
  // under overload (TimeoutScaling::kShrinkUnderPressure), so tricklers are shed first.
  absl::Duration head_timeout = absl::Seconds(10);
};

class HttpHelloHandler : public Handler {
 public:
  // ServerOptions::handler_options may hold an HttpHelloOptions; anything else means the
  // defaults. (No default constructor: HandlerFactoryOf would prefer it and drop the
  // options.)
  explicit HttpHelloHandler(const std::any& options);

  HandlerResult HandleData(absl::string_view data, Connection& conn) override;
  // Within a request head: 408.
  void HandleTimeout(Connection& conn) override;

 private:
  // What one parse pass decided.
  enum class Verdict : uint8_t { kNeedMore, kClose, kReject };
  // The responses to one read's requests, gathered for one Send (defined in the .cc).
  class Replies;

  // Parses and answers complete requests in `input`; what it consumed is removed.
  // `last`: the server is stopping, so every complete request is answered and the last
  // of them says Connection: close. `answered`: how many requests it answered.
  Verdict Serve(absl::string_view& input, Replies& replies, bool last, int& answered);
  // Whether `input`, after what is left of the current request's body, holds another
  // complete request head.
  bool CompleteHeadFollows(absl::string_view input) const;
  HandlerResult Reject(Connection& conn, absl::string_view status_line);

  HttpHelloOptions options_;
  std::string partial_;      // an incomplete request head kept between reads
  bool head_deadline_ = false;  // SetDeadline runs for the head in partial_
  uint64_t body_left_ = 0;   // bytes of a request body still to skip
  absl::string_view reject_status_;  // after kReject: a static status line
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_HTTP_HELLO_HTTP_HELLO_H_
