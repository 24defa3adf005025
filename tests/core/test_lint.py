"""``jaxpro lint``: each rule fires on its anti-pattern and stays quiet on the correct code.

Oracle: hand-written snippets whose status under JAX is known (each positive
snippet fails or misbehaves under ``jax.jit`` as its rule says; the negative
twin is the documented fix). A few positives are run under JAX to confirm
that the code flagged really fails.
"""

import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from jaxpro.cli import cli
from jaxpro.core import RULES, lint, lint_source
from jaxpro.errors import InputError

HEADER = """\
import functools
from functools import partial
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
"""


def codes(source: str, **kwargs) -> list[tuple[str, int]]:
    """(code, line within the snippet) of each finding; the header is not counted."""
    text = HEADER + textwrap.dedent(source)
    offset = HEADER.count("\n")
    return [(f.code, f.line - offset) for f in lint_source(text, "snippet.py", **kwargs)]


# Each case: rule, a snippet that must be flagged (on the line marked `# <-`),
# and the corrected snippet that must not be.
CASES = {
    "JX101": (
        """
        @jax.jit
        def f(x):
            return np.sin(x)  # <-
        """,
        """
        @jax.jit
        def f(x):
            n = np.prod(x.shape)
            return jnp.sin(x) / n + np.float64(2.0) + np.sum(x)  # np.sum calls x.sum()
        """,
    ),
    "JX102": (
        """
        @jax.jit
        def f(x):
            total = 0.0
            for i in range(x.shape[0]):  # <-
                total = total + x[i]
            return total
        """,
        """
        @jax.jit
        def f(x, layers):
            for w in layers:
                x = x @ w
            for i in range(3):
                x = x + i
            return lax.fori_loop(0, x.shape[0], lambda i, t: t + x[i], 0.0)
        """,
    ),
    "JX103": (
        """
        @jax.jit
        def f(x):
            if x.sum() > 0:  # <-
                return x
            return -x
        """,
        """
        @jax.jit
        def f(x, scale=None):
            if x.ndim == 2 and scale is not None:
                x = x * scale
            return jnp.where(x.sum() > 0, x, -x)
        """,
    ),
    "JX104": (
        """
        def draw(key):
            a = random.normal(key, (3,))
            b = random.uniform(key, (3,))  # <-
            return a + b
        """,
        """
        def draw(key):
            key, sub = random.split(key)
            a = random.normal(sub, (3,))
            b = random.uniform(key, (3,))
            return a + b
        """,
    ),
    "JX105": (
        """
        @jax.jit
        def f(x):
            y = jnp.zeros(3)
            y[0] = x  # <-
            return y
        """,
        """
        @jax.jit
        def f(x, params):
            y = jnp.zeros(3)
            y = y.at[0].set(x)
            params["w"] = y
            return params
        """,
    ),
    "JX106": (
        """
        seen = []

        @jax.jit
        def f(x):
            seen.append(x)  # <-
            return x
        """,
        """
        @jax.jit
        def f(x):
            seen = []
            seen.append(x)
            return jnp.stack(seen)
        """,
    ),
    "JX107": (
        """
        @jax.jit
        def f(x):
            return x[x > 0].sum()  # <-
        """,
        """
        @jax.jit
        def f(x):
            return jnp.where(x > 0, x, 0.0).sum() + jnp.nonzero(x, size=2)[0].sum()
        """,
    ),
    "JX108": (
        """
        def run(xs):
            out = []
            for x in xs:
                out.append(jax.jit(lambda v: v * 2)(x))  # <-
            return out
        """,
        """
        def run(xs):
            double = jax.jit(lambda v: v * 2)
            return [double(x) for x in xs]
        """,
    ),
    "JX109": (
        """
        @jax.jit
        def f(x):
            print("x is", x)  # <-
            return x
        """,
        """
        @jax.jit
        def f(x):
            print("tracing f")
            jax.debug.print("x is {x}", x=x)
            return x
        """,
    ),
    "JX110": (
        """
        def run(x):
            return jax.pmap(lambda v: v * 2)(x)  # <-
        """,
        """
        def run(x):
            return jax.jit(jax.vmap(lambda v: v * 2))(x)
        """,
    ),
}


def marked_line(source: str) -> int:
    lines = textwrap.dedent(source).splitlines()
    return next(i for i, line in enumerate(lines, start=1) if "# <-" in line)


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_flags_its_anti_pattern(code):
    bad, _ = CASES[code]
    assert codes(bad) == [(code, marked_line(bad))]


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_is_quiet_on_the_fix(code):
    _, good = CASES[code]
    assert codes(good) == []


def test_every_rule_has_a_case_and_a_fix():
    assert sorted(CASES) == sorted(RULES)
    for rule in RULES.values():
        assert rule.summary and rule.fix and rule.code.startswith("JX")


