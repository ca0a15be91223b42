// Files for tests, in the test's scratch directory (TEST_TMPDIR, which Bazel empties
// for every run; else /tmp).
//
//   const std::string path = WriteTestFile("payload.bin", contents);
//   ... Sendfile(path) ...
#ifndef ISLET_TESTING_TEMP_FILE_H_
#define ISLET_TESTING_TEMP_FILE_H_

#include <string>

#include "absl/strings/string_view.h"

namespace islet {

// A path in the scratch directory ending in `name`, unique in the process (a counter
// goes first), so two tests may ask for the same name.
std::string TestTempPath(absl::string_view name);

// Writes `contents` to a new TestTempPath(name) and returns the path. Aborts when the
// file cannot be written: no test could mean anything then.
std::string WriteTestFile(absl::string_view name, absl::string_view contents);

// Writes `contents` to `path` (replacing it); false when it cannot.
bool WriteFileAt(const std::string& path, absl::string_view contents);

}  // namespace islet

#endif  // ISLET_TESTING_TEMP_FILE_H_
