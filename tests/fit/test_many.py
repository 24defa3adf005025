"""fit_many: many independent curves in one vectorised solve.

Oracle: each curve fitted on its own by scipy.optimize.curve_fit (tight
tolerances), and NumPy for the derived statistics.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so

jax.config.update("jax_enable_x64", True)

import jaxpro  # noqa: E402
from jaxpro.errors import InputError  # noqa: E402
from jaxpro.fit import _many, _many_result  # noqa: E402

TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15}
M, N = 60, 120


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def decay_np(x, a, b, c):
    return a * np.exp(-b * x) + c


@pytest.fixture(scope="module")
def curves():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 5, N)
    truth = np.stack([rng.uniform(1, 3, M), rng.uniform(0.5, 2, M), rng.uniform(-0.5, 0.5, M)], 1)
    Y = decay_np(x, *truth.T[:, :, None]) + rng.normal(0, 0.05, (M, N))
    return x, Y, truth


def _scipy(x, y, **kw):
    popt, pcov = so.curve_fit(decay_np, x, y, **TIGHT, **kw)
    return popt, np.sqrt(np.diag(pcov))


def test_matches_one_scipy_fit_per_curve(curves):
    x, Y, _ = curves
    result = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=16)
    assert result.converged.all(), result.messages
    for i in range(0, M, 7):
        popt, perr = _scipy(x, Y[i], p0=(1.5, 1.0, 0.0))
        # SciPy stops ~1e-7 short of the optimum: compare on the scale of the standard errors
        np.testing.assert_array_less(
            np.abs(result.values[i] - popt), 1e-5 * perr, err_msg=f"curve {i}"
        )
        np.testing.assert_allclose(result.stderr[i], perr, rtol=1e-5, err_msg=f"curve {i}")
    assert result.values.shape == (M, 3) and result.names == ("a", "b", "c")


def test_batch_size_does_not_change_the_answer(curves):
    x, Y, _ = curves
    one = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=M)
    many = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=7)
    np.testing.assert_allclose(one.values, many.values, rtol=1e-12)


def test_calls_over_windows_of_the_data_give_the_same_answer(curves, monkeypatch):
    x, Y, _ = curves
    whole = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    # 60 curves in 4 calls of 15, each over a view of 16 rows (0-15, 15-30,
    # 30-45, then 44-59 of which 45-59 are to do)
    monkeypatch.setattr(_many, "CALL_CURVES", 16)
    split = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    # different programs (call widths), so values within 1e-12; the evaluation counts and
    # statuses are discrete and equal: a rounding-level difference could move them only
    # by landing exactly on a stopping threshold, and none of these curves sits on one
    np.testing.assert_allclose(split.values, whole.values, rtol=1e-12)
    np.testing.assert_array_equal(split.nfev, whole.nfev)
    np.testing.assert_array_equal(split.status, whole.status)


def test_host_threads_give_the_same_answers(curves, monkeypatch):
    """Calls shared between host threads (one per core on a single CPU device)."""
    x, Y, _ = curves
    monkeypatch.setattr(_many, "_workers", lambda devices, curves: 1)
    alone = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    monkeypatch.setattr(_many, "_workers", lambda devices, curves: 3)
    monkeypatch.setattr(_many, "CALL_CURVES", 16)  # several calls per thread
    threaded = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    assert threaded.plan.settings["host_threads"] == 3
    assert any("3 host threads" in reason for reason in threaded.plan.reasons)
    # values within 1e-12 (different call widths); counts discrete, as in the test above
    np.testing.assert_allclose(threaded.values, alone.values, rtol=1e-12)
    np.testing.assert_array_equal(threaded.nfev, alone.nfev)
    np.testing.assert_array_equal(threaded.status, alone.status)


def test_one_host_thread_per_core_only_on_a_single_cpu_device(monkeypatch):
    monkeypatch.setattr(_many.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert _many._workers(1, 100_000) == 4
    assert _many._workers(1, 600) == 2, "at least MIN_CURVES_PER_WORKER curves each"
    assert _many._workers(1, 10) == 1
    assert _many._workers(2, 100_000) == 1, "several devices split each call already"


def test_reused_slots_give_each_curve_its_own_fit(curves):
    """A finished curve's slot goes to the next one in the queue.

    Two slots for 12 curves, one of them started far away (many more
    iterations): every curve equals its fit alone (values rtol 1e-12, the same
    evaluation count), so no slot carried anything over from its previous curve.
    """
    x, Y, _ = curves
    Y = Y[:12].copy()
    p0 = np.tile([1.5, 1.0, 0.0], (12, 1))
    p0[0] = (40.0, 9.0, 5.0)
    queued = jaxpro.fit_many(decay, x, Y, p0=p0, batch_size=2)
    assert queued.nfev[0] > queued.nfev[1:].max(), "the far start should take longest"
    for i in range(12):
        alone = jaxpro.fit_many(decay, x, Y[i : i + 1], p0=p0[i])
        np.testing.assert_allclose(queued.values[i], alone.values[0], rtol=1e-12, err_msg=str(i))
        assert queued.nfev[i] == alone.nfev[0], i


FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys
    import numpy as np, jax, jax.numpy as jnp
    import jaxpro
    def decay(x, a, b, c):
        return a * jnp.exp(-b * x) + c
    data = np.load(sys.argv[1])
    result = jaxpro.fit_many(decay, data["x"], data["Y"], p0=(1.5, 1.0, 0.0), batch_size=8)
    print(json.dumps({"devices": jax.device_count(), "values": result.values.tolist(),
                      "nfev": result.nfev.tolist(), "stderr": result.stderr.tolist()}))
    """
)


