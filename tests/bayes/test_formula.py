"""Formulas to designs: parsing, encodings, indexed group terms, new data, and bad input.

Oracles: formulae (bambi's parser) for the common columns, hand-built
expectations for the group indices and labels, and the model's log density
compared with one written by hand. No sampling here.
"""

import jax
import numpy as np
import pandas as pd
import pytest

jax.config.update("jax_enable_x64", True)

from jaxpro.bayes._families import FAMILIES, family_named  # noqa: E402
from jaxpro.bayes._formula import build_design, parse_formula  # noqa: E402
from jaxpro.bayes._glm import (  # noqa: E402
    choose_centring,
    column_informativeness,
    informativeness,
    make_model,
)
from jaxpro.errors import InputError  # noqa: E402

GAUSSIAN = FAMILIES["gaussian"]


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.uniform(1, 2, size=n),
            "kind": rng.choice(["a", "b", "c"], size=n),
            "g": np.repeat([f"g{i}" for i in range(6)], 10),
            "h": np.tile(["u", "v"], 30),
            "count": rng.poisson(3, size=n),
            "n": np.full(n, 10),
            "exposure": rng.uniform(1, 5, size=n),
        }
    )


# ------------------------------------------------------------------------------ parsing


def test_parse_splits_common_part_and_group_blocks():
    parsed = parse_formula("y ~ x + C(k) + (1 + x | g) + (1 || h) - 1")
    assert parsed.response == "y"
    assert parsed.common == "x + C(k) - 1"
    assert parsed.blocks == (("1 + x", "g", True), ("1", "h", False))


def test_parse_reads_trials_on_the_left():
    parsed = parse_formula("k | trials(n) ~ x")
    assert (parsed.response, parsed.trials, parsed.common) == ("k", "n", "x")


def test_parse_keeps_parenthesised_arithmetic_as_common():
    assert parse_formula("y ~ (x + z) + log(z)").blocks == ()


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y x", "exactly one '~'"),
        ("y ~ x ~ z", "exactly one '~'"),
        ("~ x", "no response"),
        ("y ~ ", "no terms"),
        ("y ~ (x + z", "unclosed"),
        ("y ~ x)", "unbalanced"),
        ("y ~ x +", "ends with an operator"),
        ("y ~ x - (1 | g)", "cannot subtract"),
        ("y | weights(w) ~ x", "trials"),
        ("y ~ ( | g)", "incomplete group term"),
    ],
)
def test_parse_rejects_malformed_formulas(formula, message):
    with pytest.raises(InputError, match=message):
        parse_formula(formula)


def test_parse_rejects_non_strings_and_huge_input():
    with pytest.raises(InputError, match="formula"):
        parse_formula(42)
    with pytest.raises(InputError, match="longer than"):
        parse_formula("y ~ " + " + ".join(["x"] * 5000))


