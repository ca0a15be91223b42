// Fuzzes the input side of a connection end to end: a real Islet server on loopback is
// fed arbitrary bytes in arbitrary chunks, and its handler takes them through the data
// callback (HandleData), through blocking Connection::Recv calls of arbitrary sizes and
// timeouts mixed with HandleData and HandleContinue, or through the http_hello example.
//
// Invariants:
//   data, recv  every byte the client sent reaches the handler exactly once and in
//               order; every Recv returns exactly n bytes (n > 0), at least one (n == 0),
//               DeadlineExceeded or OutOfRange (the peer closed; never before the client
//               half-closed) and nothing else; the connection ends with HandleClose
//               after the client half-closed, and the client then reads a clean end of
//               stream with no bytes.
//   http        the server answers, never crashes or hangs: every response starts with
//               "HTTP/1.1 ", is complete by its Content-Length, nothing follows a
//               "Connection: close" one, and the stream ends cleanly (no reset) with
//               HandleClose after the client half-closed. The responses do not depend
//               on how the requests were split: the same bytes sent in one piece get
//               byte-for-byte the same answer.
// Any violation aborts. Each wait is bounded by a deadline per input, so a hang aborts
// too instead of stalling the fuzzer.
//
// One server, started at the first input and never stopped (a server per input would
// cost far more than the input), serves every connection. The client offers each
// connection's session (mode, Recv script, http options, and where the handler records
// what it gets) before connecting, and the handler factory takes it: the stream itself
// carries only the bytes under test, so the invariant is exactly "what was sent".
//
// The input:
//   byte 0            mode: % 3 = 0 data, 1 recv, 2 http; (/ 3) % 2: the server's event
//                     loop, 0 epoll, 1 io_uring (its receives into the ring's shared
//                     buffers, and blocking Recvs beside them; epoll where io_uring is
//                     refused)
//   byte 1            chunk count, % 33
//   2 bytes a chunk   little-endian: bits 0-11 the length (clamped to what is left),
//                     bits 12-13 a repeat count (1, 8, 64 or 512 times the same bytes,
//                     in one Send, up to 512 KiB in all, 64 KiB for http), bit 15 sync:
//                     wait until the handler has taken in everything sent so far before
//                     the next chunk (so the handler sees the chunk boundaries, and a
//                     Recv wanting more than is there times out)
//   data, recv:
//     byte            step count, % 17
//     3 bytes a step  n = (bits 0-12) % 4097, then = bits 13-14, timeout byte t:
//                     t < 128 ? t % 3 : t % 21 milliseconds. recv: each step is a
//                     Recv(n, timeout) on the worker, and `then` says what follows: 0 the
//                     next step at once; 1 return Continue, 2 ContinueThen, 3
//                     ContinueWithTimeout (the next step runs in the next HandleData or in
//                     HandleContinue). data: step i's `then` is the result of the i-th
//                     HandleData (0 and 1 Continue).
//   http:
//     2 bytes         max_head_bytes (0: the default 8 KiB, else b * 16) and max_body_bytes
//                     (255: the default, else b * 8)
//   the rest          the bytes to send, cut by the chunk lengths; what the chunks leave
//                     goes last, in one piece.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "examples/http_hello/http_hello.h"
#include "server/connection.h"
#include "server/event_loop_kind.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/server_options.h"
#include "transport/errors.h"
#include "transport/socket_options.h"
#include "transport/tcp_transport.h"
#include "transport/transport.h"

namespace islet {
namespace {

using examples::HttpHelloHandler;
using examples::HttpHelloOptions;

constexpr absl::Duration kReadTimeout = absl::Seconds(2);
// Everything one input does must finish within this (libFuzzer's -timeout is 10 s).
constexpr absl::Duration kBudget = absl::Seconds(5);
constexpr size_t kMaxChunks = 32;
constexpr size_t kMaxSteps = 16;
constexpr size_t kMaxRecv = 4096;
// Repeated chunks make streams beyond one read buffer (64 KiB) and the socket buffers.
// http stays smaller: its client reads the responses only after sending everything, so
// they must fit in the socket buffers and the server's send queue meanwhile.
constexpr size_t kMaxStream = 512 * 1024;
constexpr size_t kMaxHttpStream = 64 * 1024;

enum class Mode : uint8_t { kData, kRecv, kHttp };
enum class Final : uint8_t { kNone, kClose, kError, kShutdown, kTimeout };

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kData: return "data";
    case Mode::kRecv: return "recv";
    case Mode::kHttp: return "http";
  }
  return "?";
}

