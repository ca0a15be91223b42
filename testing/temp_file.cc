#include "testing/temp_file.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace islet {

std::string TestTempPath(absl::string_view name) {
  static std::atomic<int> counter{0};
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr && *dir != '\0' ? dir : "/tmp", "/", counter.fetch_add(1),
                      "-", name);
}

bool WriteFileAt(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  return static_cast<bool>(out);
}

std::string WriteTestFile(absl::string_view name, absl::string_view contents) {
  const std::string path = TestTempPath(name);
  if (!WriteFileAt(path, contents)) {
    std::fprintf(stderr, "temp_file: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

}  // namespace islet