# ------------------------------------------------------------------------------ safety


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ __import__('os').system('touch pwned')",
        "y ~ os.system(x)",
        "y ~ open(x)",
        "y ~ np.save(x)",
        "y ~ eval(x)",
    ],
)
def test_formulas_cannot_call_arbitrary_functions(frame, formula, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        build_design(formula, frame, GAUSSIAN)
    assert not (tmp_path / "pwned").exists()


def test_allowed_functions_are_evaluated(frame):
    design = build_design("y ~ log(z) + sqrt(z) + center(x)", frame, GAUSSIAN)
    assert design.common == ("log(z)", "sqrt(z)", "center(x)")
    np.testing.assert_allclose(design.X[:, 0], np.log(frame.z), rtol=1e-15)  # exact transform
    np.testing.assert_allclose(design.X[:, 2], frame.x - frame.x.mean(), atol=1e-14)


# ------------------------------------------------------------------------------ designs


def test_common_design_matches_formulae(frame):
    import formulae as fm

    design = build_design("y ~ x * C(kind)", frame, GAUSSIAN)
    reference = fm.design_matrices("y ~ x * C(kind)", frame).common.as_dataframe()
    assert design.intercept
    assert design.common == tuple(c for c in reference.columns if c != "Intercept")
    np.testing.assert_array_equal(design.X, reference.drop(columns="Intercept").to_numpy())
    np.testing.assert_allclose(design.X_mean, design.X.mean(axis=0), rtol=1e-15)


def test_no_intercept(frame):
    design = build_design("y ~ 0 + x", frame, GAUSSIAN)
    assert not design.intercept and design.common == ("x",)
    np.testing.assert_array_equal(design.X_mean, [0.0])  # nothing to centre against


def test_group_terms_are_indexed_not_dense(frame):
    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    (block,) = design.blocks
    assert block.correlated and block.columns == ("Intercept", "x")
    assert block.levels == tuple(f"g{i}" for i in range(6))
    assert design.Z[0].shape == (60, 2) and design.codes[0].shape == (60,)
    np.testing.assert_array_equal(design.codes[0], np.repeat(np.arange(6), 10))
    np.testing.assert_array_equal(design.Z[0][:, 1], frame.x)
    np.testing.assert_array_equal(block.rows, np.full(6, 10))
    assert block.effect_label("Intercept", "g0") == "g[g0]"
    assert block.effect_label("x", "g0") == "x|g[g0]"


def test_uncorrelated_terms_split_into_separate_blocks(frame):
    design = build_design("y ~ x + (1 + x || g)", frame, GAUSSIAN)
    assert [(b.columns, b.correlated) for b in design.blocks] == [
        (("Intercept",), False),
        (("x",), False),
    ]


def test_nested_groups_expand_to_parent_and_child(frame):
    design = build_design("y ~ 1 + (1 | g/h)", frame, GAUSSIAN)
    assert [b.name for b in design.blocks] == ["g", "g:h"]
    assert len(design.blocks[1].levels) == 12
    assert design.blocks[1].levels[0] == "g0:u"


def test_crossed_groups(frame):
    design = build_design("y ~ (1 | g) + (1 | h)", frame, GAUSSIAN)
    assert [b.name for b in design.blocks] == ["g", "h"]
    assert design.common == () and design.intercept


def test_offset_is_summed_not_a_coefficient(frame):
    design = build_design("count ~ x + offset(log(exposure))", frame, FAMILIES["poisson"])
    assert design.common == ("x",)
    np.testing.assert_allclose(design.offset, np.log(frame.exposure), rtol=1e-15)


def test_binomial_trials(frame):
    frame = frame.assign(k=np.minimum(frame["count"], 10))
    design = build_design("k | trials(n) ~ x", frame, FAMILIES["binomial"])
    np.testing.assert_array_equal(design.trials, frame.n)


def test_new_data_uses_the_fitted_encodings(frame):
    design = build_design("y ~ center(x) + C(kind) + (1 | g)", frame, GAUSSIAN)
    new = pd.DataFrame({"x": [0.0], "kind": ["b"], "g": ["unseen"]})
    inputs = design.evaluate(new)
    np.testing.assert_allclose(inputs["X"][0, 0], -frame.x.mean(), rtol=1e-12)  # training mean
    np.testing.assert_array_equal(inputs["X"][0, 1:], [1.0, 0.0])  # kind b, reference a
    assert inputs["codes"][0][0] == -1 and list(inputs["new_levels"][0]) == ["unseen"]


def test_new_data_missing_a_column_names_it(frame):
    design = build_design("y ~ x + (1 | g)", frame, GAUSSIAN)
    with pytest.raises(InputError, match="column 'g' not found in newdata"):
        design.evaluate(pd.DataFrame({"x": [1.0]}))


# ------------------------------------------------------------------------------ bad input


def test_unknown_column_is_named(frame):
    with pytest.raises(InputError, match="column 'wt' not found in data"):
        build_design("y ~ wt", frame, GAUSSIAN)
    with pytest.raises(InputError, match="column 'school' not found"):
        build_design("y ~ x + (1 | school)", frame, GAUSSIAN)


def test_missing_values_are_reported_with_rows(frame):
    frame.loc[[3, 7], "x"] = np.nan
    with pytest.raises(InputError, match=r"column 'x' has 2 missing .*rows 4, 8"):
        build_design("y ~ x", frame, GAUSSIAN)


def test_categorical_response_for_gaussian(frame):
    with pytest.raises(InputError, match=r"column 'kind' is categorical.*numeric response"):
        build_design("kind ~ x", frame, GAUSSIAN)


@pytest.mark.parametrize(
    ("family", "values", "message"),
    [
        ("poisson", [1, -2, 3], "non-negative whole counts.*row 2 = -2"),
        ("poisson", [1, 2.5, 3], "non-negative whole counts"),
        ("negative_binomial", [1, -1, 0], "non-negative whole counts"),
        ("bernoulli", [0, 1, 2], "must be 0/1.*row 3 = 2"),
        ("gamma", [1.0, 0.0, 2.0], "must be > 0"),
    ],
)
def test_response_impossible_for_the_family(family, values, message):
    data = pd.DataFrame({"y": np.tile(values, 4).astype(float), "x": np.arange(12.0)})
    with pytest.raises(InputError, match=message):
        build_design("y ~ x", data, family_named(family))


def test_binomial_needs_trials_and_not_more_successes(frame):
    with pytest.raises(InputError, match="needs the trials"):
        build_design("count ~ x", frame, FAMILIES["binomial"])
    frame = frame.assign(k=frame["n"] + 1)
    with pytest.raises(InputError, match="more successes than trials"):
        build_design("k | trials(n) ~ x", frame, FAMILIES["binomial"])
    with pytest.raises(InputError, match="is for family 'binomial'"):
        build_design("count | trials(n) ~ x", frame, FAMILIES["poisson"])


def test_group_with_no_rows_names_the_column(frame):
    frame["g"] = pd.Categorical(frame["g"], categories=[*sorted(set(frame["g"])), "empty"])
    with pytest.raises(InputError, match="column 'g' has group\\(s\\) with no rows: 'empty'"):
        build_design("y ~ x + (1 | g)", frame, GAUSSIAN)


def test_repeated_group_term_is_refused(frame):
    with pytest.raises(InputError, match="appears twice"):
        build_design("y ~ (1 | g) + (1 | g)", frame, GAUSSIAN)


def test_unknown_family():
    with pytest.raises(InputError, match="unknown family"):
        family_named("lognormal")
    assert family_named("Negative-Binomial").name == "negative_binomial"


def test_data_must_be_a_table():
    with pytest.raises(InputError, match="DataFrame"):
        build_design("y ~ x", [1, 2, 3], GAUSSIAN)
    with pytest.raises(InputError, match="no rows"):
        build_design("y ~ x", pd.DataFrame({"y": [], "x": []}), GAUSSIAN)


# ------------------------------------------------------------------------------ the model


def test_model_log_density_matches_a_hand_written_one(frame):
    """Non-centred correlated slopes: the joint density at a point, against scipy."""
    from numpyro.infer.util import log_density
    from scipy import stats

    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    model, kwargs, spec = make_model(design, centred=(False,))
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 2))
    L = np.array([[1.0, 0.0], [0.3, np.sqrt(1 - 0.09)]])
    point = {
        "Intercept_centred": 0.2,
        "x": -0.4,
        "sigma": 0.9,
        "sd(Intercept|g)": 0.5,
        "sd(x|g)": 0.3,
        spec.z_sites[0]: z,
        spec.cholesky_sites[0]: L,
    }
    value, _ = log_density(model, (), kwargs, point)
    r = (z @ L.T) * np.array([0.5, 0.3])
    codes = design.codes[0]
    mu = 0.2 + (frame.x - frame.x.mean()) * -0.4 + r[codes, 0] + r[codes, 1] * frame.x
    expected = stats.norm.logpdf(frame.y, mu, 0.9).sum() + stats.norm.logpdf(z).sum()
    scale_y = np.std(frame.y)
    expected += stats.norm.logpdf(0.2, frame.y.mean(), 2.5 * scale_y)
    expected += stats.norm.logpdf(-0.4, 0, 2.5 * scale_y / np.std(frame.x))
    expected += np.log(2) + stats.t.logpdf(0.9, 3, 0, 2.5 * scale_y)
    expected += stats.halfnorm.logpdf(0.5, scale=2.5 * scale_y)
    expected += stats.halfnorm.logpdf(0.3, scale=2.5 * scale_y / np.std(frame.x))
    # LKJ(2) on a 2x2 Cholesky factor: density of r12 is Beta(2, 2) on (-1, 1) mapped
    import numpyro.distributions as dist

    expected += float(dist.LKJCholesky(2, 2.0).log_prob(L))
    np.testing.assert_allclose(float(value), expected, rtol=1e-10)  # same density, float64