const char* FinalName(Final f) {
  switch (f) {
    case Final::kNone: return "none";
    case Final::kClose: return "HandleClose";
    case Final::kError: return "HandleError";
    case Final::kShutdown: return "HandleShutdown";
    case Final::kTimeout: return "HandleTimeout";
  }
  return "?";
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "recv_fuzz: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

struct Step {
  size_t n = 0;
  absl::Duration timeout;
  uint8_t then = 0;
};

// One Send: stream[offset, offset + size).
struct Chunk {
  size_t offset = 0;
  size_t size = 0;
  bool sync = false;
};

struct Input {
  Mode mode = Mode::kData;
  EventLoopKind loop = EventLoopKind::kEpoll;
  std::vector<Chunk> chunks;
  std::vector<Step> script;
  HttpHelloOptions http;
  std::string stream;  // every byte the chunks send, in order
};

Input Parse(const uint8_t* data, size_t size) {
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  auto take = [&]() -> uint8_t { return p < end ? *p++ : 0; };
  Input in;
  const uint8_t first = take();
  in.mode = static_cast<Mode>(first % 3);
  in.loop = (first / 3) % 2 == 0 ? EventLoopKind::kEpoll : EventLoopKind::kIoUring;
  struct Cut {
    size_t length;
    size_t repeat;
    bool sync;
  };
  std::vector<Cut> cuts(take() % (kMaxChunks + 1));
  for (Cut& cut : cuts) {
    const uint8_t lo = take();
    const uint16_t d = static_cast<uint16_t>(lo | take() << 8);
    cut.length = d & 0x0fff;
    cut.repeat = size_t{1} << (3 * (d >> 12 & 3));  // 1, 8, 64 or 512
    cut.sync = (d & 0x8000) != 0;
  }
  if (in.mode == Mode::kHttp) {
    const uint8_t head = take();
    const uint8_t body = take();
    if (head != 0) in.http.max_head_bytes = head * size_t{16};
    if (body != 255) in.http.max_body_bytes = body * uint64_t{8};
  } else {
    in.script.resize(take() % (kMaxSteps + 1));
    for (Step& step : in.script) {
      const uint8_t lo = take();
      const uint16_t d = static_cast<uint16_t>(lo | take() << 8);
      const uint8_t t = take();
      step.n = (d & 0x1fff) % (kMaxRecv + 1);
      step.then = static_cast<uint8_t>(d >> 13 & 3);
      step.timeout = absl::Milliseconds(t < 128 ? t % 3 : t % 21);
    }
  }
  absl::string_view rest(reinterpret_cast<const char*>(p), static_cast<size_t>(end - p));
  const size_t limit = in.mode == Mode::kHttp ? kMaxHttpStream : kMaxStream;
  for (const Cut& cut : cuts) {
    const absl::string_view piece = rest.substr(0, cut.length);
    rest.remove_prefix(piece.size());
    Chunk chunk{in.stream.size(), 0, cut.sync};
    for (size_t i = 0; i < cut.repeat && in.stream.size() + piece.size() <= limit; ++i) {
      in.stream.append(piece.data(), piece.size());
    }
    chunk.size = in.stream.size() - chunk.offset;
    in.chunks.push_back(chunk);
  }
  if (!rest.empty()) {
    in.chunks.push_back({in.stream.size(), rest.size(), false});
    in.stream.append(rest.data(), rest.size());
  }
  return in;
}

// One connection's side of the server, shared with the client thread that checks it.
struct Session {
  Mode mode = Mode::kData;
  std::vector<Step> script;
  HttpHelloOptions http;
  // Set by the client just before it half-closes: an end of stream the server sees
  // earlier is made up.
  std::atomic<bool> half_closed{false};
  // Set when http_hello returns Close (an error response, or "Connection: close"): the
  // server's lingering close then drops what the client still sends, unseen by the
  // handler, and HandleClose may come before the client's end.
  std::atomic<bool> server_closing{false};

  absl::Mutex mu;
  std::string received ABSL_GUARDED_BY(mu);  // data, recv: what reached the handler
  uint64_t delivered ABSL_GUARDED_BY(mu) = 0;  // bytes the handler has taken in
  Final final ABSL_GUARDED_BY(mu) = Final::kNone;
  std::string final_error ABSL_GUARDED_BY(mu);


  void Took(absl::string_view bytes, bool keep) {
    absl::MutexLock lock(&mu);
    if (keep) received.append(bytes.data(), bytes.size());
    delivered += bytes.size();
  }
  void End(Final f, const absl::Status& error = absl::OkStatus()) {
    if (f == Final::kClose && !half_closed && !server_closing) {
      Die("HandleClose before the client closed");
    }
    absl::MutexLock lock(&mu);
    if (final != Final::kNone) Die(absl::StrCat("a second final callback: ", FinalName(f),
                                                " after ", FinalName(final)));
    final = f;
    final_error = error.ToString();
  }
};

HandlerResult ResultOf(uint8_t then) {
  switch (then) {
    case 2: return HandlerResult::ContinueThen();
    case 3: return HandlerResult::ContinueWithTimeout(kReadTimeout);
    default: return HandlerResult::Continue();
  }
}

// Modes data and recv: records every byte, however it arrives.
class StreamHandler : public Handler {
 public:
  explicit StreamHandler(std::shared_ptr<Session> s) : s_(std::move(s)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    return s_->mode == Mode::kRecv ? RunScript(conn) : HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data.empty()) Die("HandleData with no data");
    s_->Took(data, /*keep=*/true);
    if (s_->mode == Mode::kRecv) return RunScript(conn);
    return next_ < s_->script.size() ? ResultOf(s_->script[next_++].then)
                                     : HandlerResult::Continue();
  }
  HandlerResult HandleContinue(Connection& conn) override {
    return s_->mode == Mode::kRecv ? RunScript(conn) : HandlerResult::Continue();
  }
  void HandleClose(Connection&) override { s_->End(Final::kClose); }
  void HandleError(const absl::Status& e, Connection&) override { s_->End(Final::kError, e); }
  void HandleShutdown(Connection&) override { s_->End(Final::kShutdown); }
  void HandleTimeout(Connection&) override { s_->End(Final::kTimeout); }

 private:
  // Runs Recv steps until one says to return, or the script ends.
  HandlerResult RunScript(Connection& conn) {
    while (next_ < s_->script.size()) {
      const Step& step = s_->script[next_++];
      absl::StatusOr<std::string> got = conn.Recv(step.n, step.timeout);
      if (got.ok()) {
        if (step.n > 0 && got->size() != step.n) {
          Die(absl::StrCat("Recv(", step.n, ") returned ", got->size(), " bytes"));
        }
        if (step.n == 0 && got->empty()) Die("Recv(0) returned no bytes and no error");
        s_->Took(*got, /*keep=*/true);
      } else if (IsPeerClosed(got.status())) {
        if (!s_->half_closed) Die("Recv reported the end of stream before the client closed");
      } else if (!IsTimeout(got.status())) {
        Die(absl::StrCat("Recv(", step.n, ", ", absl::FormatDuration(step.timeout),
                         ") failed: ", got.status().ToString()));
      }
      if (step.then != 0) return ResultOf(step.then);
    }
    return HandlerResult::Continue();
  }

  std::shared_ptr<Session> s_;
  size_t next_ = 0;
};

