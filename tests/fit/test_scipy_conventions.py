"""SciPy's input conventions in curve_fit and least_squares, checked against SciPy itself.

Each test states the convention, calls jaxpro and (where a value comes back)
SciPy on the same problem, and compares: parameters to 1e-6 relative (both
solve the same well-conditioned problems to their own tolerances), pcov to
1e-5. Error checks assert the class SciPy raises (ValueError or TypeError)
and that jaxpro's message names the argument.
"""

import subprocess
import sys
import textwrap

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.optimize  # noqa: E402

import jaxpro  # noqa: E402
from jaxpro.errors import InputError, InputTypeError, ModelError, NumPyModelWarning  # noqa: E402

X = np.linspace(0.0, 3.0, 25)
Y = 1.7 * np.exp(-0.8 * X) + np.random.default_rng(3).normal(0.0, 0.01, X.size)


def one_parameter(x, b):
    return 1.7 * jnp.exp(-b * x)


def line(x, a, b):
    return a * x + b


def shifted_square(x, a=0.0):
    return (x - a) ** 2 + 5.0


# ----------------------------------------------------------------------------- scalars


def test_a_scalar_p0_is_one_parameter():
    popt, pcov = jaxpro.curve_fit(one_parameter, X, Y, p0=1.0)
    ref, ref_cov = scipy.optimize.curve_fit(lambda x, b: 1.7 * np.exp(-b * x), X, Y, p0=1.0)
    assert popt.shape == (1,) and pcov.shape == (1, 1)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-5)


def test_a_scalar_x0_reaches_fun_as_a_one_element_array():
    seen = []

    def fun(x):
        seen.append(x.shape)
        return jnp.stack([x[0] - 3.0, 2.0 * (x[0] - 3.0)])

    result = jaxpro.least_squares(fun, 2.0)
    assert set(seen) == {(1,)}
    assert result.x.shape == (1,)
    np.testing.assert_allclose(result.x, [3.0], atol=1e-10)


@pytest.mark.parametrize("absolute_sigma", [False, True])
def test_a_scalar_sigma_is_every_points_sigma(absolute_sigma):
    popt1, pcov1 = jaxpro.curve_fit(line, X, Y, sigma=0.3, absolute_sigma=absolute_sigma)
    popt2, pcov2 = jaxpro.curve_fit(
        line, X, Y, sigma=np.full(X.size, 0.3), absolute_sigma=absolute_sigma
    )
    np.testing.assert_array_equal(popt1, popt2)
    np.testing.assert_array_equal(pcov1, pcov2)
    ref = scipy.optimize.curve_fit(
        lambda x, a, b: a * x + b, X, Y, sigma=0.3, absolute_sigma=absolute_sigma
    )
    np.testing.assert_allclose(pcov1, ref[1], rtol=1e-6)


def test_a_two_dimensional_x0_is_still_refused():
    with pytest.raises(InputError, match=r"x0: must be 0-D or 1-D"):
        jaxpro.least_squares(lambda x: x, [[1.0, 2.0]])


# ----------------------------------------------------------------------------- tolerances


def test_none_disables_a_tolerance_as_in_scipy():
    # ftol=None, xtol=None: only the gradient test can stop TRF, and it does.
    result = jaxpro.least_squares(lambda x: shifted_square(x, 3.0), 2.0, ftol=None, xtol=None)
    assert result.success and result.status == 1  # 1: gtol satisfied
    np.testing.assert_allclose(result.x, [3.0], atol=1e-4)


@pytest.mark.parametrize("method", ["trf", "lm"])
def test_all_tolerances_disabled_is_refused(method):
    with pytest.raises(ValueError, match=r"At least one of the tolerances|All tolerances"):
        jaxpro.least_squares(shifted_square, 2.0, method=method, ftol=None, xtol=None, gtol=None)


def test_lm_refuses_any_tolerance_below_machine_epsilon():
    with pytest.raises(InputError, match=r"All tolerances must be higher than machine epsilon"):
        jaxpro.least_squares(shifted_square, 2.0, method="lm", ftol=None)


def test_curve_fit_forwards_none_tolerances():
    with pytest.raises(InputError, match="At least one of the tolerances"):
        jaxpro.curve_fit(line, X, Y, method="trf", ftol=None, xtol=None, gtol=None)


