// The server harness: starts an Islet server from flags named after Thousand Island's
// options, serving one of the example handlers.
//
//   harness                                    # echo on 127.0.0.1:4000
//   harness --handler=http_hello --port=8080 --num_workers=2 --log=debug
//   harness --transport=tls --certfile=cert.pem --keyfile=key.pem --alpn=h2,http/1.1
//
// Contract (scripts drive it):
// - When listening it prints one line to stdout containing HOST:PORT (or the unix path).
// - With --metrics_port, a second line names the metrics endpoint's HOST:PORT.
// - Once listening, at --log=info or debug, a stderr line names the event loop
//   ("harness: event loop: epoll").
// - SIGTERM or SIGINT: /readyz fails, and after --drain_delay the listener closes,
//   connections drain within --shutdown_timeout (a stderr line each second with those
//   still open, then a summary), then exit 0. A second signal exits 1 at once.
// - Sockets passed by systemd (LISTEN_FDS, LISTEN_PID) are served instead of listening,
//   when they are what the flags ask for (otherwise one line and exit 2).
// - --takeover=PATH: the listening sockets come from the harness serving
//   --handoff_socket=PATH, which then stops accepting, drains and exits 0; a line on
//   stderr says so in each. A failed takeover: one line and exit 2, the old one serves on.
// - SIGHUP reloads the TLS certificate and key files (a stderr line either way; a file
//   that fails to load leaves the previous certificate serving).
// - A bad flag, a bad value, a missing certificate, a port in use: exactly one line on
//   stderr, and exit 2.
// - It raises its soft RLIMIT_NOFILE to the hard limit.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/event_loop_kind.h"
#include "server/inherited_listeners.h"
#include "server/listener_handoff.h"
#include "server/stop_signal.h"
#include "tools/harness/drain_report.h"
#include "tools/harness/harness_server.h"

ABSL_FLAG(std::string, handler, "echo", "echo, daytime, http_hello, messenger or proxy");
ABSL_FLAG(std::string, upstream, "", "proxy: where to relay each connection, HOST:PORT");
ABSL_FLAG(bool, upstream_tls, false, "proxy: reach the upstream over TLS, verifying it");
ABSL_FLAG(std::string, upstream_cacertfile, "",
          "proxy with --upstream_tls: CA bundle for the upstream (PEM); empty: the system store");
ABSL_FLAG(std::string, upstream_server_name, "",
          "proxy with --upstream_tls: the name the upstream's certificate must carry (also "
          "SNI); empty: the upstream's IP address");
ABSL_FLAG(std::string, ip, "127.0.0.1", "the IP address to listen on");
ABSL_FLAG(int32_t, port, 4000, "the port to listen on; 0 picks a free one");
ABSL_FLAG(std::string, unix_socket, "", "listen on this unix socket path instead");
ABSL_FLAG(std::string, transport, "tcp", "tcp or tls");
ABSL_FLAG(std::string, certfile, "", "TLS: the certificate chain (PEM)");
ABSL_FLAG(std::string, keyfile, "", "TLS: the private key (PEM)");
ABSL_FLAG(std::string, cacertfile, "", "TLS: CA bundle for client certificates (PEM)");
ABSL_FLAG(std::string, verify_peer, "none", "TLS client certificates: none, optional, required");
ABSL_FLAG(std::string, alpn, "", "TLS: ALPN protocols in server preference order, comma-separated");
ABSL_FLAG(std::string, proxy_protocol, "off",
          "PROXY protocol header before each connection (behind a balancer): off, v1, v2, any");
ABSL_FLAG(std::string, proxy_trusted, "",
          "PROXY protocol: the balancers' networks, CIDR, comma-separated (127.0.0.1/32,fd00::/8)");
ABSL_FLAG(bool, proxy_optional, false,
          "PROXY protocol: a trusted peer may omit the header (default: required)");