def test_priors_override_by_name_and_flat(frame):
    import numpyro.distributions as dist

    design = build_design("y ~ x + (1 | g)", frame, GAUSSIAN)
    _, _, spec = make_model(design, {"x": dist.Normal(0, 1), "sd(Intercept|g)": "flat"})
    assert spec.priors["sd(Intercept|g)"] == "flat"
    assert "Normal" in spec.priors["x"]
    _, _, spec = make_model(design, "flat")
    assert spec.priors["x"] == "flat" and spec.priors["sigma"] == "flat"
    with pytest.raises(InputError, match=r"no parameter named 'slope'.*priors can be set for"):
        make_model(design, {"slope": dist.Normal(0, 1)})
    with pytest.raises(InputError, match="numpyro distribution or 'flat'"):
        make_model(design, {"x": "wide"})
    with pytest.raises(InputError, match="scalar distribution"):
        make_model(design, {"x": dist.Normal(np.zeros(2), 1)})


def test_constant_predictor_is_refused(frame):
    frame = frame.assign(one=1.0)
    design = build_design("y ~ x + one", frame, GAUSSIAN)
    with pytest.raises(InputError, match="'one' is constant"):
        make_model(design)


def test_centring_follows_how_informative_groups_are():
    rng = np.random.default_rng(1)

    def data(groups, per_group, noise):
        g = np.repeat(np.arange(groups), per_group)
        y = rng.normal(0, 1, groups)[g] + rng.normal(0, noise, g.size)
        return pd.DataFrame({"y": y, "g": g.astype(str)})

    strong = build_design("y ~ (1 | g)", data(30, 50, 0.5), GAUSSIAN)
    weak = build_design("y ~ (1 | g)", data(30, 3, 3.0), GAUSSIAN)
    # rows x tau^2 / sigma^2: 50 x 1 / 0.25 = 200 and 3 x 1 / 9 = 0.33 (moment estimates)
    assert informativeness(strong)[0] == pytest.approx(200, rel=0.5)
    assert informativeness(weak)[0] < 1.0
    assert choose_centring(strong)[0] == (True,)
    assert choose_centring(weak)[0] == (False,)