# ----------------------------------------------------------------------------- jac, x_scale, bounds


@pytest.mark.parametrize("jac", ["2-point", "3-point", "cs", "auto"])
def test_scipys_jac_strings_are_accepted(jac):
    result = jaxpro.least_squares(shifted_square, 2.0, jac=jac)
    np.testing.assert_allclose(result.x, [0.0], atol=1e-4)


@pytest.mark.parametrize("entry", ["least_squares", "curve_fit"])
def test_an_unknown_jac_string_is_refused(entry):
    def call():
        if entry == "least_squares":
            return jaxpro.least_squares(shifted_square, 2.0, jac="oops")
        return jaxpro.curve_fit(line, X, Y, jac="oops")

    with pytest.raises(InputError, match=r"jac: must be a callable or one of .*'oops'"):
        call()


def test_a_jac_of_the_wrong_shape_is_refused():
    with pytest.raises(ModelError, match=r"`jac` has wrong shape: expected \(1, 1\), actual"):
        jaxpro.least_squares(shifted_square, 2.0, lambda x: jnp.ones((1, 1, 1)))


def test_jac_sparsity_with_lm_is_refused():
    with pytest.raises(InputError, match="method='lm' does not support `jac_sparsity`"):
        jaxpro.least_squares(shifted_square, 2.0, jac_sparsity=[1], method="lm")


@pytest.mark.parametrize("x_scale", [1.0 + 2.0j, "auto", -1.0])
def test_bad_x_scale_is_refused(x_scale):
    with pytest.raises(InputError, match="x_scale"):
        jaxpro.least_squares(shifted_square, 2.0, x_scale=x_scale)


def test_scipy_bounds_object():
    bounds = scipy.optimize.Bounds([1.0], [4.0])
    result = jaxpro.least_squares(shifted_square, 2.0, bounds=bounds)
    np.testing.assert_allclose(result.x, [1.0], atol=1e-8)
    assert result.active_mask.tolist() == [-1]


def test_lm_reports_njev_as_scipy_does():
    # SciPy: None for 'lm' with a string jac; a count with a callable.
    assert jaxpro.least_squares(shifted_square, 2.0, method="lm").njev is None
    counted = jaxpro.least_squares(shifted_square, 2.0, lambda x: 2 * x[:, None], method="lm")
    assert isinstance(counted.njev, int) and counted.njev > 0


# ----------------------------------------------------------------------------- TypeError where SciPy raises it


def test_args_the_function_does_not_take_raise_a_type_error():
    with pytest.raises(TypeError) as info:
        jaxpro.least_squares(shifted_square, 2.0, args=(3, 4))
    assert isinstance(info.value, InputTypeError) and isinstance(info.value, ValueError)
    assert str(info.value).startswith("args: fun cannot be called")
    with pytest.raises(InputTypeError, match="unexpected keyword argument 'kaboom'"):
        jaxpro.least_squares(shifted_square, 2.0, kwargs={"kaboom": 3})


def test_fewer_points_than_parameters_raise_scipys_type_error():
    def five(x, a, b, c, d, e):
        return a * jnp.exp(-b * x) + c + d + e

    with pytest.raises(TypeError, match="The number of func parameters=5 must not exceed") as info:
        jaxpro.curve_fit(five, [1.0, 2.0, 3.0, 4.0], [5.0, 9.0, 13.0, 17.0])
    assert str(info.value).startswith("ydata: ")


# ----------------------------------------------------------------------------- SciPy's wording and classes


def test_optimize_warning_is_scipys():
    from jaxpro.errors import JaxproWarning, OptimizeWarning

    assert issubclass(OptimizeWarning, scipy.optimize.OptimizeWarning)
    assert issubclass(OptimizeWarning, JaxproWarning)
    x = np.array([1.0, 2.0])  # two points, two parameters: no degrees of freedom
    with pytest.warns(scipy.optimize.OptimizeWarning, match="Covariance of the parameters"):
        jaxpro.curve_fit(lambda x, a, b: a * x, x, 2.0 * x)


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        ("propagate", "`nan_policy='propagate'` is not supported by this function"),
        ("hi", "nan_policy must be one of {None, 'raise', 'omit'}"),
        ("raise", "The input contains nan"),
    ],
)
def test_nan_policy_errors_carry_scipys_wording(policy, words):
    y = Y.copy()
    y[3] = np.nan
    with pytest.raises(InputError) as info:
        jaxpro.curve_fit(line, X, y, nan_policy=policy)
    text = str(info.value)
    assert words in text and text.split(":")[0] in ("nan_policy", "ydata")