@pytest.mark.parametrize("code", ["JX101", "JX103", "JX107"])
def test_flagged_code_really_fails_under_jit(code):
    """The positive snippets are not style opinions: JAX refuses them."""
    namespace: dict = {}
    exec(HEADER + textwrap.dedent(CASES[code][0]), namespace)  # our own test snippet
    with pytest.raises(Exception) as info:
        namespace["f"](np.arange(3.0) - 1.0)
    # TracerArrayConversionError, TracerBoolConversionError, NonConcreteBooleanIndexError
    assert type(info.value).__module__.startswith("jax"), repr(info.value)


def test_static_arguments_may_drive_python_control_flow():
    source = """
    @partial(jax.jit, static_argnums=(1,), static_argnames=("mode",))
    def f(x, n, mode="a"):
        if n > 2 and mode == "b":
            return x
        for i in range(n):
            x = x + 1
        return x

    def g(x, n):
        if n > 1:
            return x
        return -x

    h = jax.jit(g, static_argnames="n")
    k = jax.jit(g, static_argnums=1)
    v = jax.vmap(g, in_axes=(0, None))
    """
    assert codes(source) == []
    assert codes(source.replace('static_argnames="n"', "donate_argnums=0")) == [("JX103", 11)]


def test_functions_passed_by_name_to_lax_control_flow_are_checked():
    source = """
    def body(i, carry):
        if carry > 0:
            return carry
        return carry + i

    def cond(state):
        return state[0] < 10

    def step(state):
        if state[1]:
            return state
        return state

    out = lax.fori_loop(0, 3, body, 0.0)
    res = lax.while_loop(cond, step, (0, 1.0))
    both = lax.cond(True, lambda v: v if v > 0 else -v, lambda v: v, 1.0)
    """
    assert codes(source) == [("JX103", 3), ("JX103", 11), ("JX103", 17)]


def test_nested_functions_see_the_traced_values_of_their_transformed_parent():
    source = """
    @jax.jit
    def outer(x):
        def helper(v):
            if v > 0:
                return v
            return -v
        def body(i, acc):
            if x[0] > 0:
                return acc
            return acc + i
        return helper(x) + lax.fori_loop(0, 3, body, 0.0)
    """
    assert codes(source) == [("JX103", 9)]


def test_grad_alone_allows_python_control_flow_but_not_numpy():
    source = """
    def loss(x):
        if x > 0:
            return x ** 2
        return np.sin(x)

    g = jax.grad(loss)
    """
    assert codes(source) == [("JX101", 5)]


def test_key_reuse_in_loops_branches_and_comprehensions():
    source = """
    def sample(key, n):
        for _ in range(n):
            x = random.normal(key)
        if n > 2:
            return random.uniform(key)
        keys = random.split(key, n)
        return [random.normal(k) for k in keys] + [random.normal(key) for _ in range(n)]

    def fresh_every_time(key, n):
        for _ in range(n):
            key, sub = random.split(key)
            x = random.normal(sub)
        if n > 2:
            return random.uniform(key)
        return random.normal(key)
    """
    # line 7: the key the loop consumed is split afterwards, reused as well
    assert codes(source) == [("JX104", 4), ("JX104", 6), ("JX104", 7), ("JX104", 8)]


def test_a_branch_that_returns_does_not_count_as_a_use_afterwards():
    source = """
    def draw(key, kind):
        if kind == "normal":
            return random.normal(key)
        elif kind == "uniform":
            return random.uniform(key)
        raise ValueError(kind)
    """
    assert codes(source) == []


def test_tracer_guards_are_respected():
    source = """
    @jax.jit
    def f(x, check):
        if not isinstance(x, jax.core.Tracer) and x.sum() > 0:
            return x
        if not_jax_tracer(check):
            if check > 0:
                return x
        return x
    """
    assert codes(source) == []


def test_equinox_filter_jit_traces_only_arguments_annotated_as_arrays():
    source = """
    import equinox as eqx
    from jaxtyping import Array

    @eqx.filter_jit
    def solve(x: Array, options, n: int):
        if options.adaptive and n > 2:
            pass
        if x.sum() > 0:
            return x
        return -x
    """
    assert codes(source) == [("JX103", 9)]


def test_item_assignment_on_a_traced_dict_is_left_alone():
    source = """
    @jax.jit
    def f(state, i):
        log = state
        log["energy"] = i * 2
        out = jnp.zeros(4)
        arr = state["values"] * 2
        arr[1:3] = 0.0
        state[0] = 1.0
        return log, out, arr
    """
    assert codes(source) == [("JX105", 8), ("JX105", 9)]


def test_noqa_silences_one_rule_or_every_rule():
    source = """
    @jax.jit
    def f(x):
        if x.sum() > 0:  # noqa: JX103
            print(x)  # noqa
        return np.exp(x)  # noqa: JX103
    """
    assert codes(source) == [("JX101", 6)]


