"""Run other libraries' own test suites on our loop, against the stdlib's.

Usage, from the repository root, with the Python to test::

    python -m tests.library_suites.run [--suite NAME ...] [--list]

For each suite: a virtualenv in ``build/library-suites/venv-X.Y`` (this
project installed editable, plus the library at a pinned version and its
test requirements, from PyPI), the library's source distribution unpacked
for its tests, then its pytest suite run twice: on the stdlib loop (the
reference) and on ours (``library_suite_on_our_loop.py``). A test that passes on the
stdlib loop and fails on ours fails the run, after one retry on ours (a test
that passes on the retry is reported as flaky). Tests that fail on both
loops are this machine's (no IPv6 name for localhost, running as root) and
are only counted. The run also fails when no loop of ours was created.

Exit status: 0 when every suite agrees, 1 otherwise, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "library-suites"
# Loaded by its file's directory on sys.path, under a name no suite's own
# modules use (anyio's sdist, for one, has a "tests" package of its own).
PLUGIN = "library_suite_on_our_loop"
PLUGIN_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Suite:
    """One library's test suite, pinned."""

    name: str
    version: str
    #: pip requirements besides the library itself (its test requirements).
    requirements: tuple[str, ...]
    #: pytest arguments (after the plugin and reporting arguments).
    pytest_args: tuple[str, ...]
    #: pytest arguments for a whole run, not for retries (pytest-xdist's).
    parallel_args: tuple[str, ...] = ()
    #: Run the tests in a copy of this sdist directory (None: the whole sdist).
    tests_dir: str | None = None
    #: A pytest.ini written next to the copied tests (with tests_dir).
    pytest_ini: str | None = None
    #: Not run unless named: too long for every CI run.
    optional: bool = False
    #: Pythons (major, minor) the pinned version supports.
    min_python: tuple[int, int] = (3, 10)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


_AIOHTTP_INI = """\
[pytest]
markers =
  autobahn: Autobahn testsuite
  dev_mode: dev mode
  internal: aiohttp's internal tests
  skip_blockbuster: no blockbuster
filterwarnings =
  error
  ignore:Unclosed client session <aiohttp.client.ClientSession object at 0x:ResourceWarning
  ignore:aiohttp.pytest_plugin will be removed in v4:DeprecationWarning
xfail_strict = true
timeout = 120
"""

SUITES = {
    suite.name: suite
    for suite in [
        # anyio's asyncio backend: task groups, cancel scopes, sockets (TCP,
        # UDP, Unix, TLS), subprocesses, threads, signals, file I/O. Its
        # asyncio test ids run on asyncio.Runner(), so on our loop when ours
        # is the default; the uvloop/winloop variants are left out. Without
        # blockbuster: it allows the stdlib's own blocking calls (Popen in
        # subprocess_exec) by the stdlib's file names only.
        Suite(
            name="anyio",
            version="4.16.0",
            requirements=(
                "anyio[trio]==4.16.0",
                "pytest>=9",
                "pytest-mock",
                "pytest-timeout",
                "trustme",
                "truststore",
                "hypothesis",
                "psutil",
                "exceptiongroup",
            ),
            pytest_args=("-k", "asyncio and not uvloop and not winloop"),
            min_python=(3, 10),
        ),
        Suite(
            name="janus",
            version="2.0.0",
            requirements=("pytest", "pytest-asyncio"),
            pytest_args=("-o", "addopts=", "--ignore", "tests/test_benchmarks.py"),
            min_python=(3, 10),
        ),
        Suite(
            name="async-timeout",
            version="5.0.1",
            requirements=("pytest", "pytest-asyncio"),
            pytest_args=(
                "-o",
                "addopts=",
            ),
        ),
        # aiohttp's ~5,500 tests: client, server, connector, TLS, websockets,
        # streams. About 6 minutes per loop on two cores.
        Suite(
            name="aiohttp",
            version="3.14.5",
            requirements=(
                "pytest",
                "pytest-mock",
                "pytest-timeout",
                "pytest-xdist",
                "freezegun",
                "proxy.py>=2.4.4rc5",
                "trustme",
                "re-assert",
                "isal",
                "zlib_ng",
                "python-on-whales",
            ),
            pytest_args=(
                "-p",
                "no:asyncio",
                "-p",
                "no:anyio",
                "-m",
                "not dev_mode and not autobahn and not internal",
            ),
            parallel_args=("-n", "2"),
            tests_dir="tests",
            pytest_ini=_AIOHTTP_INI,
            optional=True,
        ),
    ]
}