def test_an_infeasible_start_says_so_in_scipys_words():
    with pytest.raises(InputError, match="Initial guess is outside of provided bounds"):
        jaxpro.curve_fit(line, X, Y, p0=[1.0, 1.0], bounds=(1000, 1001))


def test_unknown_keywords_are_type_errors_as_in_python():
    with pytest.raises(TypeError, match="options"):
        jaxpro.least_squares(shifted_square, 2.0, options={"max_nfev": 100})
    with pytest.raises(TypeError, match="options"):
        jaxpro.curve_fit(line, X, Y, options={})


# ----------------------------------------------------------------------------- solver keywords


def test_tr_solver_is_checked_as_scipy_checks_it():
    with pytest.raises(InputError, match="`tr_solver` must be None, 'exact' or 'lsmr'"):
        jaxpro.least_squares(shifted_square, 2.0, tr_solver="best")
    with pytest.raises(TypeError, match="tol"):
        jaxpro.least_squares(shifted_square, 2.0, tr_solver="lsmr", tr_options={"tol": 1e-10})
    # lsmr's own options are accepted; the subproblem is solved exactly either way
    lsmr = jaxpro.least_squares(shifted_square, 2.0, tr_solver="lsmr", tr_options={"btol": 1e-10})
    exact = jaxpro.least_squares(shifted_square, 2.0, tr_solver="exact")
    np.testing.assert_array_equal(lsmr.x, exact.x)


def test_jac_sparsity_is_checked():
    with pytest.raises(InputError, match="`jac_sparsity` has wrong shape"):
        jaxpro.least_squares(lambda x: x**2 - 1.0, [2.0, 3.0], jac_sparsity=np.ones((1, 2)))
    with pytest.raises(InputError, match="tr_solver='exact' works only with dense"):
        jaxpro.least_squares(
            lambda x: x**2 - 1.0, [2.0, 3.0], jac_sparsity=np.eye(2), tr_solver="exact"
        )
    result = jaxpro.least_squares(lambda x: x**2 - 1.0, [2.0, 3.0], jac_sparsity=np.eye(2))
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-10)


def test_sparse_and_operator_jacobians_follow_scipys_rules():
    import scipy.sparse
    import scipy.sparse.linalg

    def fun(x):  # in place: the host path, where the user's jac runs as written
        r = np.empty(2)
        r[0] = x[0] ** 2 - 1.0
        r[1] = x[1] ** 2 - 4.0
        return r

    def sparse_jac(x):
        return scipy.sparse.csr_matrix(np.diag(2.0 * x))

    def operator_jac(x):
        return scipy.sparse.linalg.aslinearoperator(np.diag(2.0 * x))

    with pytest.warns(NumPyModelWarning):
        result = jaxpro.least_squares(fun, [2.0, 3.0], sparse_jac)
    np.testing.assert_allclose(result.x, [1.0, 2.0], atol=1e-10)
    with pytest.raises(InputError, match="method='lm' works only with dense"):
        jaxpro.least_squares(fun, [2.0, 3.0], sparse_jac, method="lm")
    with pytest.raises(InputError, match="tr_solver='exact' works only with dense"):
        jaxpro.least_squares(fun, [2.0, 3.0], operator_jac, tr_solver="exact")
    with pytest.raises(InputError, match="x_scale='jac' can't be used"):
        jaxpro.least_squares(fun, [2.0, 3.0], operator_jac, x_scale="jac")


def test_callback_raises_with_trf_and_warns_with_lm():
    with pytest.raises(InputError, match="callback: is not supported"):
        jaxpro.least_squares(shifted_square, 2.0, callback=lambda x: None)
    with pytest.warns(UserWarning, match="not supported with `lm` method"):
        jaxpro.least_squares(shifted_square, 2.0, method="lm", callback=lambda x: None)


def test_verbose_prints_the_closing_report(capsys):
    jaxpro.least_squares(shifted_square, 2.0, verbose=1)
    out = capsys.readouterr().out
    assert "Function evaluations" in out and "final cost" in out


