"""The exclusions file: the stdlib tests we do not pass, and why.

The format (see the header of ``exclusions.txt``) is line-based, so that it
parses on every supported Python without extra dependencies::

    <category> <mode>:<glob>[|<glob>...] [py<3.12|py>=3.12|py=3.10,3.11] [flaky] [timeout=S] -- <reason>

Indented lines continue the entry above them: ``|<test id>`` adds an
alternative test id, anything else options or the reason.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CATEGORIES = ("stdlib-internals", "deliberate", "bug")
MODES = ("loop", "trio", "whole")
DEFAULT_PATH = Path(__file__).with_name("exclusions.txt")

_VERSION_RE = re.compile(r"^py(<=|>=|<|>|=)(\d+\.\d+(?:,\d+\.\d+)*)$")
_COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ExclusionsError(ValueError):
    """The exclusions file is malformed."""


def _parse_version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


@dataclass
class Exclusion:
    category: str
    pattern: str
    reason: str
    line: int
    flaky: bool = False
    # A shorter per-test timeout, for tests that hang on our loop.
    timeout: float | None = None
    # Each condition is (operator, versions); all must hold.
    conditions: list[tuple[str, tuple[tuple[int, int], ...]]] = field(default_factory=list)

    def applies_to(self, version: tuple[int, int]) -> bool:
        for op, versions in self.conditions:
            if op == "=":
                if version not in versions:
                    return False
            elif not _COMPARE[op](version, versions[0]):
                return False
        return True

    def matches(self, test_id: str) -> bool:
        mode, _, rest = self.pattern.partition(":")
        if mode != "*" and not test_id.startswith(mode + ":"):
            return False
        bare = test_id.partition(":")[2]
        return any(fnmatch.fnmatchcase(bare, alternative) for alternative in rest.split("|"))

    def describe_versions(self) -> str:
        parts = []
        for op, versions in self.conditions:
            parts.append("py" + op + ",".join(f"{a}.{b}" for a, b in versions))
        return " ".join(parts) or "all"


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join each entry's indented continuation lines to it: [(first line number, text)]."""
    joined: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace():
            if not joined:
                raise ExclusionsError(f"line {number}: continuation line without an entry")
            first, entry = joined[-1]
            # "|<test id>" goes on with the test id; anything else after a space.
            joined[-1] = (
                first,
                entry + stripped if stripped.startswith("|") else f"{entry} {stripped}",
            )
        else:
            joined.append((number, stripped))
    return joined


def parse(text: str) -> list[Exclusion]:
    entries: list[Exclusion] = []
    for number, line in _logical_lines(text):
        head, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            raise ExclusionsError(f"line {number}: missing ' -- <reason>'")
        words = head.split()
        if len(words) < 2:
            raise ExclusionsError(f"line {number}: expected '<category> <mode>:<test id>'")
        category, pattern, options = words[0], words[1], words[2:]
        if category not in CATEGORIES:
            raise ExclusionsError(
                f"line {number}: unknown category {category!r} (one of {', '.join(CATEGORIES)})"
            )
        mode, colon, rest = pattern.partition(":")
        if not colon or not rest or (mode != "*" and mode not in MODES):
            raise ExclusionsError(
                f"line {number}: the test id must start with 'loop:', 'trio:', 'whole:' or '*:'"
            )
        entry = Exclusion(category, pattern, reason.strip(), number)
        for option in options:
            if option == "flaky":
                entry.flaky = True
                continue
            if option.startswith("timeout="):
                try:
                    entry.timeout = float(option[len("timeout=") :])
                except ValueError:
                    raise ExclusionsError(f"line {number}: bad {option!r}") from None
                continue
            match = _VERSION_RE.match(option)
            if not match:
                raise ExclusionsError(f"line {number}: unknown option {option!r}")
            op, versions_text = match.groups()
            versions = tuple(_parse_version(v) for v in versions_text.split(","))
            if op != "=" and len(versions) != 1:
                raise ExclusionsError(f"line {number}: {op} takes a single version")
            entry.conditions.append((op, versions))
        entries.append(entry)
    return entries


def load(path: Path = DEFAULT_PATH) -> list[Exclusion]:
    return parse(path.read_text(encoding="utf-8"))


class Matcher:
    """The entries that apply to one Python version, and which of them were used."""

    def __init__(self, entries: Iterable[Exclusion], version: tuple[int, int]) -> None:
        self.entries = [e for e in entries if e.applies_to(version)]
        self.used: set[int] = set()

    def find(self, test_id: str, *, mark_used: bool = True) -> Exclusion | None:
        for entry in self.entries:
            if entry.matches(test_id):
                if mark_used:
                    self.used.add(entry.line)
                return entry
        return None

    def unused(self, modes: Iterable[str]) -> list[Exclusion]:
        """Entries for the *modes* that ran that matched no test at all (stale)."""
        modes = set(modes)
        stale = []
        for entry in self.entries:
            mode = entry.pattern.partition(":")[0]
            if entry.line not in self.used and (mode == "*" or mode in modes):
                stale.append(entry)
        return stale
