// The Transport interface: how Islet's server talks to sockets. The C++ counterpart of
// Thousand Island's Transport behaviour (ThousandIsland.Transport); TCP
// (transport/tcp_transport.h) and TLS (tls/) implement it, and so can a user's own
// transport. Every callback of the behaviour, under its Thousand Island 1.x name:
//
//   Thousand Island                   Islet
//   --------------------------------  ---------------------------------------------------
//   listen(port, opts)                Transport::Listen(port, ListenOptions)
//   accept(listener)                  Listener::Accept()       (blocks; Close() wakes it)
//   handshake(socket[, timeout])      Socket::Handshake(timeout) / Socket::HandshakeStep()
//   upgrade(socket, opts)             Transport::Upgrade(socket), then Socket::Handshake
//   controlling_process(socket, pid)  moving the std::unique_ptr<Socket> to its new owner;
//                                     the owner then uses it from one thread at a time
//   recv(socket, n, timeout)          Socket::Recv(n, timeout)  (ReadSome: non-blocking)
//   send(socket, iodata)              Socket::Send(data | buffers) (WriteSome: non-blocking)
//   sendfile(socket, path, off, len)  Socket::Sendfile(path, offset, length)
//   getopts(socket, names)            Socket::GetOptions(names)
//   setopts(socket, opts)             Socket::SetOptions(options)   (all or nothing)
//   shutdown(socket, way)             Socket::Shutdown(ShutdownWay)
//   close(socket | listener)          Socket::Close() / Listener::Close()  (idempotent)
//   sockname(socket | listener)       Socket::LocalInfo() / Listener::LocalInfo()
//   peername(socket)                  Socket::PeerInfo()
//   peercert(socket)                  Socket::PeerInfo()->peer_certificate (DER; none:
//                                     not secure, or no certificate verified)
//   secure?()                         Transport::Secure() / Socket::Secure()
//   getstat(socket)                   Socket::GetStat()
//   negotiated_protocol(socket)       Socket::NegotiatedProtocol() (NotFound: not negotiated)
//   connection_information(socket)    Socket::GetConnectionInformation()
//
// Before 1.0, sockname and peername were called local_info and peer_info, and the peer
// certificate was the ssl_cert field of their socket_info.
//
// Types: listener_socket = Listener, socket = Socket, socket_info = SocketInfo,
// socket_stats = SocketStats, way = ShutdownWay, socket_set/get_options =
// SocketOption / SocketOptionName. {:ok, v} | {:error, reason} is absl::StatusOr<v>,
// with the codes listed in transport/errors.h.
//
// Two layers live on Socket. The blocking calls of Thousand Island (Recv, Send,
// Sendfile, Handshake) are written once, here, on top of a few non-blocking primitives
// (ReadSome, WriteSome, SendfileSome, HandshakeStep) that each transport implements and
// that an event loop drives directly. A transport is therefore: those primitives, the
// option hooks, and the info calls.
#ifndef ISLET_TRANSPORT_TRANSPORT_H_
#define ISLET_TRANSPORT_TRANSPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "transport/socket_options.h"
#include "transport/socket_types.h"
#include "transport/unique_fd.h"

