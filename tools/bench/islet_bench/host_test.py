import os
import tempfile
import unittest

from islet_bench import host


class BoringSslVersionTest(unittest.TestCase):
    def test_reads_the_version_the_build_pins(self):
        with tempfile.TemporaryDirectory() as repo:
            os.mkdir(os.path.join(repo, "bazel"))
            with open(os.path.join(repo, "bazel", "repositories.bzl"), "w") as f:
                f.write('X = 1\nBORINGSSL_VERSION = "13.0.0+r24"\nBORINGSSL_ARCHIVE = "a"\n')
            self.assertEqual(host.boringssl_version(repo), "13.0.0+r24")

    def test_unknown_without_the_file_or_the_line(self):
        with tempfile.TemporaryDirectory() as repo:
            self.assertEqual(host.boringssl_version(repo), "?")
            os.mkdir(os.path.join(repo, "bazel"))
            with open(os.path.join(repo, "bazel", "repositories.bzl"), "w") as f:
                f.write("# BORINGSSL_VERSION is not here\n")
            self.assertEqual(host.boringssl_version(repo), "?")


if __name__ == "__main__":
    unittest.main()