def test_diff_step_and_workers_drive_the_host_differences():
    calls = []

    def fun(x):
        r = np.empty(2)
        r[0] = x[0] - 3.0
        r[1] = 2.0 * (x[0] - 3.0)
        return r

    def workers(f, points):  # SciPy's contract: a map over an iterable of points
        points = list(points)
        calls.append(len(points))
        return map(f, points)

    with pytest.warns(NumPyModelWarning):
        result = jaxpro.least_squares(fun, 2.0, diff_step=1e-4, workers=workers)
    np.testing.assert_allclose(result.x, [3.0], atol=1e-8)
    assert calls and set(calls) == {1}  # one shifted point per parameter, through workers


# ----------------------------------------------------------------------------- dogbox, p0 from bounds, full_output


def test_dogbox_runs_as_trf_and_says_so():
    from jaxpro.errors import JaxproWarning

    with pytest.warns(JaxproWarning, match="method='dogbox' ran as 'trf'"):
        popt, pcov = jaxpro.curve_fit(line, X, Y, method="dogbox", bounds=(0.0, 5.0))
    trf = jaxpro.curve_fit(line, X, Y, method="trf", bounds=(0.0, 5.0))
    np.testing.assert_array_equal(popt, trf[0])
    with pytest.warns(JaxproWarning):
        result = jaxpro.fit(line, X, Y, method="dogbox")
    assert result.plan.method == "trf"
    assert "'dogbox' was requested" in result.plan.reasons[0]


def test_without_p0_the_start_is_inside_the_bounds_as_in_scipy():
    # SciPy's start: the middle of [0, 0.6] and one above b's lower bound 0.
    # The optimum has a on its bound 0.6; b then minimises a 1-D problem,
    # solved here to 1e-14 as the oracle: jaxpro within 1e-7, SciPy 5e-5 short.
    def model(x, a, b):
        return a * jnp.exp(-b * x)

    popt, _ = jaxpro.curve_fit(model, X, Y, bounds=([0.0, 0.0], [0.6, np.inf]))

    def slope(b):  # d/db of 0.5 * sum((0.6 exp(-b x) - y)^2)
        e = np.exp(-b * X)
        return np.sum((0.6 * e - Y) * (-0.6 * X * e))

    b_star = scipy.optimize.brentq(slope, 1e-3, 5.0, xtol=1e-14)
    assert popt[0] == pytest.approx(0.6, abs=1e-12)
    np.testing.assert_allclose(popt[1], b_star, rtol=1e-7)
    ref, _ = scipy.optimize.curve_fit(
        lambda x, a, b: a * np.exp(-b * x), X, Y, bounds=([0.0, 0.0], [0.6, np.inf])
    )
    np.testing.assert_allclose(popt, ref, rtol=1e-4)  # SciPy, from the same start


def test_lm_full_output_has_minpacks_fields():
    popt, pcov, info, message, ier = jaxpro.curve_fit(
        line, X, Y, method="lm", full_output=True, absolute_sigma=True
    )
    n = popt.size
    assert {"nfev", "fvec", "fjac", "ipvt", "qtf"} <= set(info)
    assert ier in (1, 2, 3, 4) and isinstance(message, str)
    # pivots counted as the installed SciPy counts them (from 0 in its C
    # MINPACK, from 1 in the Fortran one): SciPy's own output decides
    ref = scipy.optimize.curve_fit(line, X, Y, method="lm", full_output=True)[2]
    base = int(ref["ipvt"].min())
    assert sorted(info["ipvt"]) == list(range(base, base + n))
    assert info["ipvt"].dtype.kind == ref["ipvt"].dtype.kind
    # SciPy's recipe: r = triu(fjac.T[:n]), columns permuted by ipvt
    r = np.triu(info["fjac"].T[:n, :])
    perm = np.eye(n)[info["ipvt"] - base]
    cov = np.linalg.inv((r @ perm.T).T @ (r @ perm.T))
    np.testing.assert_allclose(cov, pcov, rtol=1e-10)
    J = np.stack([X, np.ones_like(X)], axis=1)
    np.testing.assert_allclose(cov, np.linalg.inv(J.T @ J), rtol=1e-10)