namespace islet {

// What a non-blocking call needs before it can make progress.
enum class IoInterest : uint8_t { kNone, kRead, kWrite };

// Input an event loop receives on a socket's behalf (io_uring's multishot receive into
// buffers the loop owns), for the socket to read in place of its descriptor
// (Socket::AttachInput). What it holds always comes before what the descriptor still
// has: the loop receives nothing while the socket's owner runs, so a socket may read
// its descriptor directly once the channel is empty.
class InputChannel {
 public:
  virtual ~InputChannel() = default;
  // The oldest bytes received and not read yet; empty when none.
  virtual absl::string_view Front() const = 0;
  // Marks the first `n` bytes of Front() read.
  virtual void Consume(size_t n) = 0;
  // Takes Front() whole without a copy: reads go on after it, and its bytes stay valid
  // until the next Take, ReleaseTaken, or the channel's end.
  virtual absl::string_view Take() = 0;
  virtual void ReleaseTaken() = 0;
  // Why receiving ended (OutOfRange at the peer's orderly close, or the error), to be
  // reported once Front() is empty; OK while it goes on.
  virtual absl::Status end() const = 0;
};

// Output an event loop sends on a socket's behalf (io_uring: one send per socket per
// loop turn, submitted with everything else), in place of the socket writing its
// descriptor (Socket::AttachOutput). Staged bytes are the counterpart of bytes in the
// kernel's send buffer: accepted, in order, on their way.
class OutputChannel {
 public:
  virtual ~OutputChannel() = default;
  // Copies what fits of `buffers` (the channel holds a bounded amount): a count > 0,
  // Unavailable when full, or the error an earlier send failed with.
  virtual absl::StatusOr<size_t> Stage(absl::Span<const absl::string_view> buffers) = 0;
  // Bytes staged and not yet taken by the kernel.
  virtual size_t unsent() const = 0;
  // Blocks until the kernel has taken some of the unsent bytes (at once when there are
  // none), or `deadline` passes (DeadlineExceeded); the send's error if it failed.
  // On the loop's thread: it runs no callback meanwhile.
  virtual absl::Status WaitForSent(absl::Duration deadline) = 0;
  // The descriptor is about to close: hands the unsent bytes to the kernel now, without
  // waiting, as bytes in a send buffer go out after a close.
  virtual void SendBeforeClose() = 0;
};

// A connected socket. Not thread-safe: one owner thread at a time (see the table).
class Socket {
 public:
  virtual ~Socket() = default;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // ---- Thousand Island's calls (blocking, bounded by their timeouts) ----

  // Completes the transport's handshake (TLS); plain transports are done at once.
  // DeadlineExceeded when `timeout` passes first.
  absl::Status Handshake(absl::Duration timeout);

  // n == 0: returns what is available, waiting up to `timeout` for at least one byte.
  // n > 0: returns exactly n bytes, or DeadlineExceeded; bytes read before the
  // deadline are kept for the next call, never lost. A zero timeout never waits;
  // absl::InfiniteDuration() waits forever. OutOfRange when the peer closed in order
  // and nothing (or fewer than n bytes) is left.
  absl::StatusOr<std::string> Recv(size_t n, absl::Duration timeout);

  // Sends every byte, or fails. A list of buffers goes out as one gather write, not a
  // concatenated copy. Waits at most the send_timeout option (default: forever) for a
  // peer that stops draining. Never raises SIGPIPE.
  absl::Status Send(absl::string_view data);
  absl::Status Send(absl::Span<const absl::string_view> buffers);

  // Sends `length` bytes of the file at `path` from `offset` (0 = to the end of the
  // file) and returns how many were sent. NotFound for a missing file,
  // InvalidArgument for an offset past the end.
  absl::StatusOr<uint64_t> Sendfile(const std::string& path, uint64_t offset,
                                    uint64_t length);

  // All or nothing: every option is validated first, and if applying one fails the
  // ones already applied are restored. InvalidArgument names the refused option.
  absl::Status SetOptions(absl::Span<const SocketOption> options);
  absl::StatusOr<std::vector<SocketOption>> GetOptions(
      absl::Span<const SocketOptionName> names);

  virtual absl::Status Shutdown(ShutdownWay way) = 0;
  // Releases the connection; idempotent. Every later call fails with FailedPrecondition.
  virtual void Close() = 0;
  virtual bool IsClosed() const = 0;

