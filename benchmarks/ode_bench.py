"""ODE benchmarks (issue 17): a batch of Lotka-Volterra problems and Robertson's stiff kinetics.

``--batch``: 1,000 Lotka-Volterra initial conditions (a = 1.5, b = 1, c = 3, d = 1;
x0, y0 uniform in [1, 10]), t in [0, 20], rtol 1e-6, atol 1e-9, 201 output
times: ``jaxpro.ode.solve(..., batch=True)`` against a loop of SciPy's
``solve_ivp(method="RK45")`` over the same problems. jaxpro runs in a fresh
process with the compilation cache off (cold = its first call, compile included;
warm = best of 3 later calls); SciPy's loop is timed once (it has no compile).
Accuracy: the largest difference between the two, relative to the state.
Both parts also time a second fresh process whose first call finds the programs a
first process compiled in a new persistent compilation cache (what a user's
second run of a script sees).

``--robertson``: Robertson to t = 1e5 (rtol 1e-6, atol 1e-10): jaxpro's auto
choice (cold: its first call, compilation cache off; warm: best of 5 later calls,
which remember that the function is stiff) against SciPy's Radau, BDF and LSODA
and SUNDIALS CVODE (``scikit-sundae``, reported as not installed when missing),
warm time (best of 5) and the error
against the reference state scaled by the tolerance (max over components of
``|y - y_ref| / (rtol |y_ref| + atol)``; <= 1 means the tolerance was met).

Usage: ``python benchmarks/ode_bench.py --batch --robertson [--no-write]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULT = "ODE_BENCH_RESULT "
MARKERS = ("<!-- ode_bench:begin -->", "<!-- ode_bench:end -->")
MEMBERS, T_END, RTOL, ATOL = 1000, 20.0, 1e-6, 1e-9
PARAMS = (1.5, 1.0, 3.0, 1.0)
ROBERTSON_1E5 = np.array([0.017865921142101823, 7.274751468437285e-08, 0.9821340061103849])
R_RTOL, R_ATOL = 1e-6, 1e-10


def starts() -> np.ndarray:
    return np.random.default_rng(7).uniform(1.0, 10.0, size=(MEMBERS, 2))


def lv_numpy(t, y):
    a, b, c, d = PARAMS
    return [a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]]


def worker_batch() -> dict:
    """jaxpro's batch in this (fresh) process: cold first call, then warm."""
    import jax.numpy as jnp

    import jaxpro.ode as ode

    def lv(t, y, args):
        a, b, c, d = args
        return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])

    t_eval = np.linspace(0.0, T_END, 201)
    y0 = jnp.asarray(starts())
    start = time.perf_counter()
    first = ode.solve(lv, (0.0, T_END), y0, t_eval=t_eval, args=PARAMS, batch=True, rtol=RTOL,
                      atol=ATOL)  # fmt: skip
    cold = time.perf_counter() - start
    # the engines the first call imported, timed in a fresh interpreter that has
    # imported what this one had (the issue counts compilation, not imports; SciPy's
    # loop is timed after its import)
    imports = subprocess.run([sys.executable, "-c", "import time, jax.numpy, jaxpro.ode;"
                              " s = time.perf_counter(); import diffrax, optimistix, lineax;"
                              " print(time.perf_counter() - s)"],
                             capture_output=True, text=True, check=True)  # fmt: skip
    warm = []
    for _ in range(3):
        start = time.perf_counter()
        run = ode.solve(lv, (0.0, T_END), y0, t_eval=t_eval, args=PARAMS, batch=True,
                        rtol=RTOL, atol=ATOL)  # fmt: skip
        warm.append(time.perf_counter() - start)
    np.save(os.environ["ODE_BENCH_OUT"], np.asarray(run.ys))
    return {
        "cold_s": cold,
        "imports_s": float(imports.stdout.split()[-1]),
        "compile_s": first.timings.compile,
        "warm_s": min(warm),
        "method": run.plan.method,
        "success": run.success,
    }


def worker_robertson() -> dict:
    """jaxpro's first Robertson solve in this (fresh) process."""
    import jax.numpy as jnp

    import jaxpro.ode as ode

    start = time.perf_counter()
    first = ode.solve(_rob, (0.0, 1e5), jnp.array([1.0, 0.0, 0.0]), rtol=R_RTOL, atol=R_ATOL,
                      t_eval=[1e5])  # fmt: skip
    return {"cold_s": time.perf_counter() - start, "compile_s": first.timings.compile}


