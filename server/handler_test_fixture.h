// The fixture of the handler tests (handler_results_test, handler_endings_test,
// handler_timeouts_test, handler_messages_test): the scripted handler of
// scripted_handler.h, one loopback server per test, with a shorthand for a read timeout
// and the telemetry of the connections alone. Header-only and testonly.
#ifndef ISLET_SERVER_HANDLER_TEST_FIXTURE_H_
#define ISLET_SERVER_HANDLER_TEST_FIXTURE_H_

#include <vector>

#include "absl/time/time.h"
#include "server/scripted_handler.h"
#include "server/server_options.h"
#include "server/test_util.h"

namespace islet {
namespace testutil {

// The scripted handler of scripted_handler.h, one loopback server per test.
class HandlerTest : public testutil::ScriptedServerTest {
 protected:
  // Options() with `read_timeout`.
  ServerOptions OptionsWithReadTimeout(absl::Duration read_timeout) {
    ServerOptions options = Options();
    options.read_timeout = read_timeout;
    return options;
  }

  // The telemetry of the server's only connection (by connection id).
  std::vector<RecordedEvent> ConnectionTelemetry() const {
    std::vector<RecordedEvent> out;
    for (const RecordedEvent& e : telemetry_->Events()) {
      if (e.connection_id != 0) out.push_back(e);
    }
    return out;
  }
};

}  // namespace testutil
}  // namespace islet

#endif  // ISLET_SERVER_HANDLER_TEST_FIXTURE_H_