def log(message: str) -> None:
    print(f"library-suites: {message}", flush=True)


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def setup_venv(suites: list[Suite]) -> Path:
    """The suites' virtualenv for this Python, with everything installed."""
    venv = BUILD / f"venv-{python_tag()}"
    python = venv / "bin" / "python"
    if not python.exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip(python, "--upgrade", "pip")
    wanted = [f"-e{ROOT}"]
    for suite in suites:
        wanted += [suite.pin, *suite.requirements]
    stamp = venv / ".installed"
    key = json.dumps(sorted(wanted))
    if not stamp.exists() or stamp.read_text() != key:
        log(f"installing into {venv}: {' '.join(wanted[1:])}")
        pip(python, *wanted)
        stamp.write_text(key)
    return python


def pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        check=True,
    )


def unpack_sdist(python: Path, suite: Suite) -> Path:
    """The unpacked source distribution of the pinned version (its tests)."""
    downloads = BUILD / "sdists"
    source = downloads / f"{suite.name.replace('-', '_')}-{suite.version}"
    if source.is_dir():
        return source
    downloads.mkdir(parents=True, exist_ok=True)
    log(f"downloading the source of {suite.pin}")
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(downloads),
            suite.pin,
        ],
        check=True,
    )
    for archive in downloads.glob("*.tar.gz"):
        stem = archive.name[: -len(".tar.gz")]
        name, _, version = stem.rpartition("-")
        if _normalize(name) == _normalize(suite.name) and version == suite.version:
            with tarfile.open(archive) as tar:
                try:
                    tar.extractall(downloads, filter="data")
                except TypeError:  # a Python without extraction filters
                    tar.extractall(downloads)
            found = downloads / stem
            if found != source:
                found.rename(source)
            return source
    raise RuntimeError(f"no source archive for {suite.pin} in {downloads}")


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@dataclasses.dataclass
class Outcome:
    results: dict[str, str]  # test id -> passed / failed / skipped
    loops: dict[str, int]
    seconds: float