def test_select_and_ignore_take_codes_and_prefixes():
    bad = CASES["JX101"][0] + CASES["JX110"][0]
    assert [c for c, _ in codes(bad)] == ["JX101", "JX110"]
    assert [c for c, _ in codes(bad, select=["JX110"])] == ["JX110"]
    assert [c for c, _ in codes(bad, ignore=["JX11"])] == ["JX101"]
    assert codes(bad, select=["JX1"], ignore=["JX101", "JX110"]) == []
    with pytest.raises(InputError, match=r"select: no rule has the code 'JX999'"):
        codes(bad, select=["JX999"])
    with pytest.raises(InputError, match=r"ignore: no rule has the code 'E501'"):
        codes(bad, ignore=["E501"])


def test_a_file_that_does_not_parse_is_an_input_error():
    with pytest.raises(InputError, match=r"PATH: bad\.py:1:\d+: cannot parse"):
        lint_source("def f(:\n", "bad.py")


def test_lint_reads_folders_and_reports_counts(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(HEADER + textwrap.dedent(CASES["JX109"][0]))
    (tmp_path / "pkg" / "b.py").write_text(HEADER + textwrap.dedent(CASES["JX109"][1]))
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.py").write_text("def f(:\n")  # skipped, never parsed
    report = lint(tmp_path)
    assert report.files == 2 and not report.ok
    assert report.counts() == {"JX109": 1}
    assert report.lines == 2 * HEADER.count("\n") + sum(
        textwrap.dedent(CASES["JX109"][i]).count("\n") for i in (0, 1)
    )
    assert report.summary().endswith(f"Found 1 finding (JX109 1) in 2 files, {report.lines} lines")
    assert json.loads(json.dumps(report.to_dict()))["counts"] == {"JX109": 1}
    with pytest.raises(InputError, match=r"PATH: no such file or directory \(got '.*nowhere'\)"):
        lint(tmp_path / "nowhere")


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(HEADER + textwrap.dedent(CASES["JX103"][0] + CASES["JX104"][0]))
    good = tmp_path / "good.py"
    good.write_text(HEADER + textwrap.dedent(CASES["JX103"][1]))
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    return bad, good, broken


def invoke(*args):
    return CliRunner().invoke(cli, ["lint", *map(str, args)])


def test_cli_prints_ruff_style_lines_and_exits_1_on_findings(files):
    bad, good, _ = files
    result = invoke(bad)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{bad}:10:5: JX103 Python `if` on a traced value")
    assert lines[1].startswith(f"{bad}:16:9: JX104 key `key` already used on line 15")
    assert lines[-1].startswith("Found 2 findings (JX103 1, JX104 1) in 1 file")
    clean = invoke(good)
    assert clean.exit_code == 0 and clean.output.startswith("Found 0 findings")


def test_cli_json_has_the_documented_keys(files):
    bad, _, _ = files
    result = invoke(bad, "--format", "json", "--select", "JX104")
    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert [sorted(item) for item in payload] == [["code", "col", "fix", "line", "message", "path"]]
    assert payload[0]["code"] == "JX104" and payload[0]["line"] == 16 and payload[0]["col"] == 9
    assert payload[0]["fix"] == RULES["JX104"].fix


def test_cli_rules_lists_every_rule_with_its_fix():
    result = invoke("--rules")
    assert result.exit_code == 0
    for code, rule in RULES.items():
        assert f"{code}  {rule.summary}" in result.output
        assert f"fix: {rule.fix}" in result.output
    as_json = json.loads(invoke("--rules", "--format", "json").output)
    assert [r["code"] for r in as_json] == sorted(RULES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nowhere.py",), "PATH: no such file or directory"),
        (("--select", "JX999", "."), "--select: no rule has the code 'JX999'"),
        (("--ignore", "XYZ", "."), "--ignore: no rule has the code 'XYZ'"),
        ((), "give at least one file or folder to lint"),
        (("--format", "xml", "."), "Invalid value for '--format'"),
    ],
)
def test_cli_usage_errors_are_one_line_and_exit_2(args, message):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "jaxpro", "lint", *args], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr


def test_cli_parse_error_is_one_line_and_exit_2(files):
    import subprocess
    import sys

    _, _, broken = files
    done = subprocess.run(
        [sys.executable, "-m", "jaxpro", "lint", str(broken)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"jaxpro: error: PATH: {broken}:1:7: cannot parse: invalid syntax"


def test_partial_with_unknown_keywords_traces_only_array_annotated_arguments():
    source = """
    def kernel(x: jax.Array, axis_name, *, block=128):
        if axis_name == "x" and block > 64:
            return x
        if x.sum() > 0:
            return x
        return -x

    def build(**options):
        return jax.jit(jax.shard_map(partial(kernel, **options), mesh=None, in_specs=None,
                                     out_specs=None))
    """
    assert codes(source) == [("JX103", 5)]


def test_zip_and_enumerate_bind_element_by_element():
    source = """
    @jax.jit
    def f(xs, flags=(True, False)):
        out = [x if flag else -x for x, flag in zip(xs, flags)]
        for i, x in enumerate(xs):
            if i > 0:
                out.append(x)
        return out
    """
    assert codes(source) == []