  virtual absl::StatusOr<SocketInfo> LocalInfo() const = 0;
  virtual absl::StatusOr<SocketInfo> PeerInfo() const = 0;
  virtual absl::StatusOr<SocketStats> GetStat() const = 0;
  // The ALPN protocol chosen in the handshake; NotFound("protocol not negotiated")
  // when the transport has none or none was agreed.
  virtual absl::StatusOr<std::string> NegotiatedProtocol() const;
  virtual bool Secure() const { return false; }
  // Protocol version, cipher, ALPN, SNI, resumption; NotFound for plain transports.
  virtual absl::StatusOr<ConnectionInformation> GetConnectionInformation() const;
  // The PROXY protocol header the connection began with, once the handshake has read it
  // (ProxyProtocolTransport, transport/proxy_protocol.h); null for every other socket.
  // A pointer, not a copy: the server asks every connection after its handshake, and
  // the answer for a socket without one must cost nothing. Valid while the socket is.
  virtual const ProxyHeader* proxy_header() const { return nullptr; }

  // ---- Non-blocking primitives, for event loops and for the calls above ----

  // The descriptor an event loop polls for this socket.
  virtual int fd() const = 0;

  // Advances the handshake without blocking: kNone when it is complete, otherwise the
  // readiness to wait for before calling again. An error ends the handshake.
  virtual absl::StatusOr<IoInterest> HandshakeStep() { return IoInterest::kNone; }

  // Shutdown without blocking: kNone when it is done, kWrite when the transport must
  // first send something it has no room for now (a TLS close_notify); call again once
  // fd() is writable. The default, for transports whose shutdown never waits, is
  // Shutdown(way).
  virtual absl::StatusOr<IoInterest> ShutdownStep(ShutdownWay way);

  // Reads up to buf.size() bytes: a count > 0, Unavailable when nothing is ready,
  // OutOfRange at the peer's orderly close. Bytes kept by an earlier Recv come first.
  absl::StatusOr<size_t> ReadSome(absl::Span<char> buf);

  // True when ReadSome may return data although fd() may not poll readable (bytes
  // kept by Recv, plaintext a secure transport already decrypted, or ciphertext it read
  // ahead). A true answer may still be followed by one ReadSome that returns
  // Unavailable (read-ahead holding only part of a record).
  bool HasBufferedInput() const {
    return !kept_input_.empty() || TransportHasBufferedInput();
  }

  // Reads from `input` from now on, before the descriptor (null: the descriptor only
  // again). False for a transport that reads its descriptor some other way (the loop
  // then goes on polling it). Wrapping transports hand it to the socket they wrap.
  virtual bool AttachInput(InputChannel* input) { return false; }
  // The same for output: WriteSome stages into `output`. A transport that accepts it
  // reports staged bytes in HasPendingOutput and waits for them in WaitWritable, and its
  // shutdown of the write side waits for them too.
  virtual bool AttachOutput(OutputChannel* output) { return false; }
  // Bytes WriteSome accepted that have not reached the kernel yet (an attached output's).
  virtual bool HasPendingOutput() const { return false; }
  // Waits until WriteSome may take more, or `deadline` (DeadlineExceeded naming `op`):
  // the descriptor's writability, or an attached output's progress.
  virtual absl::Status WaitWritable(absl::Duration deadline, absl::string_view op);
  // kWrite: WaitWritable. kRead: input to read (buffered, or the descriptor readable),
  // once what this side has sent is out of its hands (HasPendingOutput): a peer may
  // wait for it before it answers.
  absl::Status WaitReady(IoInterest interest, absl::Duration deadline, absl::string_view op);
  // Zero-copy reading of an attached input: the oldest received bytes, taken whole (no
  // later read returns them) and valid as InputChannel::Take says; empty when there are
  // none, or when this socket must transform them first (TLS) or holds others before
  // them. ReadSome reads in every case.
  absl::string_view TakeInput() {
    return kept_input_.empty() ? TakeTransportInput() : absl::string_view();
  }

  // Writes what the transport accepts now from the buffers, in order: a count > 0,
  // or Unavailable when nothing could be written.
  virtual absl::StatusOr<size_t> WriteSome(absl::Span<const absl::string_view> buffers) = 0;