ABSL_FLAG(int32_t, num_acceptors, 1, "acceptor threads");
ABSL_FLAG(int32_t, num_listen_sockets, 1, "listening sockets (SO_REUSEPORT)");
ABSL_FLAG(int32_t, num_workers, 0, "event-loop threads; 0 = one per core");
ABSL_FLAG(std::string, event_loop, "default",
          "what the workers' loops wait on: epoll, io_uring, or default (the "
          "ISLET_EVENT_LOOP environment variable, else epoll)");
ABSL_FLAG(int32_t, num_connections, 16384, "connections per acceptor; -1 = unlimited");
ABSL_FLAG(absl::Duration, max_connections_retry_wait, absl::Seconds(1),
          "wait for a free connection slot this long per retry");
ABSL_FLAG(int32_t, max_connections_retry_count, 5, "retries before refusing a connection");
ABSL_FLAG(absl::Duration, read_timeout, absl::Seconds(60), "close connections idle this long");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(5), "TLS handshake deadline");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(15), "drain time on SIGTERM");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::ZeroDuration(),
          "on SIGTERM or a takeover, keep answering open connections this long (a keep-alive "
          "request already on its way gets its answer, marked the last); 0 = end them at once");
ABSL_FLAG(int32_t, max_connections, -1, "connections over the whole server; -1 = unlimited");
ABSL_FLAG(int32_t, max_connections_per_peer, 0,
          "connections from one peer address; 0 = no limit");
ABSL_FLAG(int32_t, descriptor_reserve, 32,
          "descriptors under RLIMIT_NOFILE that accepting leaves free; 0 = none");
ABSL_FLAG(int64_t, max_pending_messages, 1024, "messages posted to one connection, waiting");
ABSL_FLAG(int64_t, output_budget, 0,
          "bytes of output queued over all connections; 0 = a quarter of memory");
ABSL_FLAG(absl::Duration, linger_timeout, absl::Seconds(2),
          "lingering close: drain a closing peer's input this long at most; 0 = off");
ABSL_FLAG(double, overload_scale_from, 0.75,
          "pressure (use over a cap) from which idle timeouts shrink; in (0, 1]");
ABSL_FLAG(absl::Duration, overload_timeout_floor, absl::Seconds(1),
          "what shrinking timeouts reach at a cap; inf = no shrinking");
ABSL_FLAG(absl::Duration, head_timeout, absl::Seconds(10),
          "http_hello: a request head must be complete within this from its first byte");
ABSL_FLAG(std::string, log, "info", "log level: debug, info, warning, error, off");
ABSL_FLAG(std::string, log_format, "text",
          "text, or json: one object per line (server/telemetry_logger.h names the fields)");
ABSL_FLAG(int32_t, metrics_port, -1,
          "serve /metrics, /healthz and /readyz on this port; -1 = off, 0 = a free one");
ABSL_FLAG(std::string, metrics_ip, "127.0.0.1", "the IP address of the metrics endpoint");
ABSL_FLAG(absl::Duration, drain_delay, absl::ZeroDuration(),
          "on SIGTERM, /readyz fails this long before the listener closes");
ABSL_FLAG(std::string, handoff_socket, "",
          "listen on this unix socket for a successor started with --takeover; hand it the "
          "listening sockets, then drain and exit 0");
ABSL_FLAG(std::string, takeover, "",
          "take the listening sockets over from the harness whose --handoff_socket this is, "
          "instead of listening");
ABSL_FLAG(absl::Duration, handoff_timeout, absl::Seconds(10),
          "bound on each step of a hand-off (either side)");

namespace {

constexpr int kUsageError = 2;

// `message` made safe for a single line: it may quote a flag's value, and a value can
// hold a newline or other control characters, which are escaped ("\n", "\x01").
std::string OneLine(absl::string_view message) {
  std::string line;
  line.reserve(message.size());
  for (char c : message) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      line += c;
    } else if (c == '\n') {
      line += "\\n";
    } else if (c == '\r') {
      line += "\\r";
    } else if (c == '\t') {
      line += "\\t";
    } else {
      absl::StrAppend(&line, "\\x", absl::Hex(u, absl::kZeroPad2));
    }
  }
  return line;
}

