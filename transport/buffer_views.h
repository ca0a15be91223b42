// A list of buffers that a gather write sends as one byte stream, and how to drop what
// a partial write took from its front. Internal to Islet's transport, tls and server
// packages.
#ifndef ISLET_TRANSPORT_BUFFER_VIEWS_H_
#define ISLET_TRANSPORT_BUFFER_VIEWS_H_

#include <algorithm>
#include <cstddef>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace islet {

// Drops the first `n` bytes of the stream `views` holds (n at most their total): views
// wholly taken are skipped, and the one the count ends in loses its front, in place.
// Returns the views left from the first that is not empty, so the result is empty
// exactly when no byte is left. ConsumeBytes(views, 0) only skips leading empty views.
//
//   absl::Span<absl::string_view> rest = absl::MakeSpan(views);
//   absl::StatusOr<size_t> wrote = socket.WriteSome(rest);
//   if (wrote.ok()) rest = ConsumeBytes(rest, *wrote);
inline absl::Span<absl::string_view> ConsumeBytes(absl::Span<absl::string_view> views,
                                                  size_t n) {
  size_t first = 0;
  while (first < views.size()) {
    const size_t take = std::min(n, views[first].size());
    views[first].remove_prefix(take);
    n -= take;
    if (!views[first].empty()) break;
    ++first;
  }
  return views.subspan(first);
}

}  // namespace islet

#endif  // ISLET_TRANSPORT_BUFFER_VIEWS_H_
