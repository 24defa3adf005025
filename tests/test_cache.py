"""The persistent compilation cache (jaxpro._cache), each check in a fresh process.

The cache is switched on once per process, so every check runs its own Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

STATUS = """
import json
from jaxpro._cache import cache_status
s = cache_status()
print(json.dumps({"directory": s.directory, "source": s.source, "active": s.active}))
"""

FIRST_CALL = """
import json, time
import numpy as np
import jax.numpy as jnp
import jaxpro

x = np.linspace(0.0, 4.0, 50)
y = 2.0 * np.exp(-0.7 * x) + 0.01 * np.cos(7 * x)
start = time.perf_counter()
popt, pcov = jaxpro.curve_fit(lambda x, a, b: a * jnp.exp(-b * x), x, y, p0=[1.0, 1.0])
first = time.perf_counter() - start
import jax
print(json.dumps({
    "first_call_s": first,
    "popt": [float(v) for v in popt],
    "jax_cache_dir": jax.config.jax_compilation_cache_dir,
    "status": jaxpro._cache.cache_status().source,
}))
"""


def run_script(script: str, env: dict[str, str | None]) -> dict:
    """Run ``script`` in a fresh interpreter with ``env`` applied (None removes a variable)."""
    environment = dict(os.environ)
    for key, value in env.items():
        if value is None:
            environment.pop(key, None)
        else:
            environment[key] = value
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def files_in(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def test_status_follows_jaxpro_cache_dir(tmp_path):
    status = run_script(STATUS, {"JAXPRO_CACHE_DIR": str(tmp_path / "xla")})
    assert status == {"directory": str(tmp_path / "xla"), "source": "jaxpro", "active": False}


@pytest.mark.parametrize("value", ["off", "OFF", "0", "none", "false", ""])
def test_status_off(value):
    status = run_script(STATUS, {"JAXPRO_CACHE_DIR": value})
    assert status == {"directory": None, "source": "off", "active": False}


def test_status_default_is_a_user_cache_directory(tmp_path):
    status = run_script(STATUS, {"JAXPRO_CACHE_DIR": None, "XDG_CACHE_HOME": str(tmp_path)})
    assert status["directory"] == str(tmp_path / "jaxpro" / "xla")
    assert status["source"] == "jaxpro"


def test_status_does_not_create_the_directory(tmp_path):
    run_script(STATUS, {"JAXPRO_CACHE_DIR": str(tmp_path / "xla")})
    assert not (tmp_path / "xla").exists()


def test_import_does_not_switch_the_cache_on(tmp_path):
    script = "import jaxpro, jax, json; print(json.dumps(jax.config.jax_compilation_cache_dir))"
    assert run_script(script, {"JAXPRO_CACHE_DIR": str(tmp_path / "xla")}) is None
    assert not (tmp_path / "xla").exists()


def test_users_own_jax_cache_setting_is_kept(tmp_path):
    script = f"""
    import json, jax
    jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "mine")!r})
    from jaxpro._cache import cache_status, enable_persistent_cache
    before = cache_status()
    after = enable_persistent_cache()
    print(json.dumps([before.source, after.source, after.directory,
                      jax.config.jax_compilation_cache_dir]))
    """
    mine = str(tmp_path / "mine")
    assert run_script(script, {"JAXPRO_CACHE_DIR": str(tmp_path / "ours")}) == [
        "user",
        "user",
        mine,
        mine,
    ]


def test_cache_off_leaves_jax_configuration_alone(tmp_path):
    out = run_script(FIRST_CALL, {"JAXPRO_CACHE_DIR": "off", "XDG_CACHE_HOME": str(tmp_path)})
    assert out["jax_cache_dir"] is None
    assert out["status"] == "off"
    assert not any(tmp_path.iterdir())


def test_second_process_skips_recompiling(tmp_path):
    cache = tmp_path / "xla"
    env = {"JAXPRO_CACHE_DIR": str(cache)}
    first = run_script(FIRST_CALL, env)
    written = files_in(cache)
    second = run_script(FIRST_CALL, env)
    print(
        f"first call: {first['first_call_s']:.3f} s (cold), "
        f"{second['first_call_s']:.3f} s (second process, {len(written)} cache files)"
    )
    assert first["jax_cache_dir"] == str(cache)
    assert written, "the first process wrote nothing to the cache directory"
    assert second["popt"] == pytest.approx(first["popt"], rel=1e-12)
    assert second["first_call_s"] < first["first_call_s"]


def test_second_process_adds_no_cache_entries(tmp_path):
    cache = tmp_path / "xla"
    env = {"JAXPRO_CACHE_DIR": str(cache)}
    run_script(FIRST_CALL, env)
    written = files_in(cache)
    run_script(FIRST_CALL, env)
    assert files_in(cache) == written


def test_in_process_executables_are_bounded_least_recently_used_first(monkeypatch):
    from jaxpro import _cache

    monkeypatch.setattr(_cache, "MAX_EXECUTABLES", 2)
    monkeypatch.setattr(_cache, "_executables", _cache.collections.OrderedDict())
    monkeypatch.setattr(_cache, "enable_persistent_cache", lambda: None)
    built = []

    def builder(name):
        def build():
            built.append(name)
            return f"executable {name}"

        return build

    assert _cache.compiled("a", builder("a"))[0] == "executable a"
    _cache.compiled("b", builder("b"))
    assert _cache.compiled("a", builder("a"))[1] == 0.0, "a hit: no compilation"
    _cache.compiled("c", builder("c"))  # evicts b, the least recently used
    assert list(_cache._executables) == ["a", "c"]
    _cache.compiled("b", builder("b"))
    assert built == ["a", "b", "c", "b"], "b was compiled again, a never"


def test_threads_asking_for_the_same_program_compile_it_once(monkeypatch):
    """fit_many's host threads start calls of one program together: one compilation."""
    import threading
    import time

    from jaxpro import _cache

    monkeypatch.setattr(_cache, "_executables", _cache.collections.OrderedDict())
    monkeypatch.setattr(_cache, "enable_persistent_cache", lambda: None)
    built = []
    entered = threading.Barrier(4)

    def build():
        built.append(threading.get_ident())
        time.sleep(0.2)  # the others arrive while this compiles
        return "executable"

    results = []

    def ask():
        entered.wait()
        results.append(_cache.compiled("key", build))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1, "compiled once"
    assert [r[0] for r in results] == ["executable"] * 4
    assert not _cache._building, "no compilation left marked as running"