# ----------------------------------------------------------------------------- xdata and ydata shapes


def test_three_dimensional_xdata_reaches_the_model_in_its_shape():
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 2.0, size=(1, 2, 40))
    y = 1.5 * x[0, 0] + 0.5 * x[0, 1] ** 2 + rng.normal(0.0, 0.01, 40)
    shapes = []

    def model(x, a, b):
        shapes.append(x.shape)
        return a * x[0, 0] + b * x[0, 1] ** 2

    popt, _ = jaxpro.curve_fit(model, x, y)
    ref, _ = scipy.optimize.curve_fit(lambda x, a, b: a * x[0, 0] + b * x[0, 1] ** 2, x, y)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    assert all(s[:2] == (1, 2) for s in shapes)


def test_xdata_none_and_scalar_ydata_as_in_scipy():
    popt, _ = jaxpro.curve_fit(lambda _, a: a * jnp.arange(10.0), None, 2.0 * np.arange(10))
    np.testing.assert_allclose(popt, [2.0], rtol=1e-10)
    target = 4.7 * X**2 + 3.5 * X

    def shifted(x, a, b):
        return a * x**2 + b * x - target

    zeros, _ = jaxpro.curve_fit(shifted, X, np.zeros_like(X))
    scalar, _ = jaxpro.curve_fit(shifted, X, 0)
    np.testing.assert_array_equal(zeros, scalar)
    np.testing.assert_allclose(scalar, [4.7, 3.5], rtol=1e-10)


def test_a_sparse_jac_comes_back_sparse():
    import scipy.sparse

    def fun(x):
        r = np.empty(2)
        r[0] = x[0] ** 2 - 1.0
        r[1] = x[1] ** 2 - 4.0
        return r

    with pytest.warns(NumPyModelWarning):
        result = jaxpro.least_squares(
            fun, [2.0, 3.0], lambda x: scipy.sparse.csr_matrix(np.diag(2.0 * x))
        )
    assert scipy.sparse.issparse(result.jac)
    np.testing.assert_allclose(result.jac.toarray(), np.diag([2.0, 4.0]), atol=1e-9)


# ----------------------------------------------------------------------------- fewer residuals than parameters


@pytest.mark.parametrize("x_scale", [1.0, np.array([1.0, 0.2]), "jac"])
def test_fewer_residuals_than_parameters_converge(x_scale):
    # One residual, two parameters (SciPy's Rosenbrock cropped): the factor's
    # second singular value is zero by construction, not rank deficiency.
    def cropped(x):
        return jnp.atleast_1d(10.0 * (x[1] - x[0] ** 2))

    result = jaxpro.least_squares(cropped, [-2.0, 1.0], x_scale=x_scale)
    assert result.success and result.cost < 1e-25
    np.testing.assert_allclose(result.x[1], result.x[0] ** 2, rtol=1e-12)  # on the valley floor


def test_the_first_step_is_the_minimum_norm_gauss_newton_step():
    def cropped(x):
        return jnp.atleast_1d(10.0 * (x[1] - x[0] ** 2))

    # at (-2, 1): J = [40, 10], f = -30; minimum-norm step -J^T f / (J J^T)
    J, f = np.array([40.0, 10.0]), -30.0
    expected = np.array([-2.0, 1.0]) - J * f / (J @ J)
    one_step = jaxpro.least_squares(cropped, [-2.0, 1.0], x_scale=1.0, max_nfev=2)
    np.testing.assert_allclose(one_step.x, expected, rtol=1e-12)


def test_a_fit_leaves_scipy_optimize_unimported():
    # OptimizeWarning derives from SciPy's, but scipy.optimize (and the sparse,
    # spatial and special modules it pulls in: ~120 MB of RSS) loads only when
    # the warning is actually issued
    script = textwrap.dedent(
        """
        import sys
        import numpy as np, jax.numpy as jnp, jaxpro
        x = np.linspace(0.0, 5.0, 200)
        jaxpro.curve_fit(lambda x, a, b: a * jnp.exp(-b * x), x, 2.0 * np.exp(-x), p0=[1.0, 1.0])
        jaxpro.fit(lambda x, a, b: a * jnp.exp(-b * x), x, 2.0 * np.exp(-x), p0=[1.0, 1.0])
        print("scipy.optimize" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
