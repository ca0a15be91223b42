#include "testing/temp_file.h"

#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace islet {
namespace {

std::string ReadBack(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(TempFileTest, WritesTheBytesUnderAUniquePath) {
  const std::string contents("a\0b\r\n", 5);
  const std::string first = WriteTestFile("same.bin", contents);
  const std::string second = WriteTestFile("same.bin", "other");
  EXPECT_NE(first, second);
  EXPECT_EQ(ReadBack(first), contents);
  EXPECT_EQ(ReadBack(second), "other");
}

TEST(TempFileTest, PathsAreInTheScratchDirectory) {
  const char* dir = std::getenv("TEST_TMPDIR");
  ASSERT_NE(dir, nullptr);  // Bazel sets it for every test
  EXPECT_EQ(TestTempPath("x").rfind(dir, 0), 0u);
}

TEST(TempFileTest, WriteFileAtReplacesAndReportsFailure) {
  const std::string path = TestTempPath("replaced");
  ASSERT_TRUE(WriteFileAt(path, "long contents"));
  ASSERT_TRUE(WriteFileAt(path, "short"));
  EXPECT_EQ(ReadBack(path), "short");
  EXPECT_FALSE(WriteFileAt(TestTempPath("no/such/dir/file"), "x"));
}

}  // namespace
}  // namespace islet