[[noreturn]] void Fail(absl::string_view message) {
  std::fprintf(stderr, "harness: %s\n", OneLine(message).c_str());
  std::fflush(stderr);
  std::_Exit(kUsageError);
}

// --help lists every flag by concern, each with its default.
struct FlagGroup {
  const char* title;
  std::vector<const char*> flags;
};
const std::vector<FlagGroup> kFlagGroups = {
    {"Listener", {"handler", "ip", "port", "unix_socket", "num_acceptors",
                  "num_listen_sockets", "num_workers", "event_loop"}},
    {"Proxy (--handler=proxy)",
     {"upstream", "upstream_tls", "upstream_cacertfile", "upstream_server_name"}},
    {"Transport and TLS", {"transport", "certfile", "keyfile", "cacertfile", "verify_peer",
                           "alpn"}},
    {"Behind a balancer (PROXY protocol)", {"proxy_protocol", "proxy_trusted", "proxy_optional"}},
    {"Limits and timeouts",
     {"num_connections", "max_connections", "max_connections_per_peer", "descriptor_reserve",
      "max_connections_retry_wait", "max_connections_retry_count", "max_pending_messages",
      "read_timeout", "handshake_timeout", "head_timeout", "linger_timeout",
      "shutdown_timeout", "shutdown_grace", "drain_delay"}},
    {"Overload", {"output_budget", "overload_scale_from", "overload_timeout_floor"}},
    {"Observability", {"log", "log_format", "metrics_port", "metrics_ip"}},
    {"Restarts (docs/DEPLOYMENT.md)", {"handoff_socket", "takeover", "handoff_timeout"}},
};

// Abseil's own parser exits 1 on errors and prints several lines; the harness promises
// exit 2 and one line, so it parses here and lets each flag parse its own value.
void ParseFlags(int argc, char** argv) {
  absl::SetProgramUsageMessage("Starts an Islet server. Flags are Thousand Island's options.");
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      std::printf("%s\n", absl::ProgramUsageMessage().data());
      for (const FlagGroup& group : kFlagGroups) {
        std::printf("\n%s:\n", group.title);
        for (const char* name : group.flags) {
          absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
          std::printf("  --%s (default %s)  %s\n", name, flag->DefaultValue().c_str(),
                      flag->Help().c_str());
        }
      }
      std::exit(0);
    }
    if (!absl::StartsWith(arg, "--")) Fail(absl::StrCat("unexpected argument: ", arg));
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || flag->Filename() != __FILE__) {
      Fail(absl::StrCat("unknown flag: --", name));
    }
    if (!has_value && flag->IsOfType<bool>()) {
      value = "true";  // --upstream_tls alone
      has_value = true;
    }
    if (!has_value) {
      if (i + 1 >= argc) Fail(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      Fail(absl::StrCat("bad value for --", name, ": \"", value, "\": ", error));
    }
  }
}