  // Sends up to `length` bytes of the open file `file_fd` from `offset`: a count > 0,
  // or Unavailable. The default reads a bounded chunk and passes it to WriteSome.
  virtual absl::StatusOr<size_t> SendfileSome(int file_fd, uint64_t offset, size_t length);

 protected:
  Socket() = default;

  // ReadSome after the kept bytes: the transport's own read.
  virtual absl::StatusOr<size_t> ReadSomeFromTransport(absl::Span<char> buf) = 0;
  // Input the transport holds that polling fd() would not reveal (TLS plaintext or
  // read-ahead ciphertext).
  virtual bool TransportHasBufferedInput() const { return false; }
  // TakeInput after the kept bytes.
  virtual absl::string_view TakeTransportInput() { return {}; }
  // Option hooks. Called only with options that passed ValidateSocketOption; send_timeout
  // is handled here and never reaches them.
  virtual absl::Status ApplyOption(const SocketOption& option) = 0;
  virtual absl::StatusOr<SocketOption> ReadOption(SocketOptionName name) const = 0;

  absl::Duration send_timeout() const { return send_timeout_; }
  // Waits (WaitWritable) until nothing WriteSome accepted is left to reach the kernel.
  absl::Status SendPendingOutput(absl::Duration deadline, absl::string_view op);

 private:
  absl::Status WriteAll(absl::Span<const absl::string_view> buffers, absl::string_view op);

  std::string kept_input_;  // read by a Recv that then timed out; delivered first
  absl::Duration send_timeout_ = absl::InfiniteDuration();
};

// Options for Transport::Listen.
struct ListenOptions {
  // The IP literal to bind ("127.0.0.1", "::1", "::"); empty binds every IPv4 address.
  std::string address;
  // When set, listen on this unix-domain socket path instead (the port is ignored).
  // A stale socket file nobody listens on is replaced; the file is removed on Close.
  std::string unix_path;
  int backlog = 1024;
  bool reuse_address = true;
  // SO_REUSEPORT: lets several listeners share one port (num_listen_sockets).
  bool reuse_port = false;
  // IPV6_V6ONLY for an IPv6 address; by default "::" also accepts IPv4.
  bool ipv6_only = false;
  // Set on the listening socket before listen(), so every accepted socket inherits
  // them at no cost per connection; the few the kernel does not pass on (SO_PRIORITY,
  // and every option of a unix socket) are set again on each accepted socket. Options
  // that do not apply to the socket's family (nodelay on a unix socket) are skipped.
  // TCP_NODELAY is on by default: servers write whole responses, and Nagle only
  // delays them.
  std::vector<SocketOption> socket_options = {SocketOption::NoDelay(true)};
};

// Accepts connections. Accept may be called from several threads at once.
class Listener {
 public:
  virtual ~Listener() = default;

  // Blocks until a connection arrives or until Close() is called from any thread, which
  // makes every waiting and later call return FailedPrecondition at once.
  // ResourceExhausted: out of descriptors (EMFILE/ENFILE; the message says which), so
  // back off and retry. Aborted: the connection died in the backlog (ECONNABORTED), so
  // carry on. Unknown: the new connection hit a network error (EPROTO, ENETDOWN, ...);
  // report it and carry on.
  virtual absl::StatusOr<std::unique_ptr<Socket>> Accept() = 0;

  // For a server that waits for readiness in its own event loop (the Islet server does
  // when fd() is not -1; otherwise it gives each acceptor a thread blocked in Accept):
  // a descriptor that polls readable when TryAccept may find a connection, valid until
  // the listener is destroyed; and the non-blocking accept, which returns Unavailable
  // when nothing is waiting and otherwise what Accept would.
  virtual int fd() const { return -1; }
  virtual absl::StatusOr<std::unique_ptr<Socket>> TryAccept();