def test_each_column_of_a_group_term_is_judged_and_the_weakest_decides():
    """Oracle: the simulated ratios tau_j^2 / se_j^2 (se from the known noise and design)."""
    rng = np.random.default_rng(3)
    groups, rows, noise = 400, 10, 1.0
    x = np.tile(np.linspace(-1.0, 1.0, rows), groups)  # centred: intercept and slope uncorrelated
    g = np.repeat(np.arange(groups), rows)
    tau = np.array([1.0, 0.3])  # intercept strongly, slope weakly informed
    effects = rng.normal(0, 1, (groups, 2)) * tau
    y = 2.0 + effects[g, 0] + (0.5 + effects[g, 1]) * x + rng.normal(0, noise, g.size)
    frame = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    se2 = noise**2 * np.array([1 / rows, 1 / np.sum(np.linspace(-1.0, 1.0, rows) ** 2)])
    truth = tau**2 / se2  # 10 and 0.24
    intercept, slope = column_informativeness(design)[0]
    assert intercept == pytest.approx(truth[0], rel=0.25)
    assert slope == pytest.approx(truth[1], abs=0.25)
    assert informativeness(design)[0] == slope
    centred, reasons = choose_centring(design)
    assert centred == (False,)  # the weak slope decides, though the intercept alone would centre
    assert f"Intercept {intercept:.3g}, x {slope:.3g}" in reasons[0] and "non-centred" in reasons[0]
    # an intercept-only term over the same groups is centred
    alone = build_design("y ~ x + (1 | g)", frame, GAUSSIAN)
    assert choose_centring(alone)[0] == (True,)


def test_informativeness_is_nan_when_too_few_groups_determine_their_coefficients():
    frame = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "x": [0.0, 1.0, 2.0, 2.0], "g": list("aabc")})
    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)  # only group a has 2 x values
    assert np.isnan(informativeness(design)[0])
    centred, reasons = choose_centring(design)
    assert centred == (False,) and "too few groups" in reasons[0]


def _log_density(model, kwargs, point):
    from numpyro.infer.util import log_density

    return float(log_density(model, (), kwargs, point)[0])


