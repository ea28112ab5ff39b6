"""tests/run.py itself: it names every skipped test with its reason, counts
passes when a whole class is skipped, and takes the fuzz targets from
--fuzz-build."""
import importlib.util
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "run.py")


def load_run():
    spec = importlib.util.spec_from_file_location("rainbow_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SKIPPING = textwrap.dedent('''
    import unittest

    class A(unittest.TestCase):
        def test_plain(self):
            self.skipTest("no kubectl")

        def test_doc(self):
            """A docstring's first line."""
            self.skipTest("no chromium: here")

        def test_ok(self):
            pass

    @unittest.skip("whole class")
    class B(unittest.TestCase):
        def test_x(self):
            pass

    class C(unittest.TestCase):
        @classmethod
        def setUpClass(cls):
            raise unittest.SkipTest("setup says no")

        def test_y(self):
            pass
    ''')


class RunnerTest(unittest.TestCase):
    def test_python_skips_named_with_reasons(self):
        run = load_run()
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "pkg"))
            open(os.path.join(d, "pkg", "__init__.py"), "w").close()
            with open(os.path.join(d, "pkg", "test_skipping.py"), "w") as f:
                f.write(SKIPPING)
            run.ROOT = d
            passed, failed, out, skips = run.run_py(
                os.path.join(d, "pkg", "test_skipping.py"), dict(os.environ), 60)
        self.assertEqual((passed, failed), (1, 0), out)
        self.assertEqual(sorted(skips), [
            ("A.test_doc", "no chromium: here"),
            ("A.test_plain", "no kubectl"),
            ("B.test_x", "whole class"),
            ("C.setUpClass", "setup says no"),
        ])

    def test_unit_skips(self):
        run = load_run()
        out = "[ RUN      ] a\n[  SKIPPED ] a\n[ RUN      ] b\n[       OK ] b\n"
        self.assertEqual(run.unit_skips(out), [("a", "skip() called")])

    def test_fuzz_build_is_honoured(self):
        with tempfile.TemporaryDirectory(dir=ROOT) as d:
            fuzz = os.path.join(d, "fuzz_nothing")
            with open(fuzz, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(fuzz, 0o755)
            rel = os.path.relpath(d, ROOT)
            p = subprocess.run([sys.executable, RUN, "--fuzz-build", rel, "--list",
                                "-k", "fuzz_"], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.split(), ["fuzz", os.path.join(rel, "fuzz_nothing")])
            p = subprocess.run([sys.executable, RUN, "--fuzz-build", "no-such-dir",
                                "--build", "no-such-build", "-k", "no-such-test"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.stdout.strip(), "0 passed, 0 failed")
            p = subprocess.run([sys.executable, RUN, "--list", "--fuzz-build", "no-such-dir"],
                               capture_output=True, text=True, timeout=60)
            self.assertNotIn("fuzz ", p.stdout)


if __name__ == "__main__":
    unittest.main()