def run_pytest(
    python: Path, suite: Suite, workdir: Path, loop: str, tag: str, only: list[str] | None = None
) -> Outcome:
    reports = BUILD / "reports" / python_tag()
    reports.mkdir(parents=True, exist_ok=True)
    junit = reports / f"{suite.name}-{tag}.xml"
    counts = reports / f"{suite.name}-{tag}.loops"
    for old in reports.glob(f"{counts.name}.*"):
        old.unlink()
    env = dict(os.environ)
    env["LIBRARY_SUITE_LOOP"] = loop
    env["LIBRARY_SUITE_COUNTS"] = str(counts)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN_DIR), env.get("PYTHONPATH")]))
    env.pop("PYTEST_ADDOPTS", None)
    command = [
        str(python),
        "-m",
        "pytest",
        "-q",
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "--junitxml",
        str(junit),
        "-o",
        "junit_family=xunit2",
        *suite.pytest_args,
    ]
    if only:
        command += only
    else:
        command += suite.parallel_args
    started = time.monotonic()
    with open(reports / f"{suite.name}-{tag}.log", "w") as output:
        subprocess.run(command, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    loops = {"ours": 0, "stdlib": 0}
    for part in reports.glob(f"{counts.name}.*"):
        for kind, n in json.loads(part.read_text()).items():
            loops[kind] += n
    return Outcome(parse_junit(junit), loops, seconds)


def parse_junit(path: Path) -> dict[str, str]:
    results: dict[str, str] = {}
    if not path.exists():
        return results
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            outcome = "failed"
        elif "skipped" in tags:
            outcome = "skipped"
        else:
            outcome = "passed"
        # A teardown error is a second entry for the same test: it fails it.
        if results.get(test_id) != "failed":
            results[test_id] = outcome
    return results


def pytest_id(test_id: str) -> str:
    """A junit id (``tests.test_x.TestY::test_z[p]``) as a pytest node id."""
    classname, name = test_id.split("::", 1)
    parts = classname.split(".")
    for split in range(len(parts), 0, -1):
        path = Path(*parts[:split]).with_suffix(".py")
        if (Path.cwd() / path).exists() or split == 1:
            return "::".join([path.as_posix(), *parts[split:], name])
    return test_id


def workdir_for(suite: Suite, source: Path) -> Path:
    if suite.tests_dir is None:
        return source
    # Only the tests: the library itself is imported from the venv (built).
    workdir = BUILD / "work" / f"{suite.name}-{suite.version}"
    if not workdir.is_dir():
        shutil.copytree(source / suite.tests_dir, workdir / suite.tests_dir)
        if suite.pytest_ini is not None:
            (workdir / "pytest.ini").write_text(suite.pytest_ini)
    return workdir


def run_suite(python: Path, suite: Suite) -> bool:
    source = unpack_sdist(python, suite)
    workdir = workdir_for(suite, source)
    log(f"{suite.pin}: the stdlib loop (reference)")
    reference = run_pytest(python, suite, workdir, "stdlib", "stdlib")
    log(f"{suite.pin}: our loop")
    ours = run_pytest(python, suite, workdir, "ours", "ours")
    regressions = sorted(
        test
        for test, outcome in ours.results.items()
        if outcome == "failed" and reference.results.get(test) == "passed"
    )
    flaky: list[str] = []
    if regressions:
        old_cwd = Path.cwd()
        os.chdir(workdir)
        try:
            ids = [pytest_id(test) for test in regressions]
        finally:
            os.chdir(old_cwd)
        log(f"{suite.pin}: retrying {len(ids)} test(s) that failed on our loop only")
        retry = run_pytest(python, suite, workdir, "ours", "ours-retry", only=ids)
        flaky = [test for test in regressions if retry.results.get(test) == "passed"]
        regressions = [test for test in regressions if test not in flaky]

    def count(outcome: Outcome, kind: str) -> int:
        return sum(1 for result in outcome.results.values() if result == kind)

    both_failed = sum(
        1
        for test, outcome in ours.results.items()
        if outcome == "failed" and reference.results.get(test) == "failed"
    )
    print(
        f"  {suite.pin} on Python {python_tag()}:\n"
        f"    stdlib loop: {count(reference, 'passed')} passed, {count(reference, 'failed')} failed,"
        f" {count(reference, 'skipped')} skipped  [{reference.seconds:.0f} s,"
        f" loops: {reference.loops['stdlib']} stdlib, {reference.loops['ours']} ours]\n"
        f"    our loop:    {count(ours, 'passed')} passed, {count(ours, 'failed')} failed,"
        f" {count(ours, 'skipped')} skipped  [{ours.seconds:.0f} s,"
        f" loops: {ours.loops['ours']} ours, {ours.loops['stdlib']} stdlib]\n"
        f"    failing on both loops (this machine): {both_failed};"
        f" flaky on ours (passed on retry): {len(flaky)};"
        f" failing on ours only: {len(regressions)}",
        flush=True,
    )
    for test in flaky:
        print(f"    FLAKY {test}")
    for test in regressions:
        print(f"    FAILED ON OUR LOOP ONLY {test}")
    ok = True
    if not reference.results or not ours.results:
        print("    ERROR: a run produced no results (see build/library-suites/reports/)")
        ok = False
    if ours.loops["ours"] == 0:
        print("    ERROR: no trio-asyncio loop was created: the suite did not run on ours")
        ok = False
    return ok and not regressions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite",
        action="append",
        choices=[*sorted(SUITES), "all"],
        help="a suite to run (repeatable; default: every non-optional one; 'all': every one)",
    )
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args(argv)
    if args.list:
        for suite in SUITES.values():
            print(f"{suite.pin:24} {'(optional)' if suite.optional else ''}")
        return 0
    names = args.suite or [name for name, suite in SUITES.items() if not suite.optional]
    if "all" in names:
        names = list(SUITES)
    suites = [SUITES[name] for name in names if sys.version_info[:2] >= SUITES[name].min_python]
    started = time.monotonic()
    try:
        python = setup_venv(suites)
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"setup failed: {exc}")
        return 2
    failed = []
    for suite in suites:
        try:
            if not run_suite(python, suite):
                failed.append(suite.name)
        except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
            log(f"{suite.pin}: setup failed: {exc}")
            failed.append(suite.name)
    log(
        f"Python {python_tag()}: {len(suites) - len(failed)}/{len(suites)} suites agree"
        f" with the stdlib loop ({time.monotonic() - started:.0f} s)"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