// Mode http: the example handler, counting what it is given and how it ends.
class HttpHandler : public Handler {
 public:
  explicit HttpHandler(std::shared_ptr<Session> s)
      : s_(std::move(s)), inner_(std::any(s_->http)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    return inner_.HandleConnection(conn);
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data.empty()) Die("HandleData with no data");
    HandlerResult result = inner_.HandleData(data, conn);
    if (result.kind() == HandlerResult::Kind::kClose) s_->server_closing = true;
    s_->Took(data, /*keep=*/false);
    return result;
  }
  HandlerResult HandleContinue(Connection& conn) override { return inner_.HandleContinue(conn); }
  void HandleClose(Connection& conn) override {
    inner_.HandleClose(conn);
    s_->End(Final::kClose);
  }
  void HandleError(const absl::Status& e, Connection& conn) override {
    inner_.HandleError(e, conn);
    s_->End(Final::kError, e);
  }
  void HandleShutdown(Connection& conn) override {
    inner_.HandleShutdown(conn);
    s_->End(Final::kShutdown);
  }
  void HandleTimeout(Connection& conn) override {
    inner_.HandleTimeout(conn);
    s_->End(Final::kTimeout);
  }

 private:
  std::shared_ptr<Session> s_;
  HttpHelloHandler inner_;
};

