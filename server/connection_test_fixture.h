// The fixture of the Connection API tests (connection_io_test, connection_sendfile_test,
// connection_info_test, connection_post_test): the scripted handler of scripted_handler.h,
// one loopback server per test, and the bytes its telemetry reports. Header-only and
// testonly.
#ifndef ISLET_SERVER_CONNECTION_TEST_FIXTURE_H_
#define ISLET_SERVER_CONNECTION_TEST_FIXTURE_H_

#include <cstdint>

#include "server/scripted_handler.h"
#include "server/telemetry.h"
#include "server/test_util.h"

namespace islet {
namespace testutil {

// The scripted handler of scripted_handler.h, one loopback server per test.
class ConnectionTest : public testutil::ScriptedServerTest {
 protected:
  // The bytes of every event of `type`, added up.
  uint64_t SumBytes(TelemetryEventType type) const {
    uint64_t total = 0;
    for (const RecordedEvent& e : telemetry_->Events(type)) total += e.bytes;
    return total;
  }
};

}  // namespace testutil
}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_TEST_FIXTURE_H_
