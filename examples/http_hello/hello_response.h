// The bytes http_hello answers a keep-alive HTTP/1.1 request with. On its own, with no
// dependencies, so that tools/bench/epoll_http (the syscall-only ceiling) sends exactly
// the same response without linking Islet.
#ifndef ISLET_EXAMPLES_HTTP_HELLO_HELLO_RESPONSE_H_
#define ISLET_EXAMPLES_HTTP_HELLO_HELLO_RESPONSE_H_

namespace islet::examples {

inline constexpr char kHelloResponse[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "\r\n"
    "Hello world!";

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_HTTP_HELLO_HELLO_RESPONSE_H_
