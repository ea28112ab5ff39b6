#!/usr/bin/env python3
"""Runs every test of the project and ends with one line `N passed, N failed`.

Three kinds of test are found by name:
  BUILD/tests/test_*           cmocka unit tests (tests/unit/test_*.c)
  tests/integration/test_*.py  unittest modules that start the real binaries
  FUZZ_BUILD/fuzz_*            libFuzzer targets, replaying their seed corpus

Usage: tests/run.py [--build DIR] [--fuzz-build DIR] [-k SUBSTRING] [--list]
--build names the build the unit tests and the programs come from (the
integration tests get it as RAINBOW_BUILD); --fuzz-build the fuzz targets'
(make fuzz-build, build-fuzz by default; FUZZ_BUILD=DIR builds elsewhere).
Every skipped test is printed with its reason.
Exit status: 0 when nothing failed, 1 otherwise.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_skips(out):
    """cmocka's skipped tests: [(name, reason)]; cmocka gives no reason."""
    return [(n, "skip() called") for n in re.findall(r"^\[  SKIPPED \] (\S+)$", out, re.M)]


def run_unit(path, env, timeout):
    try:
        p = subprocess.run([path], env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return 0, 1, (e.stdout or "") + (e.stderr or "") + "\nTIMEOUT\n", []
    out = p.stdout + p.stderr
    passed = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
    failed = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
    if p.returncode != 0 and failed == 0:
        failed = 1  # crashed, sanitizer report, or no cmocka summary
    if passed == 0 and failed == 0:
        failed = 1
    return passed, failed, out, unit_skips(out)


# unittest -v: "test_x (mod.Class.test_x) ... skipped 'why'", the docstring's
# first line between the two when there is one; a class skipped as a whole
# shows as "setUpClass (mod.Class) ... skipped 'why'".
PY_SKIP = re.compile(r"^(\w+) \(([\w.]+)\)(?:\n[^\n]*?)? \.\.\. skipped '(.*)'$", re.M)


def py_skips(out):
    """unittest's skipped tests: [(Class.test, reason)]."""
    res = []
    for meth, where, why in PY_SKIP.findall(out):
        parts = where.split(".")
        if parts[-1] == meth:
            parts = parts[:-1]
        res.append(("%s.%s" % (parts[-1], meth), why))
    return res


def run_py(path, env, timeout):
    cmd = [sys.executable, "-m", "unittest", "-v",
           os.path.relpath(path, ROOT).replace("/", ".")[:-3]]
    try:
        p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        return 0, 1, out + "\nTIMEOUT after %ds\n" % timeout, []
    out = p.stdout + p.stderr
    m = re.search(r"^Ran (\d+) tests? in", out, re.M)
    ran = int(m.group(1)) if m else 0
    bad = 0
    m = re.search(r"^FAILED \((.*)\)", out, re.M)
    if m:
        for k, v in re.findall(r"(\w+)=(\d+)", m.group(1)):
            if k in ("failures", "errors", "unexpected_successes"):
                bad += int(v)
    skips = py_skips(out)
    skipped = len(re.findall(r"\.\.\. skipped", out))
    if skipped > len(skips):  # a format the pattern does not know: still said
        skips.append(("?", "%d skipped; see the unittest output" % (skipped - len(skips))))
    if p.returncode != 0 and bad == 0:
        bad = 1
    # Not ran - skipped: a class skipped in setUpClass is one "skipped" line
    # but none of the tests "Ran".
    passed = len(re.findall(r" \.\.\. (?:ok|expected failure)$", out, re.M))
    return min(passed, max(ran - bad, 0)), bad, out, skips


def run_fuzz(path, env, timeout):
    name = os.path.basename(path)
    corpus = os.path.join(ROOT, "tests", "fuzz", "corpus", name)
    # New units go to a scratch directory listed first, never into the
    # tracked seed corpus.
    scratch = tempfile.mkdtemp(prefix="rb-fuzz-")
    # A crashing input is kept beside the fuzzer, not in the source tree.
    artifacts = os.path.join(os.path.dirname(path), "artifacts-%s-" % name)
    args = [path, "-runs=3000", "-seed=1", "-artifact_prefix=" + artifacts, scratch]
    if os.path.isdir(corpus):
        args.append(corpus)
    try:
        p = subprocess.run(args, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return 0, 1, "TIMEOUT\n", []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = p.stdout + p.stderr
    return (1, 0, out, []) if p.returncode == 0 else (0, 1, out, [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-san")
    ap.add_argument("--fuzz-build", default="build-fuzz")
    ap.add_argument("-k", dest="filter", default="")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()

    build = os.path.join(ROOT, a.build)
    env = dict(os.environ)
    env["RAINBOW_BUILD"] = build
    env["RAINBOW_ROOT"] = ROOT
    env["PYTHONPATH"] = os.path.join(ROOT, "tests", "lib")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(ROOT, "tests", "lsan.supp"))

    tests = []
    tdir = os.path.join(build, "tests")
    if os.path.isdir(tdir):
        for n in sorted(os.listdir(tdir)):
            if n.startswith("test_"):
                tests.append(("unit", os.path.join(tdir, n)))
    idir = os.path.join(ROOT, "tests", "integration")
    for n in sorted(os.listdir(idir)):
        if n.startswith("test_") and n.endswith(".py"):
            tests.append(("integration", os.path.join(idir, n)))
    notes = []
    if not os.path.isdir(tdir):
        notes.append(("unit", a.build, "no %s/tests (make SAN=1 tests BUILD=%s)" % (a.build, a.build)))
    fdir = os.path.join(ROOT, a.fuzz_build)
    nfuzz = 0
    if os.path.isdir(fdir):
        for n in sorted(os.listdir(fdir)):
            p = os.path.join(fdir, n)
            if n.startswith("fuzz_") and os.access(p, os.X_OK) and os.path.isfile(p):
                tests.append(("fuzz", p))
                nfuzz += 1
    if not nfuzz:
        notes.append(("fuzz", a.fuzz_build, "no fuzz targets there (make fuzz-build)"))
    tests = [t for t in tests if a.filter in os.path.basename(t[1])]
    if a.list:
        for kind, p in tests:
            print(kind, os.path.relpath(p, ROOT))
        return 0

    total_p = total_f = 0
    failed_names = []
    skipped = []
    runners = {"unit": run_unit, "integration": run_py, "fuzz": run_fuzz}
    for kind, where, why in notes:
        if not a.filter:
            print("skip %-11s %-50s %s" % (kind, where, why), flush=True)
    for kind, path in tests:
        name = os.path.relpath(path, ROOT)
        t0 = time.monotonic()
        p, f, out, skips = runners[kind](path, env, a.timeout)
        dt = time.monotonic() - t0
        status = "ok" if f == 0 else "FAIL"
        print("%-4s %-11s %-50s %3d passed %3d failed %6.1fs" %
              (status, kind, name, p, f, dt), flush=True)
        for test, why in skips:
            print("     skipped %s: %s" % (test, why), flush=True)
            skipped.append(name)
        if f:
            failed_names.append(name)
            sys.stdout.write(out[-20000:])
            sys.stdout.write("\n")
        total_p += p
        total_f += f
    if skipped:
        print("%d skipped (reasons above) in: %s" % (len(skipped), " ".join(sorted(set(skipped)))))
    if failed_names:
        print("failed:", " ".join(failed_names))
    print("%d passed, %d failed" % (total_p, total_f))
    return 0 if total_f == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
