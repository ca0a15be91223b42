// Echo: every byte a client sends comes back (RFC 862 over a stream).
#ifndef ISLET_EXAMPLES_ECHO_ECHO_H_
#define ISLET_EXAMPLES_ECHO_ECHO_H_

#include "server/connection.h"
#include "server/handler.h"

namespace islet::examples {

class EchoHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    absl::Status sent = conn.Send(data);
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_ECHO_ECHO_H_
