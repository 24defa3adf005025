"""When ``method='auto'`` calls a problem stiff: the cost crossover of its state size.

Oracle: the crossovers measured on this CPU (Fisher-KPP on n cells, warm Tsit5
against Kvaerno5 at rtol 1e-6; ``_stiffness``'s comment): the model must stay
within 35% of each, and ``solve`` must follow it on both sides of the old fixed
count (20,000 stability steps), which was 3-4x off at 16 and 200 states.
"""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxpro.ode as ode  # noqa: E402
from jaxpro.ode._solve import EXPLICIT_BUDGET, explicit_budget  # noqa: E402
from jaxpro.ode._stiffness import stability_steps, stiff_steps  # noqa: E402

MEASURED = {4: 6_500, 16: 8_500, 64: 20_500, 200: 77_000, 400: 175_000}


def test_crossover_model_tracks_the_measured_crossovers():
    for n, measured in MEASURED.items():
        assert stiff_steps(n) == pytest.approx(measured, rel=0.35), n
    # flat (6,300-6,700) for 1-4 states, then growing with the implicit solve's LU
    assert all(6_000 < stiff_steps(n) < 7_000 for n in (1, 2, 3, 4))
    sizes = [4, 16, 64, 200, 400, 1000, 5000]
    counts = [stiff_steps(n) for n in sizes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    # the explicit attempt can always finish a problem under the crossover
    for n in sizes:
        assert explicit_budget(stiff_steps(n)) >= max(EXPLICIT_BUDGET, 1.5 * stiff_steps(n))


def fisher_kpp(n: int, steps: float, span: float = 5.0):
    """``(f, y0, args)``: u' = D u_xx + u (1 - u) on n cells, D set so stability needs ``steps``."""
    dx = 1.0 / n

    def f(t, u, args):
        lap = jnp.concatenate(
            [u[1:2] - u[:1], u[2:] - 2 * u[1:-1] + u[:-2], u[-2:-1] - u[-1:]]
        )  # fmt: skip
        return args[0] * lap / dx**2 + u * (1 - u)

    x = (np.arange(n) + 0.5) / n
    diffusion = steps * 3.5 / span / (4 * n * n)  # rho ~ 4 D / dx^2
    return f, jnp.asarray(np.exp(-50 * (x - 0.3) ** 2)), jnp.array([diffusion])


@pytest.mark.parametrize(
    ("n", "steps", "method"), [(200, 30_000, "tsit5"), (16, 14_000, "kvaerno5")]
)
def test_auto_follows_the_crossover_of_the_state_size(n, steps, method):
    f, y0, args = fisher_kpp(n, steps)
    t_eval = np.linspace(0.0, 5.0, 6)
    sol = ode.solve(f, (0.0, 5.0), y0, t_eval=t_eval, args=args)
    assert sol.success and sol.plan.method == method
    reason = sol.plan.reasons[0]
    needed = float(reason.split("~")[1].split(" ")[0])
    assert needed == pytest.approx(steps, rel=0.05)  # the stand-in's stability count
    assert f"{stiff_steps(n):.3g}" in reason and f"{n} states" in reason
    if method == "tsit5":  # above the old fixed 20,000, but cheaper explicitly at 200 states
        assert stability_steps(4 * args[0] * n * n, 5.0) > 20_000
        assert sol.stats["steps"] < explicit_budget(stiff_steps(n))


def test_largest_spectral_radius_of_members_equals_one_by_one():
    """One vmapped Jacobian for all sampled members: the same radius as member by member
    (1e-12), with per-member args, shared args, None args and a pytree state."""
    from jaxpro.ode._stiffness import largest_spectral_radius, spectral_radius

    def lv(t, y, args):
        a, b, c, d = args
        return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])

    def pair(t, y, args):
        return {"u": -3.0 * y["u"] + y["v"], "v": -40.0 * y["v"] * (1 + y["u"] ** 2)}

    rng = np.random.default_rng(1)
    ys = [jnp.asarray(rng.uniform(1, 10, 2)) for _ in range(4)]
    own = [jnp.asarray(rng.uniform(0.5, 3.0, 4)) for _ in range(4)]
    shared = (1.5, 1.0, 3.0, 1.0)
    trees = [{"u": jnp.asarray(rng.normal()), "v": jnp.asarray(rng.normal())} for _ in range(3)]
    for f, members in ((lv, list(zip(ys, own, strict=True))), (lv, [(y, shared) for y in ys]),
                       (pair, [(y, None) for y in trees])):  # fmt: skip
        expected = max(spectral_radius(f, 0.0, y, a) for y, a in members)
        assert largest_spectral_radius(f, 0.0, members) == pytest.approx(expected, rel=1e-12)


def test_the_jacobian_is_compiled_once_per_function_and_t_is_traced():
    """One compiled Jacobian per function and state shape, reused by later calls; ``t``
    is traced (not baked in): the radius of ``diag(-(1 + t^2), -5)`` at each call's
    own t, to 1e-12, with one member or two, NumPy or JAX states."""
    from jaxpro.ode._stiffness import (
        _jacobian_program,
        largest_spectral_radius,
        spectral_radius,
    )

    def f(t, y, args):
        return jnp.stack([-(1 + t**2) * y[0], args * y[0] - 5.0 * y[1]])

    members = [(jnp.array([1.0, 2.0]), 3.0), (np.array([0.5, -1.0]), 4.0)]
    compiled = _jacobian_program.cache_info().misses
    for t in (0.0, 3.0, 1.0, 2.5):
        assert largest_spectral_radius(f, t, members) == pytest.approx(max(1 + t**2, 5.0),
                                                                       rel=1e-12)  # fmt: skip
        assert spectral_radius(f, t, *members[1]) == pytest.approx(max(1 + t**2, 5.0), rel=1e-12)
    assert _jacobian_program.cache_info().misses == compiled + 1


def test_an_empty_state_has_radius_zero():
    """A state of no numbers has no eigenvalue: 0, by either entry point (the dense
    path used to call itself back for it)."""
    from jaxpro.ode._stiffness import largest_spectral_radius, spectral_radius

    def f(t, y, args):
        return -y

    empty = jnp.zeros(0)
    assert spectral_radius(f, 0.0, empty, None) == 0.0
    assert largest_spectral_radius(f, 0.0, [(empty, None), (empty, None)]) == 0.0