// The client offers the session of its next connection here; the factory takes it.
// Inputs run one at a time, and each waits for its connections to end, so there is
// never more than one on offer.
ABSL_CONST_INIT absl::Mutex offer_mu(absl::kConstInit);
std::shared_ptr<Session>* const offered ABSL_PT_GUARDED_BY(offer_mu) =
    new std::shared_ptr<Session>();

std::unique_ptr<Handler> MakeHandler(const std::any&) {
  std::shared_ptr<Session> s;
  {
    absl::MutexLock lock(&offer_mu);
    s = std::exchange(*offered, nullptr);
  }
  if (s == nullptr) Die("a connection nobody offered a session for");
  if (s->mode == Mode::kHttp) return std::make_unique<HttpHandler>(std::move(s));
  return std::make_unique<StreamHandler>(std::move(s));
}

// The servers, one per event loop: each started at its first input, never stopped.
// Where io_uring is refused, its inputs go to the epoll server (said once).
const SocketInfo& ServerAddress(EventLoopKind loop) {
  static auto start = [](EventLoopKind kind) -> const SocketInfo* {
    ServerOptions options;
    options.port = 0;
    options.transport_options.address = "127.0.0.1";
    options.handler_factory = MakeHandler;
    options.num_workers = 2;
    options.event_loop = kind;
    options.read_timeout = kReadTimeout;
    // Generous: the client half-closes right after its last chunk, so the lingering
    // close never runs out unless something is stuck.
    options.linger_timeout = absl::Seconds(3);
    options.name = "recv_fuzz";
    absl::StatusOr<std::unique_ptr<Server>> started = Server::Start(std::move(options));
    if (!started.ok() && kind == EventLoopKind::kIoUring && absl::IsUnavailable(started.status())) {
      std::fprintf(stderr, "recv_fuzz: io_uring inputs go to epoll: %s\n",
                   started.status().ToString().c_str());
      return nullptr;
    }
    if (!started.ok()) Die(absl::StrCat("server start: ", started.status().ToString()));
    // Kept for the life of the process, reachable (not a leak).
    static std::vector<std::unique_ptr<Server>>* const servers =
        new std::vector<std::unique_ptr<Server>>();
    servers->push_back(*std::move(started));
    absl::StatusOr<SocketInfo> where = servers->back()->ListenerInfo();
    if (!where.ok()) Die(absl::StrCat("listener info: ", where.status().ToString()));
    return new SocketInfo(*where);
  };
  static const SocketInfo* epoll = start(EventLoopKind::kEpoll);
  if (loop == EventLoopKind::kEpoll) return *epoll;
  static const SocketInfo* io_uring = start(EventLoopKind::kIoUring);
  return io_uring != nullptr ? *io_uring : *epoll;
}