islet::harness::HarnessConfig ConfigFromFlags() {
  islet::harness::HarnessConfig c;
  c.handler = absl::GetFlag(FLAGS_handler);
  c.upstream = absl::GetFlag(FLAGS_upstream);
  c.upstream_tls = absl::GetFlag(FLAGS_upstream_tls);
  c.upstream_cacertfile = absl::GetFlag(FLAGS_upstream_cacertfile);
  c.upstream_server_name = absl::GetFlag(FLAGS_upstream_server_name);
  c.ip = absl::GetFlag(FLAGS_ip);
  const int32_t port = absl::GetFlag(FLAGS_port);
  if (port < 0 || port > 65535) Fail(absl::StrCat("bad value for --port: ", port));
  c.port = static_cast<uint16_t>(port);
  c.unix_socket = absl::GetFlag(FLAGS_unix_socket);
  c.transport = absl::GetFlag(FLAGS_transport);
  c.certfile = absl::GetFlag(FLAGS_certfile);
  c.keyfile = absl::GetFlag(FLAGS_keyfile);
  c.cacertfile = absl::GetFlag(FLAGS_cacertfile);
  c.verify_peer = absl::GetFlag(FLAGS_verify_peer);
  // An empty name ("h2,,http/1.1", ",") is a bad value, not one to skip: skipping made
  // --alpn=, mean no ALPN at all, silently, and hid it from the --transport=tcp check.
  if (const std::string alpn = absl::GetFlag(FLAGS_alpn); !alpn.empty()) {
    for (absl::string_view p : absl::StrSplit(alpn, ',')) {
      if (p.empty()) {
        Fail(absl::StrCat("bad value for --alpn: \"", alpn, "\": an empty protocol name"));
      }
      c.alpn.emplace_back(p);
    }
  }
  c.proxy_protocol = absl::GetFlag(FLAGS_proxy_protocol);
  if (const std::string trusted = absl::GetFlag(FLAGS_proxy_trusted); !trusted.empty()) {
    c.proxy_trusted = absl::StrSplit(trusted, ',');
  }
  c.proxy_optional = absl::GetFlag(FLAGS_proxy_optional);
  c.num_acceptors = absl::GetFlag(FLAGS_num_acceptors);
  c.num_listen_sockets = absl::GetFlag(FLAGS_num_listen_sockets);
  c.num_workers = absl::GetFlag(FLAGS_num_workers);
  const std::string event_loop = absl::GetFlag(FLAGS_event_loop);
  std::optional<islet::EventLoopKind> kind = islet::ParseEventLoopKind(event_loop);
  if (!kind.has_value()) {
    Fail(absl::StrCat("bad value for --event_loop: \"", event_loop,
                      "\": not one of epoll, io_uring, default"));
  }
  c.event_loop = *kind;
  c.num_connections = absl::GetFlag(FLAGS_num_connections);
  c.max_connections_retry_wait = absl::GetFlag(FLAGS_max_connections_retry_wait);
  c.max_connections_retry_count = absl::GetFlag(FLAGS_max_connections_retry_count);
  c.read_timeout = absl::GetFlag(FLAGS_read_timeout);
  c.handshake_timeout = absl::GetFlag(FLAGS_handshake_timeout);
  c.shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  c.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  c.max_connections = absl::GetFlag(FLAGS_max_connections);
  c.descriptor_reserve = absl::GetFlag(FLAGS_descriptor_reserve);
  c.max_connections_per_peer = absl::GetFlag(FLAGS_max_connections_per_peer);
  c.max_pending_messages = absl::GetFlag(FLAGS_max_pending_messages);
  c.output_budget = absl::GetFlag(FLAGS_output_budget);
  if (c.output_budget < 0) {
    Fail(absl::StrCat("bad value for --output_budget: ", c.output_budget,
                      " (0: a quarter of memory)"));
  }
  c.linger_timeout = absl::GetFlag(FLAGS_linger_timeout);
  c.overload_scale_from = absl::GetFlag(FLAGS_overload_scale_from);
  c.overload_timeout_floor = absl::GetFlag(FLAGS_overload_timeout_floor);
  c.head_timeout = absl::GetFlag(FLAGS_head_timeout);
  if (c.head_timeout <= absl::ZeroDuration()) {
    Fail(absl::StrCat("bad value for --head_timeout: ", absl::FormatDuration(c.head_timeout),
                      " (it must be positive)"));
  }
  c.log = absl::GetFlag(FLAGS_log);
  c.log_format = absl::GetFlag(FLAGS_log_format);
  c.metrics_ip = absl::GetFlag(FLAGS_metrics_ip);
  c.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (c.metrics_port < -1 || c.metrics_port > 65535) {
    Fail(absl::StrCat("bad value for --metrics_port: ", c.metrics_port, " (-1: off)"));
  }
  if (absl::GetFlag(FLAGS_drain_delay) < absl::ZeroDuration()) {
    Fail("bad value for --drain_delay: it is negative");
  }
  return c;
}

