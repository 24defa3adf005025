"""``jaxpro.core.lint``: the linter's public face (files and folders, selection, ``# noqa``).

Rule selection works as in ruff: ``select``/``ignore`` take codes or code
prefixes (``"JX1"`` is every ``JX1nn`` rule). ``# noqa`` on a finding's line
silences every rule there, ``# noqa: JX101, JX103`` only those.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxpro.core._lint import Finding, analyse
from jaxpro.core._lint_rules import RULES
from jaxpro.errors import InputError

__all__ = ["LintReport", "lint", "lint_source", "selected_codes"]

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Za-z]+[0-9]+(?:\s*,\s*[A-Za-z]+[0-9]+)*))?",
                   re.IGNORECASE)  # fmt: skip
_SKIPPED_DIRECTORIES = {"__pycache__", "node_modules", "site-packages"}


@dataclass(frozen=True)
class LintReport:
    """What :func:`lint` found.

    Attributes:
        findings: every finding, sorted by path, line and column.
        files: Python files read.
        lines: their lines, in all.
        seconds: wall time of the run.
        codes: the rule codes that were checked.
    """

    findings: tuple[Finding, ...]
    files: int
    lines: int
    seconds: float
    codes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def counts(self) -> dict[str, int]:
        """Findings per rule code (codes without findings left out)."""
        out: dict[str, int] = {}
        for finding in self.findings:
            out[finding.code] = out.get(finding.code, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> str:
        lines = [finding.format() for finding in self.findings]
        per_rule = ", ".join(f"{code} {count}" for code, count in self.counts().items())
        total = len(self.findings)
        lines.append(
            f"Found {total} finding{'s' if total != 1 else ''}"
            + (f" ({per_rule})" if per_rule else "")
            + f" in {self.files} file{'s' if self.files != 1 else ''}, {self.lines} lines"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "counts": self.counts(),
            "files": self.files,
            "lines": self.lines,
            "seconds": self.seconds,
            "codes": list(self.codes),
        }


def selected_codes(
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    *,
    names: tuple[str, str] = ("select", "ignore"),
) -> tuple[str, ...]:
    """The rule codes that ``select`` (default: all) minus ``ignore`` leave.

    Args:
        select, ignore: rule codes or prefixes.
        names: how errors name the two arguments (the CLI says ``--select``).

    Raises:
        InputError: an entry matches no rule (named as in ``names``).
    """

    def expand(entries: Iterable[str] | None, argument: str) -> set[str]:
        if entries is None:
            return set()
        if isinstance(entries, str):
            entries = [entries]
        codes: set[str] = set()
        for entry in entries:
            prefix = str(entry).strip().upper()
            matched = {code for code in RULES if prefix and code.startswith(prefix)}
            if not matched:
                raise InputError(
                    f"no rule has the code {entry!r} (jaxpro lint --rules lists them)",
                    argument=argument,
                )
            codes |= matched
        return codes

    chosen = expand(select, names[0]) if select is not None else set(RULES)
    return tuple(sorted(chosen - expand(ignore, names[1])))


def _silenced(finding: Finding, lines: Sequence[str]) -> bool:
    if not 1 <= finding.line <= len(lines):
        return False
    match = _NOQA.search(lines[finding.line - 1])
    if match is None:
        return False
    codes = match.group("codes")
    return codes is None or finding.code in {c.strip().upper() for c in codes.split(",")}


def lint_source(
    source: str,
    path: str = "<source>",
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> list[Finding]:
    """Findings in one piece of Python source.

    Args:
        source: the code (it is parsed, never run).
        path: the name findings carry.
        select, ignore: rule codes or prefixes (see :func:`selected_codes`).

    Raises:
        InputError: the source does not parse (the message gives path:line:col),
            or a rule code is unknown.
    """
    codes = set(selected_codes(select, ignore))
    return _lint_text(source, path, codes)


def _lint_text(source: str, path: str, codes: set[str]) -> list[Finding]:
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        where = f"{path}:{error.lineno or 0}:{error.offset or 0}"
        raise InputError(f"{where}: cannot parse: {error.msg}", argument="PATH") from None
    lines = source.splitlines()
    return [
        finding
        for finding in analyse(tree, path)
        if finding.code in codes and not _silenced(finding, lines)
    ]


def _python_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for candidate in sorted(path.rglob("*.py")):
                parts = candidate.relative_to(path).parts[:-1]
                if any(p.startswith(".") or p in _SKIPPED_DIRECTORIES for p in parts):
                    continue
                files.append(candidate)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError("no such file or directory", argument="PATH", received=str(entry))
    return files


def lint(
    paths: str | Path | Sequence[str | Path],
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
) -> LintReport:
    """Lint Python files and folders (searched for ``*.py``, hidden folders skipped).

    Args:
        paths: files or folders.
        select, ignore: rule codes or prefixes (see :func:`selected_codes`).

    Returns:
        A :class:`LintReport`; ``report.ok`` is True when nothing was found.

    Raises:
        InputError: a path does not exist, a file does not parse or is not
            UTF-8 text, or a rule code is unknown.
    """
    start = time.perf_counter()
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise InputError("give at least one file or folder", argument="PATH")
    codes = set(selected_codes(select, ignore))
    findings: list[Finding] = []
    files = _python_files(paths)
    lines = 0
    for file in files:
        try:
            source = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError("is not UTF-8 text", argument="PATH", received=str(file)) from None
        lines += source.count("\n") + (not source.endswith("\n") and bool(source))
        findings += _lint_text(source, str(file), codes)
    return LintReport(
        findings=tuple(sorted(findings)),
        files=len(files),
        lines=lines,
        seconds=time.perf_counter() - start,
        codes=tuple(sorted(codes)),
    )