// The handler's view, for messages. Call with s.mu held.
std::string ServerSide(const Session& s, uint64_t sent) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  std::string out = absl::StrCat("server side: ", s.delivered, " of ", sent,
                                 " bytes taken in, final callback ", FinalName(s.final));
  if (s.final == Final::kError) absl::StrAppend(&out, " (", s.final_error, ")");
  if (s.server_closing) absl::StrAppend(&out, ", the handler closed first");
  return out;
}

absl::Duration Left(absl::Time deadline) {
  return std::max(deadline - absl::Now(), absl::ZeroDuration());
}

std::string Describe(const Input& in, absl::string_view stage) {
  return absl::StrCat("mode ", ModeName(in.mode), " on ", EventLoopKindName(in.loop), ", ",
                      in.chunks.size(), " chunks, ",
                      in.script.size(), " steps, ", in.stream.size(), " bytes (", stage, ")");
}

// Reads until the server closes: what came, or the failure (a reset, the deadline).
absl::StatusOr<std::string> ReadToEnd(Socket& client, absl::Time deadline) {
  std::string all;
  for (;;) {
    absl::StatusOr<std::string> got = client.Recv(0, Left(deadline));
    if (got.ok()) {
      all += *got;
      continue;
    }
    if (IsPeerClosed(got.status())) return all;
    return absl::Status(got.status().code(), absl::StrCat(got.status().message(), " after ",
                                                          all.size(), " bytes"));
  }
}

// Runs one connection: sends the chunks, half-closes, reads what comes back, waits for
// the handler's final callback. Returns what the client read.
std::string RunConnection(const Input& in, const std::shared_ptr<Session>& s,
                          const std::vector<Chunk>& chunks, absl::Time deadline,
                          absl::string_view stage) {
  const std::string context = Describe(in, stage);
  {
    absl::MutexLock lock(&offer_mu);
    *offered = s;
  }
  absl::StatusOr<std::unique_ptr<TcpSocket>> client =
      TcpSocket::Connect(ServerAddress(in.loop), Left(deadline));
  if (!client.ok()) Die(absl::StrCat("connect: ", client.status().ToString(), "; ", context));
  uint64_t sent = 0;
  for (const Chunk& chunk : chunks) {
    const absl::string_view bytes = absl::string_view(in.stream).substr(chunk.offset, chunk.size);
    absl::Status set = (*client)->SetOptions(
        {SocketOption::SendTimeout(std::max(Left(deadline), absl::Milliseconds(1)))});
    if (!set.ok()) Die(absl::StrCat("send_timeout: ", set.ToString()));
    absl::Status sending = (*client)->Send(bytes);
    if (!sending.ok()) {
      absl::MutexLock lock(&s->mu);
      Die(absl::StrCat("send after ", sent, " bytes: ", sending.ToString(), " (",
                       ServerSide(*s, sent), "); ", context));
    }
    sent += bytes.size();
    if (!chunk.sync) continue;
    absl::MutexLock lock(&s->mu);
    auto caught_up = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
      return s->delivered >= sent || s->final != Final::kNone;
    };
    if (!s->mu.AwaitWithTimeout(absl::Condition(&caught_up), Left(deadline))) {
      Die(absl::StrCat("the handler did not catch up within the deadline (",
                       ServerSide(*s, sent), "); ", context));
    }
  }
  s->half_closed = true;
  absl::Status shut = (*client)->Shutdown(ShutdownWay::kWrite);
  if (!shut.ok()) Die(absl::StrCat("client shutdown: ", shut.ToString()));
  // The server closes only after the final callback, so once the client has read the
  // end of the stream the callback has run.
  absl::StatusOr<std::string> reply = ReadToEnd(**client, deadline);
  absl::MutexLock lock(&s->mu);
  if (!reply.ok()) {
    Die(absl::StrCat("the client's read did not end cleanly: ", reply.status().ToString(),
                     " (", ServerSide(*s, sent), "); ", context));
  }
  auto ended = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->final != Final::kNone; };
  if (!s->mu.AwaitWithTimeout(absl::Condition(&ended), Left(deadline))) {
    Die(absl::StrCat("no final callback within the deadline (", ServerSide(*s, sent), "); ",
                     context));
  }
  if (s->final != Final::kClose) {
    Die(absl::StrCat("the connection did not end with HandleClose (", ServerSide(*s, sent),
                     "); ", context));
  }
  if (s->delivered > sent || (s->delivered != sent && !s->server_closing)) {
    Die(absl::StrCat("bytes lost or duplicated (", ServerSide(*s, sent), "); ", context));
  }
  return *std::move(reply);
}

