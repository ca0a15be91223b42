#include "server/overload_state.h"

namespace islet {

absl::string_view OverloadStateName(OverloadState state) {
  switch (state) {
    case OverloadState::kNormal: return "normal";
    case OverloadState::kScaling: return "scaling";
    case OverloadState::kSaturated: return "saturated";
  }
  return "unknown";
}

absl::string_view OverloadResourceName(OverloadResource resource) {
  switch (resource) {
    case OverloadResource::kNone: return "none";
    case OverloadResource::kConnections: return "connections";
    case OverloadResource::kDescriptors: return "descriptors";
    case OverloadResource::kOutput: return "output";
  }
  return "unknown";
}

}  // namespace islet
