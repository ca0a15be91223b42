// Telemetry: spans and events with the meaning Thousand Island gives them.
//
//   span        events (TelemetryEventType)
//   listener    start, stop
//   acceptor    start, stop, spawn_error, econnaborted, accept_error, emfile
//   connection  start, stop, ready, async_recv, recv, recv_error, send, send_error,
//               sendfile, sendfile_error, socket_shutdown
//   server      overload (our own: the overload state changed; see overload_state.h)
//
// Every event carries the monotonic time; stop events add the span's duration, and
// connection.ready the TLS handshake's (zero for a transport without a handshake).
// connection.stop's detail says how the connection ended: "close" (either side closed
// it), "timeout" (HandleTimeout), "shutdown" (the server stopped), "error" (HandleError),
// or "handshake" (its handshake failed or timed out: the error says why). The
// metadata correlates: the server's name, span ids (a connection's parent is its
// acceptor, an acceptor's parent its listener), acceptor index, connection id, and
// addresses.
//
// Sinks attach and detach at any time, from any thread, and run synchronously on the
// thread that emits (often a worker loop), on several threads at once: keep them short
// and thread-safe. A sink says which event types it wants (all by default); an emission
// point whose type no sink wants costs one relaxed atomic load, and builds nothing.
// Emissions on different threads share no lock.
//
//   uint64_t id = Telemetry::Attach([](const TelemetryEvent& e) { ... });
//   Telemetry::Detach(id);   // the sink is not running and never runs again
#ifndef ISLET_SERVER_TELEMETRY_H_
#define ISLET_SERVER_TELEMETRY_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/overload_state.h"
#include "transport/socket_types.h"

namespace islet {

enum class TelemetryEventType : uint8_t {
  kListenerStart,
  kListenerStop,
  kAcceptorStart,
  kAcceptorStop,
  kAcceptorSpawnError,    // the connection budget stayed full: the connection was closed
  kAcceptorEconnaborted,  // a connection died in the backlog
  kAcceptorAcceptError,   // any other accept failure
  kAcceptorEmfile,        // out of descriptors: the acceptor backs off
  kConnectionStart,
  kConnectionStop,
  kConnectionReady,       // handshake done, the handler is about to be called
  kConnectionAsyncRecv,   // data arrived and goes to HandleData
  kConnectionRecv,        // a handler's blocking Recv returned data
  kConnectionRecvError,
  kConnectionSend,
  kConnectionSendError,
  kConnectionSendfile,
  kConnectionSendfileError,
  kConnectionSocketShutdown,
  kServerOverload,        // the overload state changed (normal, scaling, saturated)
};

// "connection.stop", "acceptor.emfile", ...
absl::string_view TelemetryEventName(TelemetryEventType type);

struct TelemetryEvent {
  TelemetryEventType type;

  // Measurements.
  absl::Duration monotonic_time;     // when it happened (CLOCK_MONOTONIC)
  absl::Duration duration;           // stop events: how long the span lived;
                                     // connection.ready: how long the handshake took
  uint64_t bytes = 0;                // recv, send, sendfile, async_recv
  uint64_t connections = 0;          // acceptor.stop: connections it accepted
  const SocketStats* stats = nullptr;  // connection.stop: the socket's counters

  // Metadata.
  absl::string_view server;          // ServerOptions::name
  uint64_t span_id = 0;
  uint64_t parent_span_id = 0;
  int acceptor = -1;                 // acceptor index, where one is involved
  uint64_t connection_id = 0;        // 0 outside connection events
  int worker = -1;                   // connection events: the worker's index
  const SocketInfo* local = nullptr;   // listener events: the bound address
  const SocketInfo* remote = nullptr;  // connection events: the peer
  const absl::Status* error = nullptr;  // error events, and a stop that ended in error
  absl::string_view detail;          // sendfile: the path; socket_shutdown: the way;
                                     // connection.stop: how it ended (above)
  const OverloadChange* overload = nullptr;  // server.overload: the new state, the old
};

using TelemetrySink = std::function<void(const TelemetryEvent&)>;

// A set of event types, one bit per TelemetryEventType.
using TelemetryMask = uint32_t;
inline constexpr TelemetryMask kAllTelemetryEvents = ~TelemetryMask{0};
constexpr TelemetryMask TelemetryBit(TelemetryEventType type) {
  return TelemetryMask{1} << static_cast<int>(type);
}

class Telemetry {
 public:
  // Returns an id for Detach and SetInterest. The sink receives the types in `interest`.
  static uint64_t Attach(TelemetrySink sink, TelemetryMask interest = kAllTelemetryEvents);
  // Stops new calls to the sink, waits for the calls already inside it on other threads
  // to return, and destroys it: what it refers to may be destroyed next.
  // Called from inside a sink (this one or another, on this thread), Detach cannot wait
  // (two threads inside one sink, each detaching it, would wait for each other): it
  // returns at once, new calls are stopped, calls on other threads may still be running,
  // and the sink is destroyed later, on whichever thread lets go of it last. A sink that
  // detaches itself must therefore hold its state by shared ownership, not free it.
  static void Detach(uint64_t id);
  // Changes which types an attached sink receives (a logger whose level changed).
  static void SetInterest(uint64_t id, TelemetryMask interest);

  // Whether any sink wants `type`. Check it before building an event:
  // `if (Telemetry::Enabled(type)) Telemetry::Emit(MakeEvent());`
  static bool Enabled(TelemetryEventType type) {
    return (wanted_.load(std::memory_order_relaxed) & TelemetryBit(type)) != 0;
  }
  // Delivers to every attached sink that wants the event's type.
  static void Emit(const TelemetryEvent& event);

  // Fresh span ids, unique in the process.
  static uint64_t NewSpanId();

 private:
  static std::atomic<TelemetryMask> wanted_;
};

}  // namespace islet

#endif  // ISLET_SERVER_TELEMETRY_H_
