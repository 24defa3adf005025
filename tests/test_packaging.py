"""The test gate's lock: exact versions, consistent with pyproject.toml, the pins and the README.

Oracles: pyproject.toml's declared dependencies, requirements/pins.txt, the
README's stated versions, and importlib.metadata for what is installed.
"""

import importlib.metadata
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LOCK = ROOT / "requirements" / "lock-py312-linux.txt"
PINS = ROOT / "requirements" / "pins.txt"
LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = LINE.match(line)
        assert match, f"{path.name}: not an exact 'name==version' line: {raw!r}"
        out[_normal(match.group(1))] = match.group(2)
    return out


def _requirement_name(requirement: str) -> str:
    return _normal(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))


def test_lock_pins_every_dependency_and_test_tool_exactly():
    locked = _entries(LOCK)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    missing = sorted({_requirement_name(r) for r in wanted} - set(locked))
    assert not missing, f"run `make lock`: {missing} not in {LOCK.name}"


def test_lock_holds_the_pins():
    locked, pins = _entries(LOCK), _entries(PINS)
    assert pins, "pins.txt is empty"
    for name, version in pins.items():
        assert locked.get(name) == version, f"{name}: lock {locked.get(name)}, pin {version}"


def test_readme_names_the_locked_jax():
    locked = _entries(LOCK)
    readme = (ROOT / "README.md").read_text()
    assert f"**jax and jaxlib {locked['jax']}**" in readme
    assert locked["jax"] == locked["jaxlib"]


@pytest.mark.skipif(
    bool(os.environ.get("JAXPRO_UNLOCKED")), reason="make test-latest: the newest releases"
)
def test_the_gate_runs_the_locked_versions():
    """`make test` installs the lock: what runs is what the lock (and the README) says."""
    locked = _entries(LOCK)
    for name in ("jax", "jaxlib", "numpy", "scipy", "numpyro"):
        assert importlib.metadata.version(name) == locked[name], name