def _rob(t, y, args):
    import jax.numpy as jnp

    return jnp.array([-0.04 * y[0] + 1e4 * y[1] * y[2],
                      0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                      3e7 * y[1] ** 2])  # fmt: skip


def fresh(worker: str, cache: str, out: str = "") -> dict:
    """Run ``--worker WORKER`` in a fresh process with ``JAXPRO_CACHE_DIR=cache``."""
    env = dict(os.environ, JAXPRO_CACHE_DIR=cache, ODE_BENCH_OUT=out)
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", worker],
                          capture_output=True, text=True, env=env, timeout=1800)  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(line[len(RESULT) :])


def second_process(worker: str, out: str = "") -> float | None:
    """The cold time of a second fresh process that finds the first one's compiled
    programs in a new, empty persistent compilation cache (what a user's second run sees)."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        fresh(worker, cache, out)
        return fresh(worker, cache, out).get("cold_s")


def batch() -> dict:
    import tempfile

    from scipy.integrate import solve_ivp

    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "ys.npy")
        mine = fresh("batch", "off", out)
        if "error" in mine:
            return mine
        ys = np.load(out)
        mine["cached_cold_s"] = second_process("batch", str(Path(folder) / "again.npy"))
    t_eval = np.linspace(0.0, T_END, 201)
    start = time.perf_counter()
    theirs = np.stack([
        solve_ivp(lv_numpy, (0.0, T_END), y, method="RK45", t_eval=t_eval, rtol=RTOL,
                  atol=ATOL).y.T
        for y in starts()
    ])  # fmt: skip
    scipy_s = time.perf_counter() - start
    gap = float(np.max(np.abs(ys - theirs) / np.maximum(np.abs(theirs), 1e-3)))
    return {**mine, "scipy_s": scipy_s, "gap": gap}


def robertson() -> list[dict]:
    # cold means compiling: the persistent cache stays off in this process (jaxpro reads
    # the variable when it first enables the cache, after this)
    os.environ["JAXPRO_CACHE_DIR"] = "off"
    import jax.numpy as jnp
    from scipy.integrate import solve_ivp

    import jaxpro.ode as ode

    def rob(t, y, args):
        return jnp.array([-0.04 * y[0] + 1e4 * y[1] * y[2],
                          0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                          3e7 * y[1] ** 2])  # fmt: skip

    def rob_np(t, y):
        return [-0.04 * y[0] + 1e4 * y[1] * y[2],
                0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2]  # fmt: skip

    def error(y) -> float:
        return float(np.max(np.abs(np.asarray(y) - ROBERTSON_1E5)
                            / (R_RTOL * np.abs(ROBERTSON_1E5) + R_ATOL)))  # fmt: skip

    def best(fn, repeats=5) -> tuple[float, object]:
        times, out = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
        return min(times), out

    rows = []
    y0 = [1.0, 0.0, 0.0]
    start = time.perf_counter()
    first = ode.solve(rob, (0.0, 1e5), jnp.array(y0), rtol=R_RTOL, atol=R_ATOL,
                      t_eval=[1e5])  # fmt: skip
    cold = time.perf_counter() - start
    warm, sol = best(lambda: ode.solve(rob, (0.0, 1e5), jnp.array(y0), rtol=R_RTOL, atol=R_ATOL,
                                       t_eval=[1e5]))  # fmt: skip
    rows.append({"engine": f"jaxpro auto ({sol.plan.method})", "warm_s": warm, "cold_s": cold,
                 "error": error(sol.ys[-1]), "compile_s": first.timings.compile,
                 "cached_cold_s": second_process("robertson")})  # fmt: skip
    for method in ("LSODA", "Radau", "BDF"):
        warm, out = best(lambda m=method: solve_ivp(rob_np, (0.0, 1e5), y0, method=m, rtol=R_RTOL,
                                                    atol=R_ATOL, t_eval=[1e5]))  # fmt: skip
        rows.append({"engine": f"scipy {method}", "warm_s": warm, "error": error(out.y[:, -1])})
    try:
        from sksundae.cvode import CVODE

        def rhs(t, y, yp):
            yp[:] = rob_np(t, y)

        solver = CVODE(rhs, method="BDF", linsolver="dense", rtol=R_RTOL, atol=R_ATOL)
        warm, out = best(lambda: solver.solve(np.array([0.0, 1e5]), np.array(y0)))
        rows.append({"engine": "SUNDIALS CVODE (BDF)", "warm_s": warm, "error": error(out.y[-1])})
    except ImportError as missing:
        rows.append({"engine": "SUNDIALS CVODE", "error_text": f"not installed: {missing}"})
    return rows


def report(machine: dict, batched: dict | None, rows: list[dict] | None) -> str:
    import fit_bench as fb

    lines = ["## Differential equations (`ode_bench.py`)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores; jax"
             f" {machine['versions']['jax']}. Run {machine['date']}.", ""]  # fmt: skip
    if batched is not None:
        lines += [f"Batch: {MEMBERS} Lotka-Volterra initial conditions to t = {T_END:g}, rtol"
                  f" {RTOL:g}, 201 output times; jaxpro `solve(..., batch=True)` in a fresh"
                  " process without the compilation cache against a loop of SciPy"
                  " `solve_ivp(RK45)`.", "",
                  "| jaxpro warm | jaxpro cold (compile) | SciPy loop | warm ratio | cold ratio |"
                  " cold, second process (compilation cache) | largest relative gap |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        if "error" in batched:
            lines.append(f"| not run: {batched['error']} | | | | | | |")
        else:
            again = batched.get("cached_cold_s")
            cached = (f"{fb.fmt_time(again)} ({batched['scipy_s'] / again:.1f}×)" if again
                      else "not measured")  # fmt: skip
            own = batched["cold_s"] - batched["imports_s"]
            lines.append(
                f"| {fb.fmt_time(batched['warm_s'])} | {fb.fmt_time(batched['cold_s'])}"
                f" ({fb.fmt_time(batched['compile_s'])}) | {fb.fmt_time(batched['scipy_s'])} |"
                f" {batched['scipy_s'] / batched['warm_s']:.0f}× |"
                f" {batched['scipy_s'] / batched['cold_s']:.1f}× | {cached} | {batched['gap']:.1e} |"
            )
            lines += ["", f"Of the first call, {fb.fmt_time(batched['imports_s'])} is importing"
                      " Diffrax, Optimistix and Lineax (timed in a fresh interpreter after JAX and"
                      " jaxpro.ode);"
                      f" without it the first call takes {fb.fmt_time(own)},"
                      f" {batched['scipy_s'] / own:.1f}× the loop."]  # fmt: skip
        lines.append("")
    if rows is not None:
        lines += [f"Robertson to t = 1e5, rtol {R_RTOL:g}, atol {R_ATOL:g}; error = max over"
                  " components of |y - y_ref| / (rtol |y_ref| + atol) (<= 1: tolerance met).", "",
                  "| engine | warm (best of 5) | error / tolerance | note |", "|---|---|---|---|"]  # fmt: skip
        for r in rows:
            if "error_text" in r:
                lines.append(f"| {r['engine']} | — | — | {r['error_text']} |")
                continue
            note = (f"cold {fb.fmt_time(r['cold_s'])} (compile {fb.fmt_time(r['compile_s'])})"
                    if "cold_s" in r else "")  # fmt: skip
            if r.get("cached_cold_s"):
                note += f"; a second process (compilation cache) {fb.fmt_time(r['cached_cold_s'])}"
            lines.append(f"| {r['engine']} | {fb.fmt_time(r['warm_s'])} | {r['error']:.2g} |"
                         f" {note} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=("batch", "robertson"))
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--robertson", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        work = worker_batch if args.worker == "batch" else worker_robertson
        print(RESULT + json.dumps(work()), flush=True)
        return
    if not (args.batch or args.robertson):
        parser.error("choose --batch and/or --robertson")
    sys.path.insert(0, str(HERE))
    import fit_bench as fb

    text = report(fb.machine_info(), batch() if args.batch else None,
                  robertson() if args.robertson else None)  # fmt: skip
    print(text)
    if not args.no_write:
        fb.write_section(text, markers=MARKERS)


if __name__ == "__main__":
    main()
