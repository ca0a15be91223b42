// The bytes http_hello answers an HTTP/1.1 request with: kHelloResponse keeps the
// connection, kHelloCloseResponse answers "Connection: close". On their own, with no
// dependencies, so that the floor servers in tools/bench (epoll_http, uring_http) send
// exactly the same responses without linking Islet.
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

inline constexpr char kHelloCloseResponse[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: islet\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello world!";

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_HTTP_HELLO_HELLO_RESPONSE_H_
