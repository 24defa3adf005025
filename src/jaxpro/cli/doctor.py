"""``jaxpro doctor``: what jaxpro will run on, in one screen.

Reports jaxpro, Python and the platform; JAX, jaxlib, the backend and its
devices; the float64 policy and the global ``jax_enable_x64`` value; host
memory and CPUs; the compilation cache; and the installed version of each
engine, read from package metadata without importing the engine.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from jaxpro.cli._app import EXIT_ERROR, debug_option

__all__ = ["ENGINES", "collect", "doctor", "render"]

#: Distributions whose versions ``doctor`` reports (never imported by it).
ENGINES = (
    "numpy",
    "scipy",
    "numpyro",
    "arviz",
    "formulae",
    "diffrax",
    "jax-md",
    "jax-cfd",
    "optax",
    "orbax-checkpoint",
    "matplotlib",
    "pandas",
    "pyarrow",
)

FLOAT64_POLICY = (
    "jaxpro computes in float64 inside its own calls (jax.enable_x64) and leaves the"
    " global jax_enable_x64 setting unchanged"
)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _memory() -> dict[str, int | None]:
    try:
        import psutil

        memory = psutil.virtual_memory()
        return {"total_bytes": int(memory.total), "available_bytes": int(memory.available)}
    except Exception:  # psutil missing or unsupported platform
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            return {
                "total_bytes": page * os.sysconf("SC_PHYS_PAGES"),
                "available_bytes": page * os.sysconf("SC_AVPHYS_PAGES"),
            }
        except (ValueError, OSError, AttributeError):
            return {"total_bytes": None, "available_bytes": None}


def _cpus() -> dict[str, int | None]:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"count": os.cpu_count(), "usable": usable}


def _device(device: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": int(device.id),
        "platform": str(device.platform),
        "kind": str(getattr(device, "device_kind", "")),
    }
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend reports memory
        stats = {}
    if "bytes_limit" in stats:
        entry["memory_bytes"] = int(stats["bytes_limit"])
    return entry


def _jax() -> dict[str, Any]:
    info: dict[str, Any] = {
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "backend": None,
        "devices": [],
        "device_count": 0,
        "error": None,
        "jax_enable_x64": None,
    }
    try:
        import jax

        info["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
        info["backend"] = jax.default_backend()
        devices = jax.devices()
        info["devices"] = [_device(d) for d in devices]
        info["device_count"] = len(devices)
    except Exception as exc:  # a broken installation is exactly what doctor must report
        info["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return info


def _cache() -> dict[str, Any]:
    from jaxpro import _cache

    status = _cache.cache_status()
    env = os.environ.get(_cache.ENV_VAR)
    if status.source == "jaxpro":
        origin = f"{_cache.ENV_VAR}" if env is not None else "jaxpro default"
    elif status.source == "user":
        origin = "jax_compilation_cache_dir set by the program"
    else:
        origin = f"turned off by {_cache.ENV_VAR}={env!r}" if env is not None else "off"
    entry: dict[str, Any] = {
        "directory": status.directory,
        "enabled": status.directory is not None,
        "source": status.source,
        "origin": origin,
        "env": env,
        "files": None,
        "bytes": None,
    }
    if status.directory is not None:
        directory = Path(status.directory)
        if directory.is_dir():
            files = [p for p in directory.rglob("*") if p.is_file()]
            entry["files"] = len(files)
            entry["bytes"] = sum(p.stat().st_size for p in files)
        else:
            entry["files"], entry["bytes"] = 0, 0
    return entry


def collect() -> dict[str, Any]:
    """Everything ``doctor`` reports, as a JSON-safe dictionary."""
    import jaxpro

    jax_info = _jax()
    return {
        "jaxpro": jaxpro.__version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": platform.platform(),
        "jax": jax_info["jax"],
        "jaxlib": jax_info["jaxlib"],
        "backend": jax_info["backend"],
        "devices": jax_info["devices"],
        "device_count": jax_info["device_count"],
        "jax_error": jax_info["error"],
        "float64": {"policy": FLOAT64_POLICY, "jax_enable_x64": jax_info["jax_enable_x64"]},
        "memory": _memory(),
        "cpus": _cpus(),
        "cache": _cache(),
        "engines": {name: _version(name) for name in ENGINES},
    }


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover


def render(report: dict[str, Any]) -> str:
    """The plain-text table ``doctor`` prints."""
    rows: list[tuple[str, str]] = [
        ("jaxpro", report["jaxpro"]),
        (
            "python",
            f"{report['python']['version']} ({report['python']['implementation']},"
            f" {report['python']['executable']})",
        ),
        ("platform", report["platform"]),
        ("jax", report["jax"] or "not installed"),
        ("jaxlib", report["jaxlib"] or "not installed"),
    ]
    if report["jax_error"]:
        rows.append(("jax status", f"ERROR: {report['jax_error']}"))
    else:
        rows.append(("backend", report["backend"]))
        rows.append(("device count", str(report["device_count"])))
        for i, device in enumerate(report["devices"]):
            text = f"{device['platform']}:{device['id']} ({device['kind']})"
            if "memory_bytes" in device:
                text += f", {_size(device['memory_bytes'])}"
            rows.append(("devices" if i == 0 else "", text))
    x64 = report["float64"]["jax_enable_x64"]
    rows.append(("float64", report["float64"]["policy"]))
    rows.append(("", f"global jax_enable_x64 = {x64 if x64 is not None else 'unknown'}"))
    memory = report["memory"]
    rows.append(
        (
            "host memory",
            f"{_size(memory['total_bytes'])} total, {_size(memory['available_bytes'])} available",
        )
    )
    cpus = report["cpus"]
    usable = f" ({cpus['usable']} usable by this process)" if cpus["usable"] is not None else ""
    rows.append(("cpus", f"{cpus['count']}{usable}"))
    cache = report["cache"]
    if cache["enabled"]:
        rows.append(("compilation cache", cache["directory"]))
        rows.append(("", f"enabled, source: {cache['origin']}"))
        rows.append(("", f"{cache['files']} files, {_size(cache['bytes'])}"))
    else:
        rows.append(("compilation cache", f"disabled ({cache['origin']})"))
    rows.append(("", "set JAXPRO_CACHE_DIR=DIR to move it, JAXPRO_CACHE_DIR=off to turn it off"))
    engine_rows = [
        (name, version or "not installed") for name, version in report["engines"].items()
    ]
    width = max(len(key) for key, _ in rows + engine_rows)

    def block(title: str, items: list[tuple[str, str]]) -> list[str]:
        lines = [title, "-" * len(title)]
        lines += [f"{key:<{width}}  {value}".rstrip() for key, value in items]
        return lines

    return "\n".join(
        [*block("jaxpro doctor", rows), "", *block("engines (installed versions)", engine_rows)]
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@debug_option
def doctor(as_json: bool) -> None:
    """Show jaxpro, JAX, devices, float64, memory, cache and engine versions."""
    report = collect()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render(report))
    if report["jax_error"]:
        click.echo(f"jaxpro: error: JAX is not usable: {report['jax_error']}", err=True)
        click.get_current_context().exit(EXIT_ERROR)