  // For a loop that accepts from fd() itself (io_uring's multishot accept), where
  // CanAdoptAccepted() says so: the socket TryAccept would have made of `fd`, a
  // non-blocking, close-on-exec descriptor accepted from fd(), with the listener's
  // options applied. Fails only where TryAccept would have (a TLS context that cannot
  // make a session); `fd` is closed then. Unimplemented by default.
  virtual bool CanAdoptAccepted() const { return false; }
  virtual absl::StatusOr<std::unique_ptr<Socket>> AdoptAccepted(UniqueFd fd);

  // Stops listening at once (new connections are refused); thread-safe, idempotent.
  // A listener made by Transport::Adopt closes as Release does: its socket may be
  // shared with another process.
  virtual void Close() = 0;

  // Stops accepting here and gives up this process's descriptor, without shutting the
  // listening socket down and without removing its unix path: for a socket another
  // process holds too (a successor it was handed to, systemd's copy), which goes on
  // accepting from it, the connections waiting in its backlog included. Afterwards
  // Accept and TryAccept return FailedPrecondition, as after Close; a TryAccept already
  // inside accept(2) may still return one last connection, which is the caller's to
  // serve. Thread-safe, idempotent. The default is Close(), for listeners whose
  // socket cannot be shared.
  virtual void Release() { Close(); }

  // The bound address; for port 0 it holds the port the kernel chose.
  virtual absl::StatusOr<SocketInfo> LocalInfo() const = 0;
};

// A transport: Thousand Island's transport_module together with its transport_options.
class Transport {
 public:
  virtual ~Transport() = default;

  virtual absl::StatusOr<std::unique_ptr<Listener>> Listen(uint16_t port,
                                                           const ListenOptions& options) = 0;

  // A listener on a listening socket opened elsewhere: inherited from systemd
  // (server/inherited_listeners.h) or handed over by a predecessor
  // (server/listener_handoff.h). Checks that `fd` is a listening stream socket of an
  // IPv4, IPv6 or unix family (InvalidArgument naming what it is instead), makes it
  // non-blocking and close-on-exec, and applies options.socket_options (address,
  // unix_path, backlog, reuse_port and ipv6_only describe how a socket is opened and are
  // ignored). Its Close is Release: the socket may be shared, so it is never shut
  // down nor its unix path removed. Unimplemented by default.
  virtual absl::StatusOr<std::unique_ptr<Listener>> Adopt(UniqueFd fd,
                                                          const ListenOptions& options);

  virtual bool Secure() const = 0;
  // "tcp", "tls", ...: for telemetry and logs.
  virtual absl::string_view Name() const = 0;

  // Takes over a connected socket of another transport and continues on it (STARTTLS).
  // The returned socket still needs its Handshake. Unimplemented by default.
  virtual absl::StatusOr<std::unique_ptr<Socket>> Upgrade(std::unique_ptr<Socket> socket);

  // Whether an accepted socket's PeerInfo is the peer for good. False for a transport
  // whose handshake learns the true peer (the PROXY protocol): the server then applies
  // max_connections_per_peer after the handshake rather than at accept.
  virtual bool PeerKnownAtAccept() const { return true; }
};

// The client side of a secure protocol, for outbound connections: TLS's is TlsClient
// (tls/tls_client.h). One object serves many connections, from any thread.
class ClientSecurity {
 public:
  virtual ~ClientSecurity() = default;

  // Wraps `socket`, connected or with its connect under way (TcpSocket::StartConnect),
  // to `endpoint`, as the client side. The result's HandshakeStep first finishes the
  // connect, then runs the client handshake; a caller bounds both in time. Errors:
  // InvalidArgument for a null socket, FailedPrecondition for a closed one,
  // ResourceExhausted when out of memory.
  virtual absl::StatusOr<std::unique_ptr<Socket>> WrapClient(std::unique_ptr<Socket> socket,
                                                             const SocketInfo& endpoint) = 0;
};

}  // namespace islet

#endif  // ISLET_TRANSPORT_TRANSPORT_H_
