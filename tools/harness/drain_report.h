// DrainReport: what a stopping server's drain looks like from the outside. While Stop
// lets connections finish, a line every second says how many are still open; when it
// returns, one line sums it up: how many finished by themselves, how many were closed
// at the deadline, and how long it took.
//
//   DrainReport report(server, "harness", shutdown_timeout, stderr);
//   server.Stop();
//   report.Finish();
//
//   harness: draining: 12 connections open, 14s left
//   harness: drained in 15.002s: 3 connections finished, 9 forced closed at the deadline
//
// A connection counts as forced when its connection.stop comes at or after the deadline
// the report computed (a few microseconds before Stop computes its own).
#ifndef ISLET_TOOLS_HARNESS_DRAIN_REPORT_H_
#define ISLET_TOOLS_HARNESS_DRAIN_REPORT_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/server.h"

namespace islet::harness {

class DrainReport {
 public:
  // Call just before Stop(timeout): counts `server_name`'s connection stops from now
  // and writes a progress line to `out` every `every`.
  DrainReport(const Server& server, std::string server_name, absl::Duration timeout, FILE* out,
              absl::Duration every = absl::Seconds(1));
  // Finishes if Finish was not called.
  ~DrainReport();
  DrainReport(const DrainReport&) = delete;
  DrainReport& operator=(const DrainReport&) = delete;

  // Ends the progress lines and writes the summary. Call once Stop has returned.
  void Finish();

 private:
  void Progress();

  const Server& server_;
  const std::string server_name_;
  FILE* const out_;
  const absl::Duration every_;
  const absl::Duration started_;   // MonotonicNow
  const absl::Duration deadline_;  // MonotonicNow
  std::atomic<uint64_t> finished_{0};
  std::atomic<uint64_t> forced_{0};
  uint64_t attachment_ = 0;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread progress_;
};

}  // namespace islet::harness

#endif  // ISLET_TOOLS_HARNESS_DRAIN_REPORT_H_
