// OverloadMonitor: pressure from the counters, states with hysteresis, one report per
// change, and the timeout scale.
#include "server/overload_monitor.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace islet {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

struct Recorder {
  std::vector<OverloadChange> changes;
  OverloadMonitor Monitor(double scale_from = 0.75, absl::Duration floor = absl::Seconds(1)) {
    return OverloadMonitor(scale_from, floor,
                           [this](const OverloadChange& c) { changes.push_back(c); });
  }
  std::vector<OverloadState> States() const {
    std::vector<OverloadState> out;
    for (const OverloadChange& c : changes) out.push_back(c.now.state);
    return out;
  }
};

OverloadInputs Connections(int64_t live, int64_t cap) {
  return {.connections = live, .connection_cap = cap};
}

TEST(OverloadMonitorTest, PressureIsTheResourceNearestItsCap) {
  Recorder r;
  OverloadMonitor m = r.Monitor();
  OverloadReading reading = m.Update({.connections = 100,
                                      .connection_cap = 1000,
                                      .descriptor_cap = 200,
                                      .output_bytes = 30,
                                      .output_budget = 100});
  EXPECT_DOUBLE_EQ(reading.pressure, 0.5);
  EXPECT_EQ(reading.resource, OverloadResource::kDescriptors);

  reading = m.Update({.connections = 100, .output_bytes = 90, .output_budget = 100});
  EXPECT_DOUBLE_EQ(reading.pressure, 0.9);
  EXPECT_EQ(reading.resource, OverloadResource::kOutput);

  // No caps at all: no pressure.
  reading = m.Update({.connections = 1'000'000});
  EXPECT_EQ(reading.pressure, 0);
  EXPECT_EQ(reading.resource, OverloadResource::kNone);
  EXPECT_EQ(reading.state, OverloadState::kNormal);
}

TEST(OverloadMonitorTest, TimeoutScaleFallsFromOneToZeroBetweenScaleFromAndTheCap) {
  Recorder r;
  OverloadMonitor m = r.Monitor(/*scale_from=*/0.5);
  EXPECT_DOUBLE_EQ(m.Update(Connections(40, 100)).timeout_scale, 1);
  EXPECT_DOUBLE_EQ(m.Update(Connections(50, 100)).timeout_scale, 1);
  EXPECT_THAT(m.Update(Connections(75, 100)).timeout_scale, DoubleNear(0.5, 1e-9));
  EXPECT_DOUBLE_EQ(m.Update(Connections(100, 100)).timeout_scale, 0);
  EXPECT_DOUBLE_EQ(m.Update(Connections(130, 100)).timeout_scale, 0);
}

TEST(OverloadMonitorTest, ScaleFromOneKeepsTimeoutsWholeUntilTheCap) {
  Recorder r;
  OverloadMonitor m = r.Monitor(/*scale_from=*/1);
  EXPECT_DOUBLE_EQ(m.Update(Connections(99, 100)).timeout_scale, 1);
  EXPECT_EQ(m.Current().state, OverloadState::kNormal);
  EXPECT_DOUBLE_EQ(m.Update(Connections(100, 100)).timeout_scale, 0);
  EXPECT_EQ(m.Current().state, OverloadState::kSaturated);
}

TEST(OverloadMonitorTest, StatesRiseAtOnceAndFallWithHysteresis) {
  Recorder r;
  OverloadMonitor m = r.Monitor(/*scale_from=*/0.75);
  m.Update(Connections(10, 100));
  EXPECT_TRUE(r.changes.empty()) << "normal to normal is no change";

  m.Update(Connections(100, 100));  // straight to saturated
  m.Update(Connections(99, 100));   // within the hysteresis: stays saturated
  m.Update(Connections(96, 100));
  EXPECT_EQ(m.Current().state, OverloadState::kSaturated);
  m.Update(Connections(94, 100));   // below 1 - 0.05: scaling
  m.Update(Connections(72, 100));   // below 0.75, within the hysteresis: still scaling
  EXPECT_EQ(m.Current().state, OverloadState::kScaling);
  m.Update(Connections(69, 100));   // below 0.70: normal
  m.Update(Connections(100, 100));
  m.Update(Connections(10, 100));   // far below both: straight back to normal

  EXPECT_THAT(r.States(), ElementsAre(OverloadState::kSaturated, OverloadState::kScaling,
                                      OverloadState::kNormal, OverloadState::kSaturated,
                                      OverloadState::kNormal));
  EXPECT_EQ(r.changes[0].before, OverloadState::kNormal);
  EXPECT_EQ(r.changes[1].before, OverloadState::kSaturated);
  EXPECT_EQ(r.changes[1].now.resource, OverloadResource::kConnections);
  EXPECT_DOUBLE_EQ(r.changes[1].now.pressure, 0.94);
}

TEST(OverloadMonitorTest, ScaleShrinksThePartAboveTheFloor) {
  Recorder r;
  OverloadMonitor m = r.Monitor(0.75, /*floor=*/absl::Seconds(1));
  EXPECT_EQ(m.Scale(absl::Seconds(61), 1), absl::Seconds(61));
  EXPECT_EQ(m.Scale(absl::Seconds(61), 0.5), absl::Seconds(31));
  EXPECT_EQ(m.Scale(absl::Seconds(61), 0), absl::Seconds(1));
  // Already short, or infinite: as they are.
  EXPECT_EQ(m.Scale(absl::Milliseconds(300), 0), absl::Milliseconds(300));
  EXPECT_EQ(m.Scale(absl::InfiniteDuration(), 0), absl::InfiniteDuration());
}

TEST(OverloadMonitorTest, AnInfiniteFloorTurnsScalingOff) {
  Recorder r;
  OverloadMonitor m = r.Monitor(0.75, absl::InfiniteDuration());
  EXPECT_EQ(m.Scale(absl::Seconds(60), 0), absl::Seconds(60));
}

}  // namespace
}  // namespace islet