def test_four_devices_equal_one_device(curves, tmp_path):
    x, Y, _ = curves
    Y = Y[:50]  # not a multiple of the device count
    np.savez(tmp_path / "curves.npz", x=x, Y=Y)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES, str(tmp_path / "curves.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    single = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    assert sharded["devices"] == 4
    np.testing.assert_allclose(sharded["values"], single.values, rtol=1e-10)
    np.testing.assert_allclose(sharded["stderr"], single.stderr, rtol=1e-8)
    np.testing.assert_array_equal(sharded["nfev"], single.nfev)  # discrete: see above


def test_ragged_lengths_and_missing_points(curves):
    x, Y, _ = curves
    Y = Y.copy()
    Y[3, 80:] = np.nan  # a shorter curve
    mask = np.ones_like(Y, dtype=bool)
    mask[5, ::2] = False  # every other point ignored
    result = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), mask=mask)
    np.testing.assert_array_equal(result.n[[3, 5, 0]], [80, N // 2, N])
    popt3, _ = _scipy(x[:80], Y[3, :80], p0=(1.5, 1.0, 0.0))
    popt5, _ = _scipy(x[1::2], Y[5, 1::2], p0=(1.5, 1.0, 0.0))
    np.testing.assert_allclose(result.values[3], popt3, rtol=1e-7)
    np.testing.assert_allclose(result.values[5], popt5, rtol=1e-7)


def test_per_curve_x_sigma_bounds_and_starts(curves):
    _, Y, truth = curves
    rng = np.random.default_rng(1)
    X = np.sort(rng.uniform(0, 5, (M, N)), axis=1)
    Y = decay_np(X, *truth.T[:, :, None]) + rng.normal(0, 0.05, (M, N))
    sigma = rng.uniform(0.03, 0.08, (M, N))
    p0 = truth * np.array([0.9, 0.7, 0.9])
    upper_b = np.where(
        np.arange(M) % 2 == 0, 10.0, truth[:, 1] * 0.8
    )  # odd curves: b capped below truth
    result = jaxpro.fit_many(
        decay, X, Y, p0=p0, sigma=sigma, bounds={"b": (0.0, upper_b)}, absolute_sigma=True
    )
    assert result.plan.method == "trf"
    for i in (0, 1, 10, 11):
        popt, pcov = so.curve_fit(
            decay_np,
            X[i],
            Y[i],
            p0=p0[i],
            sigma=sigma[i],
            absolute_sigma=True,
            bounds=([-np.inf, 0.0, -np.inf], [np.inf, upper_b[i], np.inf]),
            x_scale="jac",
            **TIGHT,
        )
        np.testing.assert_allclose(result.values[i], popt, rtol=1e-6, err_msg=f"curve {i}")
        np.testing.assert_allclose(result.stderr[i], np.sqrt(np.diag(pcov)), rtol=1e-4)
    assert np.allclose(result.values[1::2, 1], upper_b[1::2], rtol=1e-9), (
        "capped curves end on the bound"
    )


def test_expression_model_and_statistics(curves):
    x, Y, _ = curves
    result = jaxpro.fit_many("a*exp(-b*x) + c", x, Y, p0={"a": 1.5, "b": 1.0, "c": 0.0})
    r = Y - decay_np(x, *result.values.T[:, :, None])
    np.testing.assert_allclose(result.chi2, np.sum(r**2, axis=1), rtol=1e-10)
    np.testing.assert_allclose(result.reduced_chi2, result.chi2 / (N - 3), rtol=1e-12)
    ss_tot = np.sum((Y - Y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    np.testing.assert_allclose(result.r_squared, 1 - result.chi2 / ss_tot, rtol=1e-10)
    from scipy.stats import t

    half = t.ppf(0.975, N - 3) * result.stderr
    np.testing.assert_allclose(result.ci_upper - result.values, half, rtol=1e-12)


def test_too_few_points_is_reported_per_curve(curves):
    x, Y, _ = curves
    Y = Y[:4].copy()
    Y[2, 2:] = np.nan  # two points for three parameters
    result = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0))
    assert result.status[2] == -4 and not result.converged[2]
    assert "Too few" in result.messages[2]
    assert result.converged[[0, 1, 3]].all()


def test_reports(curves, tmp_path):
    x, Y, _ = curves
    result = jaxpro.fit_many(decay, x, Y[:20], p0=(1.5, 1.0, 0.0))
    text = result.summary()
    assert "20 curves: 20 converged" in text and "median" in text
    frame = result.to_frame()
    assert list(frame.columns[:2]) == ["a", "a_stderr"] and len(frame) == 20
    payload = json.loads(result.to_json())
    assert payload["curves"] == 20 and len(payload["values"]) == 20
    result.save(tmp_path)
    assert (tmp_path / "result.json").exists() and (tmp_path / "fit_many.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"Y": np.ones(5)}, "Y"),
        ({"x": np.ones(7)}, "x"),
        ({"p0": (1.0, 2.0)}, "p0"),
        ({"sigma": -np.ones(N)}, "sigma"),
        ({"mask": np.ones((2, 2))}, "mask"),
        ({"bounds": {"d": (0, 1)}}, "bounds"),
        ({"bounds": {"b": (2.0, 1.0)}}, "bounds"),
        ({"p0": (1.5, 5.0, 0.0), "bounds": {"b": (0.0, 2.0)}}, "p0"),
        ({"method": "lm", "bounds": {"b": (0.0, 2.0)}}, "method"),
    ],
)
def test_bad_input_names_the_argument(curves, kwargs, argument):
    x, Y, _ = curves
    call = {"x": x, "Y": Y[:3], "p0": (1.5, 1.0, 0.0), **kwargs}
    with pytest.raises(InputError) as info:
        jaxpro.fit_many(decay, call.pop("x"), call.pop("Y"), **call)
    assert info.value.argument == argument, str(info.value)


def test_two_devices_give_the_same_answers(curves, tmp_path):
    """Fits split over two CPU devices (each running its own loop) equal one device."""
    import os
    import subprocess
    import sys
    import textwrap

    x, Y, _ = curves
    np.save(tmp_path / "Y.npy", Y)
    script = textwrap.dedent(
        f"""
        import json, numpy as np, jax, jax.numpy as jnp, jaxpro
        jaxpro.use_cpu_cores(2)
        Y = np.load("{tmp_path}/Y.npy")
        x = np.linspace(0, 5, Y.shape[1])
        def decay(x, a, b, c):
            return a * jnp.exp(-b * x) + c
        r = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=16)
        print(json.dumps({{"devices": jax.device_count(), "values": r.values.tolist()}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    single = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=16)
    assert payload["devices"] == 2
    np.testing.assert_allclose(payload["values"], single.values, rtol=1e-12)


def test_curves_where_lm_runs_out_are_retried_with_trf(curves):
    """Compact LM, then the full LM for what it gave up on, then TRF for what LM could not finish.

    The retries gather the failed rows (not a window): each equals its TRF fit alone.
    """
    x, Y, _ = curves
    Y = Y[:10]
    p0 = np.tile([1.5, 1.0, 0.0], (10, 1))
    p0[[2, 7]] = (40.0, 9.0, 5.0)  # far away: LM needs more than 9 evaluations
    lm = jaxpro.fit_many(decay, x, Y, p0=p0, method="lm", max_nfev=9)
    failed = np.flatnonzero(lm.status == 0)
    assert failed.tolist() == [2, 7], lm.nfev
    # the compact LM alone (ample evaluations): which curves need more than 9 there
    compact = jaxpro.fit_many(decay, x, Y, p0=p0)
    assert compact.plan.settings["curves_by_program"] == {"compact LM": 10}
    slow = np.flatnonzero(compact.nfev > 9)
    handed = np.setdiff1d(slow, failed)
    assert set(failed) <= set(slow) and handed.size, compact.nfev  # all three programs run
    auto = jaxpro.fit_many(decay, x, Y, p0=p0, max_nfev=9)
    assert "TRF for 2 curve(s)" in auto.plan.settings["method"]
    assert auto.plan.settings["curves_by_program"] == {
        "compact LM": 10 - slow.size,
        "LM": handed.size,
        "TRF": 2,
    }
    assert [name for name, _ in auto.timings.programs] == [
        "compact LM queue, 3 parameters, 120 points per curve",
        "LM queue, 3 parameters, 120 points per curve",
        "TRF queue, 3 parameters, 120 points per curve",
    ]
    kept = np.setdiff1d(np.arange(10), slow)
    # the compact program's curves as it gives them alone; values as MINPACK's LM to 1e-7
    np.testing.assert_allclose(auto.values[kept], compact.values[kept], rtol=1e-12)
    np.testing.assert_array_equal(auto.nfev[kept], compact.nfev[kept])
    np.testing.assert_allclose(auto.values[kept], lm.values[kept], rtol=1e-7)
    # the full LM's curves started afresh from p0: its own answers
    np.testing.assert_allclose(auto.values[handed], lm.values[handed], rtol=1e-12)
    np.testing.assert_array_equal(auto.nfev[handed], lm.nfev[handed])
    for i in failed:
        alone = jaxpro.fit_many(decay, x, Y[i : i + 1], p0=p0[i], method="trf", max_nfev=9)
        np.testing.assert_allclose(auto.values[i], alone.values[0], rtol=1e-12)
        assert auto.nfev[i] == alone.nfev[0]


def test_unaligned_data_are_copied_aligned_once_and_give_the_same_answers(curves):
    """XLA reads host data in place only when 64-byte aligned: an unaligned Y is copied by NumPy."""
    from jaxpro.fit._data import device_ready

    x, Y, _ = curves
    raw = np.empty(Y.size + 1)
    unaligned = raw[1:].reshape(Y.shape)  # 8 bytes past an aligned start, or not aligned at all
    unaligned[...] = Y
    ready = device_ready(unaligned)
    assert ready.ctypes.data % 64 == 0 and ready.flags.c_contiguous
    np.testing.assert_array_equal(ready, Y)
    aligned = device_ready(ready)
    assert aligned is ready, "already aligned: no copy"
    one = jaxpro.fit_many(decay, x, unaligned, p0=(1.5, 1.0, 0.0), batch_size=8)
    two = jaxpro.fit_many(decay, x, ready, p0=(1.5, 1.0, 0.0), batch_size=8)
    # exact: the same program on the same numbers; only where they lie in memory differs
    np.testing.assert_array_equal(one.values, two.values)


def test_a_window_copy_holds_only_the_rows_its_fits_read(curves, monkeypatch):
    """An unaligned window is copied row range by row range; the other rows read as zeros."""
    from jaxpro.fit._data import device_ready_rows

    x, Y, _ = curves
    raw = np.empty(Y.size + 1)
    unaligned = raw[1:].reshape(Y.shape)
    unaligned[...] = Y
    part = device_ready_rows(unaligned, slice(10, 25))
    assert part.ctypes.data % 64 == 0 and part.shape == Y.shape
    np.testing.assert_array_equal(part[10:25], Y[10:25])
    assert not part[:10].any() and not part[25:].any()
    aligned = device_ready_rows(part, slice(0, 5))
    assert aligned is part, "already aligned: no copy"
    # calls over windows whose fits use part of the rows: the same fits as one call
    monkeypatch.setattr(_many, "CALL_CURVES", 16)
    monkeypatch.setattr(_many, "_workers", lambda devices, curves: 1)
    windows = jaxpro.fit_many(decay, x, unaligned, p0=(1.5, 1.0, 0.0), batch_size=8)
    monkeypatch.undo()
    whole = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0), batch_size=8)
    np.testing.assert_allclose(windows.values, whole.values, rtol=1e-12)
    np.testing.assert_array_equal(windows.nfev, whole.nfev)  # discrete: see above


def test_spread_for_r_squared_in_cache_sized_blocks_matches_numpy():
    """Several blocks and a partial last one, with and without weights (some zero)."""
    rng = np.random.default_rng(3)
    y = rng.normal(5.0, 2.0, (1_300, 120))  # blocks of 546 rows: 546 + 546 + 208
    weights = rng.uniform(0.5, 2.0, y.shape) * (rng.random(y.shape) > 0.1)
    plain = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    np.testing.assert_allclose(_many_result.weighted_spread(y, None), plain, rtol=1e-12)
    w2 = weights**2
    mean = np.sum(w2 * y, axis=1, keepdims=True) / np.sum(w2, axis=1, keepdims=True)
    weighted = np.sum(w2 * (y - mean) ** 2, axis=1)
    np.testing.assert_allclose(_many_result.weighted_spread(y, weights), weighted, rtol=1e-12)


def test_a_row_whose_sum_overflows_keeps_all_its_points(curves):
    """The quick completeness test (row sums) defers to the exact one when a sum overflows."""
    x, Y, _ = curves
    Y = Y[:3].copy()
    Y[1, :2] = 1e308  # finite, but the row's sum is inf
    with np.errstate(over="ignore", invalid="ignore"):
        result = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0))
    np.testing.assert_array_equal(result.n, [N, N, N])  # no point taken for missing
    assert result.converged[[0, 2]].all()


def test_missing_points_found_by_the_exact_test(curves):
    """NaN and infinity mark missing points: the row-sum test sends them to the exact one."""
    x, Y, _ = curves
    Y = Y[:3].copy()
    Y[0, 5] = np.nan
    Y[2, 7] = np.inf
    result = jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0))
    np.testing.assert_array_equal(result.n, [N - 1, N, N - 1])
    assert result.converged.all()


def test_countdown_counts_each_thread_once():
    countdown = _many._Countdown(2)
    first, second = countdown.arrival(), countdown.arrival()
    first()
    first()  # a second call from the same thread does not count
    assert not countdown.wait(timeout=0.01)
    second()
    assert countdown.wait(timeout=0.01)
    assert _many._Countdown(0).wait(timeout=0.01)


def test_a_failing_call_releases_the_waiting_host_work(curves, monkeypatch):
    """Host work waits for every thread's first launch; a thread that fails first must not hang it."""
    import threading

    from jaxpro.fit import _engine

    x, Y, _ = curves

    def broken(prepared):
        raise RuntimeError("launch failed")

    monkeypatch.setattr(_many, "_workers", lambda devices, curves: 2)
    monkeypatch.setattr(_engine, "launch", broken)
    outcome = {}

    def run():
        try:
            jaxpro.fit_many(decay, x, Y, p0=(1.5, 1.0, 0.0))
        except RuntimeError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "fit_many hung after a failed launch"
    assert outcome == {"error": "launch failed"}


@pytest.mark.parametrize("method", [None, "lm"])
def test_the_queue_loop_has_no_scatter(curves, monkeypatch, method):
    """Finished fits are stored row by row, not scattered: XLA's CPU backend then compiles
    the whole step loop into one kernel (a scatter anywhere in it prevents that).

    Both programs: the compact LM (method left to jaxpro) and the full one."""
    from jaxpro import _cache
    from jaxpro.fit import _engine

    texts = []
    real = _engine.compile_lowered

    def spy(lowered, *args):
        compiled = real(lowered, *args)
        texts.append(compiled.as_text())
        return compiled

    monkeypatch.setattr(_engine, "compile_lowered", spy)
    _cache.clear()
    x, Y, _ = curves
    result = jaxpro.fit_many(decay, x, Y[:20], p0=(1.5, 1.0, 0.0), batch_size=8, method=method)
    assert result.converged.all()
    assert len(texts) == 1, "the program was compiled (and only the one)"
    assert all(" scatter(" not in text for text in texts)
    assert any('xla_cpu_small_call="true"' in text for text in texts)


def test_a_numpy_model_runs_as_its_jax_numpy_translation(curves):
    """As curve_fit does: NumPy's functions swapped for jax.numpy's where the values agree."""
    x, Y, _ = curves
    written = jaxpro.fit_many(decay, x, Y[:8], p0=(1.5, 1.0, 0.0))
    numpy = jaxpro.fit_many(decay_np, x, Y[:8], p0=(1.5, 1.0, 0.0))
    assert written.plan.settings["model_path"] == "jax"
    assert numpy.plan.settings["model_path"] == "jax.numpy translation"
    assert any("jax.numpy translation" in reason for reason in numpy.plan.reasons)
    np.testing.assert_allclose(numpy.values, written.values, rtol=1e-12)
    np.testing.assert_array_equal(numpy.nfev, written.nfev)
    again = jaxpro.fit_many(decay_np, x, Y[:8], p0=(1.5, 1.0, 0.0))
    assert again.timings.compile == 0.0, "the kept translation: nothing compiles again"
    np.testing.assert_array_equal(again.values, numpy.values)


def test_a_numpy_model_that_cannot_be_translated_is_refused_with_the_reason(curves):
    from jaxpro.errors import ModelError

    def in_place(x, a, b, c):
        out = np.empty_like(x)
        out[:] = a * np.exp(-b * x) + c  # item assignment: jax arrays are immutable
        return out

    x, Y, _ = curves
    with pytest.raises(ModelError, match="one compiled program"):
        jaxpro.fit_many(in_place, x, Y[:4], p0=(1.5, 1.0, 0.0))


def test_a_jax_model_that_fails_to_trace_keeps_its_own_error(curves):
    """No NumPy to replace: the tracing error as it is, without the translation note."""
    from jaxpro.errors import ModelError

    def branchy(x, a, b, c):
        if a > 0:  # Python control flow on a traced value
            return a * jnp.exp(-b * x) + c
        return c + 0 * x

    x, Y, _ = curves
    with pytest.raises(ModelError) as caught:
        jaxpro.fit_many(branchy, x, Y[:4], p0=(1.5, 1.0, 0.0))
    assert "one compiled program" not in str(caught.value)
