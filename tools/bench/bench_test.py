#!/usr/bin/python3 -B
"""The unit tests of the benchmark program: every islet_bench/*_test.py, run with
Debian's python3 (//tools/bench:bench_unit_test; by hand: tools/bench/bench_test.py)."""

import os
import sys
import unittest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
tests = unittest.defaultTestLoader.discover(os.path.join(here, "islet_bench"), pattern="*_test.py",
                                            top_level_dir=here)
result = unittest.TextTestRunner(verbosity=2).run(tests)
sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