void Log(const std::string& line) {
  std::fprintf(stderr, "harness: %s\n", OneLine(line).c_str());
  std::fflush(stderr);
}

// Where the listening sockets come from when not from listening: systemd's, or a
// predecessor's (returned, to be confirmed once the server runs). Runs before any
// thread starts (the environment is read and changed).
std::unique_ptr<islet::Takeover> TakeListeningSockets(islet::harness::HarnessConfig& config) {
  absl::StatusOr<std::vector<islet::InheritedListener>> inherited = islet::TakeInheritedListeners();
  if (!inherited.ok()) Fail(inherited.status().message());
  const std::string takeover_path = absl::GetFlag(FLAGS_takeover);
  if (!inherited->empty()) {
    if (!takeover_path.empty()) {
      Fail("--takeover: the process was also given sockets by systemd (LISTEN_FDS); use one");
    }
    for (islet::InheritedListener& l : *inherited) config.listen_fds.push_back(l.fd.release());
    return nullptr;
  }
  if (takeover_path.empty()) return nullptr;
  absl::StatusOr<std::unique_ptr<islet::Takeover>> takeover =
      islet::Takeover::Receive(takeover_path, absl::GetFlag(FLAGS_handoff_timeout));
  if (!takeover.ok()) Fail(absl::StrCat("--takeover: ", takeover.status().message()));
  config.listen_fds = (*takeover)->fds();
  return *std::move(takeover);
}

std::unique_ptr<islet::HandoffPoint> ListenForSuccessor(bool fail_hard) {
  const std::string path = absl::GetFlag(FLAGS_handoff_socket);
  if (path.empty()) return nullptr;
  absl::StatusOr<std::unique_ptr<islet::HandoffPoint>> point = islet::HandoffPoint::Listen(path);
  if (point.ok()) return *std::move(point);
  if (fail_hard) Fail(absl::StrCat("--handoff_socket: ", point.status().message()));
  Log(absl::StrCat("--handoff_socket: ", point.status().message(),
                   "; serving without a hand-off socket"));
  return nullptr;
}

