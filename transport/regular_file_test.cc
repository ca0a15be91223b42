// OpenRegularFile and SendfileLength over real files: the descriptor, the size, and
// the code and message of each refusal.
#include "transport/regular_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "testing/temp_file.h"

namespace islet {
namespace {

TEST(OpenRegularFileTest, OpensForReadingWithTheSize) {
  const std::string path = WriteTestFile("ten.bin", "0123456789");
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "sendfile: open");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->size, 10u);
  EXPECT_EQ(::fcntl(file->fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_NE(::fcntl(file->fd.get(), F_GETFD) & FD_CLOEXEC, 0);
  char buf[16] = {};
  EXPECT_EQ(::pread(file->fd.get(), buf, sizeof(buf), 3), 7);
  EXPECT_EQ(std::string(buf), "3456789");
}

TEST(OpenRegularFileTest, EmptyFileHasSizeZero) {
  absl::StatusOr<RegularFile> file = OpenRegularFile(WriteTestFile("empty.bin", ""), "read");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->size, 0u);
}

TEST(OpenRegularFileTest, MissingFileIsNotFoundNamingOperationAndPath) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/missing.bin");
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "sendfile: open");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(file.status().message(),
            absl::StrCat("sendfile: open ", path, ": No such file or directory (ENOENT)"));
}

TEST(OpenRegularFileTest, DirectoryIsInvalidArgument) {
  const std::string dir = ::testing::TempDir();
  absl::StatusOr<RegularFile> file = OpenRegularFile(dir, "client_ca_file");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file.status().message(), absl::StrCat("client_ca_file ", dir, ": not a regular file"));
}

TEST(OpenRegularFileTest, DeviceIsInvalidArgument) {
  absl::StatusOr<RegularFile> file = OpenRegularFile("/dev/null", "sendfile: open");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file.status().message(), "sendfile: open /dev/null: not a regular file");
}

TEST(SendfileLengthTest, ZeroLengthMeansToTheEnd) {
  EXPECT_EQ(SendfileLength(10, 0, 0, "f").value(), 10u);
  EXPECT_EQ(SendfileLength(10, 4, 0, "f").value(), 6u);
}

TEST(SendfileLengthTest, LengthIsCutAtTheEnd) {
  EXPECT_EQ(SendfileLength(10, 2, 5, "f").value(), 5u);
  EXPECT_EQ(SendfileLength(10, 2, 8, "f").value(), 8u);
  EXPECT_EQ(SendfileLength(10, 2, 9, "f").value(), 8u);
}

TEST(SendfileLengthTest, HugeLengthDoesNotWrap) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(SendfileLength(10, 4, kMax, "f").value(), 6u);
  EXPECT_EQ(SendfileLength(10, 4, kMax - 3, "f").value(), 6u);
}

TEST(SendfileLengthTest, OffsetAtTheEndSendsNothing) {
  EXPECT_EQ(SendfileLength(10, 10, 0, "f").value(), 0u);
  EXPECT_EQ(SendfileLength(0, 0, 5, "f").value(), 0u);
}

TEST(SendfileLengthTest, OffsetPastTheEndIsInvalidArgument) {
  absl::StatusOr<uint64_t> length = SendfileLength(10, 11, 0, "/srv/a.bin");
  EXPECT_EQ(length.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(length.status().message(),
            "sendfile: offset 11 is past the end of /srv/a.bin (10 bytes)");
}

}  // namespace
}  // namespace islet