void CheckStream(const Input& in, Session& s, absl::string_view reply) {
  absl::MutexLock lock(&s.mu);
  if (!reply.empty()) {
    Die(absl::StrCat("the server sent ", reply.size(), " bytes; ", Describe(in, "stream")));
  }
  if (s.received == in.stream) return;
  size_t at = 0;
  while (at < s.received.size() && at < in.stream.size() && s.received[at] == in.stream[at]) ++at;
  Die(absl::StrCat("the handler got ", s.received.size(), " bytes for ", in.stream.size(),
                   " sent, first difference at byte ", at, "; ", Describe(in, "stream")));
}

// Every response is "HTTP/1.1 ...", complete by its Content-Length, and none follows
// one that said "Connection: close".
void CheckResponses(const Input& in, absl::string_view reply, absl::string_view stage) {
  const std::string context = Describe(in, stage);
  absl::string_view rest = reply;
  bool closed = false;
  while (!rest.empty()) {
    const size_t offset = reply.size() - rest.size();
    if (closed) Die(absl::StrCat("a response after Connection: close, at ", offset, "; ", context));
    if (!absl::StartsWith(rest, "HTTP/1.1 ")) {
      Die(absl::StrCat("a response does not start with HTTP/1.1, at ", offset, "; ", context));
    }
    const size_t head_end = rest.find("\r\n\r\n");
    if (head_end == absl::string_view::npos) {
      Die(absl::StrCat("a response head is cut short, at ", offset, "; ", context));
    }
    const absl::string_view head = rest.substr(0, head_end + 2);
    constexpr absl::string_view kLength = "\r\nContent-Length: ";
    const size_t at = head.find(kLength);
    uint64_t length = 0;
    if (at == absl::string_view::npos) Die(absl::StrCat("no Content-Length; ", context));
    const size_t value = at + kLength.size();
    if (!absl::SimpleAtoi(head.substr(value, head.find("\r\n", value) - value), &length)) {
      Die(absl::StrCat("a bad Content-Length; ", context));
    }
    closed = absl::StrContains(head, "\r\nConnection: close\r\n");
    rest.remove_prefix(head_end + 4);
    if (rest.size() < length) {
      Die(absl::StrCat("a response body is cut short: ", rest.size(), " of ", length,
                       " bytes; ", context));
    }
    rest.remove_prefix(length);
  }
}

}  // namespace
}  // namespace islet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace islet;
  const Input in = Parse(data, size);
  const absl::Time deadline = absl::Now() + kBudget;
  auto session = [&] {
    auto s = std::make_shared<Session>();
    s->mode = in.mode;
    s->script = in.script;
    s->http = in.http;
    return s;
  };
  if (in.mode != Mode::kHttp) {
    std::shared_ptr<Session> s = session();
    const std::string reply = RunConnection(in, s, in.chunks, deadline, "chunked");
    CheckStream(in, *s, reply);
    return 0;
  }
  const std::string chunked = RunConnection(in, session(), in.chunks, deadline, "chunked");
  CheckResponses(in, chunked, "chunked");
  if (in.chunks.size() > 1) {
    // The same bytes in one piece must get the same answer.
    const std::vector<Chunk> whole = {{0, in.stream.size(), false}};
    const std::string reference = RunConnection(in, session(), whole, deadline, "whole");
    if (reference != chunked) {
      Die(absl::StrCat("the responses depend on the chunking: ", chunked.size(),
                       " bytes chunked, ", reference.size(), " bytes whole; ",
                       Describe(in, "http")));
    }
  }
  return 0;
}
