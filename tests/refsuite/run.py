# SPDX-License-Identifier: Apache-2.0
"""Run the reference safetensors' own Python test suite (bindings/python/tests of a checkout of
huggingface/safetensors) unchanged against weightlift, through the import shim in shim/ (first
on sys.path), and report the pass rate. The checkout is not modified: its tests are copied to a
temporary folder and run there (they write ./tests/data/*).

    python tests/refsuite/run.py /path/to/safetensors [--reference] [--min-rate 95] [--json F]

Each test file runs in a pytest process of its own (tensorflow and paddle cannot share one);
a file whose process crashes (the reference's paddle slicing aborts with paddle 3.3) is rerun one
test per process, so a crash costs only its own test. --reference runs the same suite against
the installed reference instead (the baseline: which failures are the suite's own). Exit 0 when
the pass rate (passed / (passed + failed), xfail counted as passed, skips apart) reaches
--min-rate."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "shim")


def pytest(args, cwd, env, junit, timeout):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
           f"--junitxml={junit}", "-o", "junit_family=xunit1"] + args
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timeout"
    return r.returncode, r.stdout[-4000:] + r.stderr[-4000:]


def read_junit(path):
    """{test id: (outcome, message)} from a junit file."""
    out = {}
    if not os.path.exists(path):
        return out
    for tc in ET.parse(path).iter("testcase"):
        f = tc.get("file") or tc.get("classname", "").replace(".", "/") + ".py"
        cls = tc.get("classname", "").split(".")[-1]
        tid = f"{os.path.basename(f)}::{cls}::{tc.get('name')}" if cls and not \
            cls.startswith("test_") else f"{os.path.basename(f)}::{tc.get('name')}"
        state, msg = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                state, msg = "failed", (child.get("message") or "")[:300]
            elif child.tag == "skipped":
                t = child.get("type", "")
                msg = (child.get("message") or "")[:200]
                state = "xfailed" if "xfail" in t or "expected" in msg.lower() else "skipped"
        out[tid] = (state, msg)
    return out


def collect(test_file, cwd, env):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p",
                        "no:cacheprovider", test_file], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    return [line.strip() for line in r.stdout.splitlines() if "::" in line]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="a checkout of huggingface/safetensors")
    ap.add_argument("--reference", action="store_true",
                    help="run against the installed reference safetensors (no shim)")
    ap.add_argument("--min-rate", type=float, default=95.0)
    ap.add_argument("--json", help="write the per-test results here")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per pytest process")
    a = ap.parse_args()
    src = os.path.join(a.checkout, "bindings", "python", "tests")
    if not os.path.isdir(src):
        sys.exit(f"{src}: not a folder (give the root of a huggingface/safetensors checkout)")
    work = tempfile.mkdtemp(prefix="refsuite-")
    shutil.copytree(src, os.path.join(work, "tests"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    if not a.reference:
        env["PYTHONPATH"] = SHIM + os.pathsep + env.get("PYTHONPATH", "")
    # Which package answers `import safetensors` (a wrong shim path would test the reference).
    probe = subprocess.run([sys.executable, "-c", "import safetensors, sys; "
                            "print(getattr(safetensors, '__weightlift__', 'reference'))"],
                           cwd=work, env=env, capture_output=True, text=True)
    under = probe.stdout.strip() or probe.stderr.strip()[-300:]
    print(f"import safetensors gives: {'the reference' if under == 'reference' else 'weightlift (shim), ' + under}")
    if not a.reference and not under.endswith("__init__.py"):
        sys.exit("the shim did not take the name safetensors")
    results = {}
    files = sorted(f for f in os.listdir(os.path.join(work, "tests"))
                   if f.startswith("test_") and f.endswith(".py"))
    for f in files:
        junit = os.path.join(work, f + ".xml")
        rc, log = pytest([os.path.join("tests", f)], work, env, junit, a.timeout)
        got = read_junit(junit)
        if rc in (0, 1, 5) and got:
            results.update(got)
            continue
        # The process died (a crash, not a test failure): one test per process.
        for tid in collect(os.path.join("tests", f), work, env):
            one = os.path.join(work, "one.xml")
            if os.path.exists(one):
                os.remove(one)
            rc1, log1 = pytest([tid], work, env, one, a.timeout)
            got1 = read_junit(one)
            key = os.path.basename(tid.split("::")[0]) + "::" + "::".join(tid.split("::")[1:])
            if rc1 in (0, 1) and got1:
                results.update(got1)
            else:
                last = log1.strip().splitlines()[-1][:200] if log1.strip() else ""
                results[key] = ("failed", f"process crashed (exit {rc1}) {last}".strip())
    shutil.rmtree(work, ignore_errors=True)
    counts = {}
    for state, _ in results.values():
        counts[state] = counts.get(state, 0) + 1
    width = max(len(t) for t in results) if results else 10
    for tid in sorted(results):
        state, msg = results[tid]
        if state != "passed":
            print(f"{state:8} {tid:{width}}  {msg}")
    passed = counts.get("passed", 0) + counts.get("xfailed", 0)
    failed = counts.get("failed", 0)
    rate = 100.0 * passed / max(passed + failed, 1)
    print(f"{len(results)} tests: {counts.get('passed', 0)} passed, {failed} failed, "
          f"{counts.get('xfailed', 0)} xfailed, {counts.get('skipped', 0)} skipped; "
          f"pass rate {rate:.1f}% (passed+xfailed / passed+xfailed+failed)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"against": "reference" if a.reference else "weightlift", "rate": rate,
                       "counts": counts, "tests": results}, fh, indent=1, sort_keys=True)
    sys.exit(0 if rate >= a.min_rate else 1)


if __name__ == "__main__":
    main()
