"""``jaxpro mcp``: driven by the official SDK's own client over stdio, as an agent's host would.

Every tool is called once with good input; hostile input (paths outside the root or
through a symlink, oversized input, code in expressions, a run past its time bound)
comes back as an error result while the server goes on serving.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys

import numpy as np
import pytest

mcp = pytest.importorskip("mcp")


def _session(root, timeout=120):
    params = mcp.StdioServerParameters(
        command=sys.executable,
        args=["-m", "jaxpro", "mcp", "--root", str(root), "--timeout", str(timeout)],
    )
    return mcp.Client(params)


def _payload(result):
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def _error(result) -> str:
    assert result.is_error, result.content[0].text[:300]
    return result.content[0].text


def test_every_tool_answers_within_its_limits(tmp_path):
    x = np.linspace(0, 5, 40)
    y = 2.0 * np.exp(-0.7 * x) + 0.3 + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    (tmp_path / "decay.csv").write_text(
        "t,counts\n" + "\n".join(f"{a:.17g},{b:.17g}" for a, b in zip(x, y, strict=True)) + "\n"
    )

    async def run():
        async with _session(tmp_path) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"fit_curve", "fit_many", "bayes_fit", "solve_ode",
                                  "simulate_md", "simulate_flow", "lint_code", "plan"}  # fmt: skip
            schema = tools["fit_curve"].input_schema["properties"]
            assert schema["x"]["anyOf"][0]["maxItems"] == 1_000_000
            assert tools["simulate_flow"].input_schema["properties"]["grid"]["maximum"] == 512

            inline = _payload(await client.call_tool("fit_curve", {
                "expression": "a*exp(-b*x)+c", "x": x.tolist(), "y": y.tolist(),
                "p0": {"a": 1, "b": 1, "c": 0}}))  # fmt: skip
            values = {k: v["value"] for k, v in inline["result"]["parameters"].items()}
            assert values["b"] == pytest.approx(0.7, abs=0.05)
            assert all((tmp_path / f).exists() for f in inline["figures"])
            assert any(f.endswith(".png") for f in inline["figures"])

            from_file = _payload(await client.call_tool("fit_curve", {
                "expression": "a*exp(-b*t)+c", "data": "decay.csv", "x_column": "t",
                "y_column": "counts"}))  # fmt: skip
            assert from_file["result"]["parameters"]["b"]["value"] == pytest.approx(
                values["b"], rel=1e-6
            )

            many = _payload(await client.call_tool("fit_many", {
                "expression": "a*exp(-b*x)", "x": x[:10].tolist(),
                "curves": [(k * np.exp(-0.5 * x[:10])).tolist() for k in (1.0, 2.0, 3.0)]}))  # fmt: skip
            assert many["result"]["names"] == ["a", "b"]
            np.testing.assert_allclose(many["result"]["values"], [[1, 0.5], [2, 0.5], [3, 0.5]],
                                       rtol=1e-6)  # fmt: skip

            ode = _payload(await client.call_tool("solve_ode", {
                "equations": "dx = -k*x", "params": {"k": 0.5}, "y0": {"x": 1.0}, "t_end": 2.0,
                "points": 5}))  # fmt: skip
            assert ode["result"]["ys"][-1][0] == pytest.approx(math.exp(-1.0), rel=1e-5)

            flow = _payload(await client.call_tool("simulate_flow", {
                "flow": "taylor_green", "grid": 16, "reynolds": 20, "t_end": 0.2}))  # fmt: skip
            assert "taylor_green on 16 x 16" in flow["summary"]

            md = _payload(await client.call_tool("simulate_md", {"n": 108, "steps": 100}))
            assert "NVE simulation: 108 particles" in md["summary"]

            lint = _payload(await client.call_tool("lint_code", {
                "source": "import jax\nimport numpy as np\n@jax.jit\ndef f(x):\n"
                          "    return np.sin(x)\n"}))  # fmt: skip
            assert [f["code"] for f in lint["findings"]] == ["JX101"]

            advice = _payload(await client.call_tool("plan", {
                "domain": "fit", "facts": {"n": 1000, "params": 3, "calibrate": False}}))  # fmt: skip
            assert advice["result"]["method"] == "lm"

    asyncio.run(run())


def test_hostile_input_is_refused_and_the_server_keeps_serving(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_text("x,y\n1,2\n2,3\n")
    (root / "link.csv").symlink_to(outside)
    fit = {"expression": "a*x+b", "x_column": "x", "y_column": "y"}

    async def run():
        async with _session(root) as client:
            assert "outside the root" in _error(
                await client.call_tool("fit_curve", {**fit, "data": "../secret.csv"})
            )
            assert "outside the root" in _error(
                await client.call_tool("fit_curve", {**fit, "data": "link.csv"})
            )
            assert "outside the root" in _error(
                await client.call_tool("bayes_fit", {"data": str(outside), "formula": "y ~ x"})
            )
            assert "attribute access is not allowed" in _error(await client.call_tool(
                "fit_curve", {"expression": "__import__('os').system('ls')", "x": [1, 2],
                              "y": [1, 2]}))  # fmt: skip
            assert "is not 'd<state> = <expression>'" in _error(await client.call_tool(
                "solve_ode", {"equations": "import os", "y0": {"x": 1}, "t_end": 1}))  # fmt: skip
            assert "512" in _error(await client.call_tool("simulate_flow", {"grid": 100_000}))
            assert "200000" in _error(
                await client.call_tool("lint_code", {"source": "x = 1\n" * 40_000})
            )
            assert "above this server's limit" in _error(
                await client.call_tool("plan", {"domain": "md", "facts": {"n": 10**9}})
            )
            # a request for a tool that does not exist, and one with a wrong type
            assert "run_shell" in _error(await client.call_tool("run_shell", {"cmd": "ls"}))
            assert "grid" in _error(await client.call_tool("simulate_flow", {"grid": "big"}))
            # a cavity at Re 1000 on 128^2 takes about 30 s: cancelled at 3
            slow = await client.call_tool("simulate_flow", {
                "flow": "lid_driven_cavity", "grid": 128, "reynolds": 1000, "time_limit": 3})  # fmt: skip
            assert "exceeded its time bound of 3 s and was cancelled" in _error(slow)
            # still serving
            lint = _payload(await client.call_tool("lint_code", {"source": "x = 1\n"}))
            assert lint["count"] == 0

    asyncio.run(run())


@pytest.mark.slow
def test_bayes_fit_reads_a_file_under_the_root(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    rows = "\n".join(f"{a:.17g},{1 + 2 * a + rng.normal():.17g}" for a in x)
    (tmp_path / "reg.csv").write_text("x,y\n" + rows + "\n")

    async def run():
        async with _session(tmp_path, timeout=600) as client:
            posterior = _payload(await client.call_tool("bayes_fit", {
                "data": "reg.csv", "formula": "y ~ x", "chains": 2, "draws": 500}))  # fmt: skip
            assert "x" in posterior["summary"]

    asyncio.run(run())


def test_the_schema_choices_are_the_engines_own():
    """The tools' Literal choice lists are written out for the JSON schema: they must
    stay the lists the engines accept (a new family or flow would otherwise be refused
    by the server, and a removed one accepted and then fail in the child)."""
    from jaxpro import advisor
    from jaxpro.advisor._mcp import build_server
    from jaxpro.bayes._families import FAMILIES
    from jaxpro.cfd._flows import FLOWS
    from jaxpro.cli.bayes import FAMILY_NAMES
    from jaxpro.fit._losses import LOSSES
    from jaxpro.ode._solve import METHODS as ODE_METHODS

    async def schemas():
        return {t.name: t.input_schema["properties"] for t in await build_server("/").list_tools()}

    tools = asyncio.run(schemas())
    assert tools["bayes_fit"]["family"]["enum"] == list(FAMILY_NAMES)
    assert set(FAMILY_NAMES) == set(FAMILIES)
    for name in ("fit_curve", "fit_many"):
        assert tools[name]["loss"]["enum"] == list(LOSSES)
    # every solver but KenCarp5, which needs a split (explicit, implicit) pair
    assert set(tools["solve_ode"]["method"]["enum"]) == {"auto", *ODE_METHODS} - {"kencarp5"}
    assert set(tools["simulate_flow"]["flow"]["enum"]) == set(FLOWS)
    assert tools["plan"]["domain"]["enum"] == list(advisor.DOMAINS)
