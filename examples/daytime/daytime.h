// Daytime: sends the current date and time as one line, then closes (RFC 867).
#ifndef ISLET_EXAMPLES_DAYTIME_DAYTIME_H_
#define ISLET_EXAMPLES_DAYTIME_DAYTIME_H_

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/connection.h"
#include "server/handler.h"

namespace islet::examples {

// "Wednesday, November 25, 2026 19:51:03-UTC\r\n": RFC 867 leaves the format free;
// this is the one its text suggests.
inline std::string DaytimeLine(absl::Time now) {
  return absl::FormatTime("%A, %B %d, %Y %H:%M:%S-UTC\r\n", now, absl::UTCTimeZone());
}

class DaytimeHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    absl::Status sent = conn.Send(DaytimeLine(absl::Now()));
    // Close flushes the line, then the socket closes in order (FIN).
    return sent.ok() ? HandlerResult::Close() : HandlerResult::Error(sent);
  }
};

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_DAYTIME_DAYTIME_H_