void ReloadCredentials(islet::harness::HarnessServer& harness, const std::string& certfile) {
  absl::Status reloaded = harness.ReloadCredentials();
  if (absl::IsFailedPrecondition(reloaded)) {
    Log(absl::StrCat("SIGHUP: nothing to reload: ", reloaded.message()));
  } else if (reloaded.ok()) {
    Log(absl::StrCat("SIGHUP: reloaded the TLS credentials from ", certfile));
  } else {
    Log(absl::StrCat("error: SIGHUP: reload failed, the previous credentials still serve: ",
                     reloaded.message()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  ParseFlags(argc, argv);
  islet::harness::HarnessConfig config = ConfigFromFlags();
  if (absl::GetFlag(FLAGS_handoff_timeout) <= absl::ZeroDuration()) {
    Fail("bad value for --handoff_timeout: it must be positive");
  }
  std::unique_ptr<islet::Takeover> takeover = TakeListeningSockets(config);

  // Descriptors are connections: take all the hard limit allows, as Go's runtime and
  // nginx's worker_rlimit_nofile do. Many systems set the soft limit at 1024, which
  // would cap the server there (and put it under overload pressure well before).
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);  // a failure leaves the soft limit as it was
  }

  // Signals are taken by sigwait in this thread alone: blocked before any thread starts,
  // so every thread inherits the mask. SIGPIPE is ignored: a reader of our stdout that
  // goes away (`harness | head -1` with the messenger printing chat lines) must not kill
  // the server.
  islet::BlockStopSignals();
  islet::BlockSignals({SIGHUP});

  // A first start claims its hand-off socket before listening, so a bad path fails it.
  std::unique_ptr<islet::HandoffPoint> point =
      takeover == nullptr ? ListenForSuccessor(/*fail_hard=*/true) : nullptr;
  absl::StatusOr<std::unique_ptr<islet::harness::HarnessServer>> harness =
      islet::harness::HarnessServer::Start(config);
  if (!harness.ok()) {
    if (takeover != nullptr) takeover->Refuse(harness.status().message());
    Fail(harness.status().message());
  }
  if (takeover != nullptr) {
    absl::Status confirmed = takeover->Confirm(absl::GetFlag(FLAGS_handoff_timeout));
    if (confirmed.ok()) {
      Log(absl::StrCat("took the listening sockets over from ", absl::GetFlag(FLAGS_takeover)));
    } else {
      Log(absl::StrCat("warning: takeover: the old process did not confirm (",
                       confirmed.message(), "); both accept until it exits"));
    }
    takeover.reset();
    point = ListenForSuccessor(/*fail_hard=*/false);  // the old one's path is free now
  }
  std::printf("islet harness: %s over %s listening on %s\n", config.handler.c_str(),
              config.transport.c_str(), (*harness)->listening().c_str());
  if (!(*harness)->metrics_listening().empty()) {
    std::printf("islet harness: metrics on %s (/metrics, /healthz, /readyz)\n",
                (*harness)->metrics_listening().c_str());
  }
  std::fflush(stdout);
  if (config.log == "debug" || config.log == "info") {
    Log(absl::StrCat("event loop: ", (*harness)->server().Info().event_loop));
  }
  const absl::Duration drain_delay = absl::GetFlag(FLAGS_drain_delay);

  // Serves until a stop signal or a hand-off; SIGHUP reloads in between.
  int signal_number = 0;
  for (;;) {
    const islet::SignalWait woke =
        islet::WaitForSignal({SIGTERM, SIGINT, SIGHUP}, point != nullptr ? point->fd() : -1);
    if (woke.signal == SIGHUP) {
      ReloadCredentials(**harness, config.certfile);
      continue;
    }
    if (woke.fd_readable) {
      absl::Status handed =
          point->ServeOne((*harness)->server(), absl::GetFlag(FLAGS_handoff_timeout));
      if (handed.ok()) break;
      Log(absl::StrCat("hand-off failed, still serving: ", handed.message()));
      continue;
    }
    signal_number = woke.signal;
    break;
  }
  // Readiness fails first, so that whoever reads the next line finds it failing.
  (*harness)->MarkDraining();
  if (signal_number == 0) {
    Log(absl::StrCat("handed the listening sockets to a successor: draining (up to ",
                     absl::FormatDuration(config.shutdown_timeout),
                     "); a signal stops at once"));
  } else {
    std::fprintf(stderr, "harness: %s: draining (up to %s); a second signal stops at once\n",
                 strsignal(signal_number), absl::FormatDuration(config.shutdown_timeout).c_str());
    std::fflush(stderr);
  }
  std::thread second([&] {
    const int again = islet::WaitForStopSignal();
    std::fprintf(stderr, "harness: %s again: stopping now\n", strsignal(again));
    std::fflush(stderr);
    std::_Exit(1);
  });
  second.detach();
  // After a hand-off the listeners are the successor's already: nothing to delay.
  if (signal_number != 0 && drain_delay > absl::ZeroDuration()) absl::SleepFor(drain_delay);
  islet::harness::DrainReport report((*harness)->server(), "harness", config.shutdown_timeout,
                                     stderr);
  absl::Status stopped = (*harness)->Stop();
  report.Finish();
  if (!stopped.ok()) {
    std::fprintf(stderr, "harness: stop: %s\n", std::string(stopped.message()).c_str());
    std::_Exit(1);
  }
  std::fflush(stdout);
  std::_Exit(0);
}
