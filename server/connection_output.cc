// ConnectionImpl's output: what Send could not write at once waits in the OutputQueue;
// this is the connection's side of it (flushing on writability, the write shutdown that
// follows the output, backpressure, the server's output budget). The state machine is
// in connection_impl.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/connection_impl.h"
#include "transport/errors.h"
#include "transport/io_wait.h"

namespace islet {

absl::Status ConnectionImpl::FailSend(absl::Status error) {
  Emit(TelemetryEventType::kConnectionSendError, 0, &error);
  SetPendingError(error);
  return error;
}

absl::Status ConnectionImpl::CheckOutputBudget() {
  OutputBudget& budget = host_.output_budget();
  if (!budget.Spent()) return absl::OkStatus();
  const size_t share = budget.FairShare(host_.live_connections());
  if (out_.bytes() > share) {
    // Shed first the connections holding the most: this one holds more than its share.
    // A peer slower than its share is the peer's doing (marked so), however busy the
    // server.
    return FailSend(MarkPeerCaused(absl::ResourceExhaustedError(absl::StrCat(
        "send: the server's output budget (", budget.limit, " bytes) is spent, and this ",
        "connection holds ", out_.bytes(), ", more than its share (", share, ")"))));
  }
  // The rest stop taking requests until their output drains.
  PauseForBackpressure();
  return absl::OkStatus();
}

void ConnectionImpl::PauseForBackpressure() {
  // No read deadline while paused: waiting on us is not the peer's idleness.
  reading_paused_ = true;
  waiting_since_ = absl::InfiniteDuration();
}

void ConnectionImpl::OnQueued() {
  if (out_.AboveHighWater()) PauseForBackpressure();
  UpdateInterest();
  ArmTimer();
}

absl::Status ConnectionImpl::Flush() {
  absl::Status flushed = out_.Flush(*socket_, loop_.now());
  if (!flushed.ok()) return flushed;
  CheckDrained();
  if (out_.empty()) {
    OnOutputDrained();
  } else {
    ResumeReadingIfDrained();
    UpdateInterest();
    ArmTimer();
  }
  return absl::OkStatus();
}

absl::Status ConnectionImpl::StepShutdown() {
  absl::StatusOr<IoInterest> step = socket_->ShutdownStep(write_shutdown_way_);
  if (step.ok() && *step != IoInterest::kNone) {
    // No room for what the transport sends last: wait for writability, as queued output
    // does, bounded by send_timeout.
    if (write_shutdown_ != WriteShutdown::kSending) {
      write_shutdown_ = WriteShutdown::kSending;
      shutdown_deadline_ = loop_.now() + options_.send_timeout;
    }
    UpdateInterest();
    ArmTimer();
    return absl::OkStatus();
  }
  write_shutdown_ = WriteShutdown::kNone;
  shutdown_deadline_ = absl::InfiniteDuration();
  const absl::Status& s = step.status();
  Emit(TelemetryEventType::kConnectionSocketShutdown, 0, s.ok() ? nullptr : &s,
       write_shutdown_way_ == ShutdownWay::kWrite ? "write" : "read_write");
  UpdateInterest();
  return s;
}

absl::Status ConnectionImpl::FlushBlocking(absl::Duration deadline) {
  for (;;) {
    absl::Status flushed = Flush();
    if (!flushed.ok()) return flushed;
    if (phase_ == Phase::kClosed || AllSent()) return absl::OkStatus();
    absl::Status ready = socket_->WaitWritable(deadline, "send");
    if (!ready.ok()) return ready;
  }
}

void ConnectionImpl::OnOutputDrained() {
  if (write_shutdown_ == WriteShutdown::kAfterOutput && socket_ != nullptr) {
    StepShutdown().IgnoreError();  // reported in telemetry
  }
  if (phase_ == Phase::kDraining) {
    if (AllSent()) {
      CloseSocketOrLinger();
    } else {
      UpdateInterest();  // the transport's staged bytes still to go
    }
    return;
  }
  if (phase_ == Phase::kSwitching) {
    // Drained by the flush of a Close (a handle's, or Stop's): the switch is abandoned,
    // and Close goes on to close.
    if (ended_) return;
    if (AllSent()) {
      Upgrade();
    } else {
      UpdateInterest();  // the transport's staged bytes still to go
    }
    return;
  }
  ResumeReadingIfDrained();
  UpdateInterest();
  ArmTimer();
}

void ConnectionImpl::ResumeReadingIfDrained() {
  if (!reading_paused_ || !out_.DrainedToLowWater()) return;
  reading_paused_ = false;
  if (phase_ == Phase::kOpen && !ended_ && ReadingAllowed()) {
    waiting_since_ = loop_.now();
    PostReadIfBuffered();
  }
}

void ConnectionImpl::SetPendingError(absl::Status error) {
  if (pending_error_.ok()) pending_error_ = std::move(error);
}

}  // namespace islet