def test_centred_form_is_the_same_model_as_the_non_centred_one(frame):
    """Hierarchically centred coefficients beta = population + r: the density of r is N(0, Sigma)."""
    from scipy import stats

    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    noncentred, kwargs, spec_n = make_model(design, centred=(False,))
    centred, _, spec_c = make_model(design, centred=(True,))
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 2))
    L = np.array([[1.0, 0.0], [-0.4, np.sqrt(1 - 0.16)]])
    sd = np.array([0.5, 0.3])
    shared = {
        "Intercept_centred": 0.2,
        "x": -0.4,
        "sigma": 0.9,
        "sd(Intercept|g)": sd[0],
        "sd(x|g)": sd[1],
        spec_n.cholesky_sites[0]: L,
    }
    r = (z @ L.T) * sd
    population = np.array([0.2 - design.X_mean[0] * -0.4, -0.4])  # uncentred intercept, slope
    a = _log_density(noncentred, kwargs, {**shared, spec_n.z_sites[0]: z})
    b = _log_density(centred, kwargs, {**shared, spec_c.r_sites[0]: population + r})
    # non-centred density of z vs centred density of r: they differ by the Jacobian
    # |det(diag(sd) L)| per group, and by nothing else (same likelihood, same priors)
    covariance = (sd[:, None] * L) @ (sd[:, None] * L).T
    log_r = stats.multivariate_normal(np.zeros(2), covariance).logpdf(r).sum()
    log_z = stats.norm.logpdf(z).sum()
    np.testing.assert_allclose(b - a, log_r - log_z, rtol=1e-10)  # float64 identities


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1 + x | g)",
        "y ~ x * C(kind) + offset(log(z)) + (1 | g/h)",
        "y ~ 0 + x + (1 + x || g)",
        "y ~ x",
    ],
)
def test_collapsed_gaussian_likelihood_equals_the_per_row_one(frame, formula):
    """Sufficient statistics per cell give the same log density as the rows, at any point."""
    import jax
    from numpyro import handlers

    design = build_design(formula, frame, GAUSSIAN)
    centred = (True,) * len(design.blocks)
    rows_model, rows_kwargs, _ = make_model(design, centred=centred)
    cells_model, cells_kwargs, _ = make_model(design, centred=centred, collapse=True)
    for seed in range(3):
        trace = handlers.trace(handlers.seed(rows_model, jax.random.PRNGKey(seed))).get_trace(
            **{**rows_kwargs, design.response: None}
        )
        point = {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "sample" and name != design.response  # the prior draw of y
        }
        expected = _log_density(rows_model, rows_kwargs, point)
        got = _log_density(cells_model, cells_kwargs, point)
        np.testing.assert_allclose(got, expected, rtol=1e-9)  # expansion of a float64 sum


def test_collapse_is_chosen_only_where_it_saves_work(frame):
    from jaxpro.bayes._glm import collapsible

    assert collapsible(build_design("y ~ x + (1 | g)", frame, GAUSSIAN))[0]
    ok, why = collapsible(build_design("count ~ x + (1 | g)", frame, FAMILIES["poisson"]))
    assert not ok and "poisson" in why
    crossed = frame.assign(u=np.arange(len(frame)) % 29, w=np.arange(len(frame)) % 31)
    ok, why = collapsible(build_design("y ~ (1 | u) + (1 | w)", crossed, GAUSSIAN))
    assert not ok and "would not save work" in why  # every row its own cell


def test_gate_messages_use_the_formula_names(frame):
    from jaxpro.bayes._fit import _plain_names

    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    message = "R-hat 1.02 for beta_0(g)[2,1] (and 3 more); ESS 300 for z_0(g)[0,0], L_0(g)[1,0]"
    assert _plain_names(message, design) == (
        "R-hat 1.02 for x|g[g2] (and 3 more); ESS 300 for g[g0] (non-centred), cor(g)"
    )
    assert _plain_names("ESS 12 for Intercept_centred", design) == "ESS 12 for Intercept (centred)"


def test_reported_effect_messages_name_the_group(frame):
    from jaxpro.bayes._fit import _plain_names

    design = build_design("y ~ x + (1 + x | g)", frame, GAUSSIAN)
    message = "R-hat 1.011 >= 1.01 for x|g[3] (and 2 more) (reported quantity); ESS 350 for g[0]"
    assert _plain_names(message, design) == (
        "R-hat 1.011 >= 1.01 for x|g[g3] (and 2 more) (reported quantity); ESS 350 for g[g0]"
    )
