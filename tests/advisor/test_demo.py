"""``jaxpro demo``: the five stories end to end, their HTML report, and what a browser shows.

Oracles: each story checks itself against the generating values, SciPy's
parameters or ``jax.vmap`` (see ``jaxpro.advisor._stories``); here the quick demo
runs as a user runs it (its own process, cold compilation cache) and every story
must pass within the issue's 60 s. The report is opened in headless Chromium (the
Debian package) where it is installed: the page must have decoded every figure
and its screenshot must show them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from jaxpro._result import Check, Plan, Timings
from jaxpro.advisor import _stories
from jaxpro.advisor._report import write_report
from jaxpro.advisor._stories import STORIES, Story, StoryDef, Table
from jaxpro.cli import cli

STORY_NAMES = ["curve", "hierarchical", "parallel", "md", "ode"]
QUICK_LIMIT_S = 60.0  # issue 19: `--quick` within 60 s on a 2-core CPU


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """``jaxpro demo --quick --json`` in a fresh process without the compilation cache."""
    out = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAXPRO_CACHE_DIR"] = "off"  # cold: what a new user waits for
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jaxpro", "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return done, out, seconds


def test_quick_demo_runs_every_story_and_each_passes_its_checks(quick_demo):
    done, out, seconds = quick_demo
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert list(results) == STORY_NAMES
    for name, story in results.items():
        assert story["passed"], (name, story["checks"])
        assert story["checks"] and all(check["passed"] for check in story["checks"])
        assert story["plan"]["method"] and story["plan"]["reasons"], name
    curve = results["curve"]
    assert "1,000,000-point" in curve["title"]  # --quick: 1e6 points instead of 1e7
    assert {c["name"] for c in curve["checks"]} >= {"agrees_with_scipy", "faster_than_scipy"}
    assert "4 chains, parallel" in results["hierarchical"]["plan"]["reasons"]
    assert any(c["name"] == "equals_vmap" for c in results["parallel"]["checks"])
    # the process as a whole, imports and cold compilation included
    assert seconds < QUICK_LIMIT_S, f"jaxpro demo --quick took {seconds:.1f} s"
    index = out / "index.html"
    assert f"report: {index.resolve()} (every check passed" in done.stderr


def test_the_report_holds_every_story_with_its_tables_figures_plan_and_checks(quick_demo):
    _, out, _ = quick_demo
    page = (out / "index.html").read_text()
    saved = json.loads((out / "stories.json").read_text())
    assert saved["quick"] is True and saved["passed"] is True
    for story in saved["stories"]:
        assert f'<section id="{story["name"]}">' in page
        for i, caption in enumerate(story["figures"], start=1):
            figure = out / "figures" / f"{story['name']}-{i}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f'src="figures/{figure.name}"' in page
            assert f"<figcaption>{caption}</figcaption>" in page
        for check in story["checks"]:
            assert f"<td>{check['name']}</td><td>passed</td>" in page
        assert f"<code>{story['plan']['method']}</code>" in page
    assert page.count("<figure>") == sum(len(s["figures"]) for s in saved["stories"]) >= 5


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_the_report_opens_in_headless_chromium_with_its_figures(quick_demo, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt install chromium)")
    _, out, _ = quick_demo
    index = (out / "index.html").resolve()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", index.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    figures = (out / "index.html").read_text().count("<figure>")
    # the page's load handler counts the figures the browser decoded
    assert f'data-figures-loaded="{figures}"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", index.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    # the first screen holds the curve fit's figure: its plotted colours (matplotlib's
    # C0 blue, C1 orange, C2 green bars) appear, not only text on white
    colourful = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.3
    assert colourful.mean() > 0.005, colourful.mean()
    assert (pixels < 0.9).any(axis=-1).mean() > 0.05  # more than a blank page


# ----------------------------------------------------------------------------- unit level


def _story(name: str, passed: bool = True) -> Story:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 2))
    figure.subplots().plot([0, 1], [1, 0])
    return Story(
        name, f"Title <{name}>", "Blurb & more", (Table("A <table>", ("a", "b"), ((1.5, "x<y"),)),),
        (("A figure", figure),),
        (Check("first", 1.0, 2.0, passed, "measured 1 < 2"),), Plan("lm", ("because <reason>",)),
        Timings(None, 0.5, 0.5),
    )  # fmt: skip


def test_write_report_escapes_text_and_marks_failures(tmp_path):
    index = write_report([_story("one"), _story("two", passed=False)], tmp_path, quick=True,
                         seconds=1.0)  # fmt: skip
    page = index.read_text()
    assert "Title &lt;one&gt;" in page and "<one>" not in page
    assert "x&lt;y" in page and "because &lt;reason&gt;" in page and "Blurb &amp; more" in page
    assert 'jaxpro demo: <span class="fail">FAILED</span>' in page
    assert (tmp_path / "figures" / "two-1.png").exists()
    saved = json.loads((tmp_path / "stories.json").read_text())
    assert [s["passed"] for s in saved["stories"]] == [True, False] and not saved["passed"]


def test_a_story_that_fails_or_raises_is_reported_and_the_exit_code_is_one(tmp_path, monkeypatch):
    def broken(quick, seed, step):
        raise ValueError("no data\nsecond line")

    stories = {"good": StoryDef("good", "good story", 1, lambda q, s, step: _story("good")),
               "bad": StoryDef("bad", "bad story", 1, broken)}  # fmt: skip
    monkeypatch.setattr("jaxpro.cli.demo.STORIES", stories)
    monkeypatch.setattr("jaxpro.cli.demo._cpu_devices_for_chains", lambda chains: None)
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    saved = json.loads((tmp_path / "stories.json").read_text())
    bad = saved["stories"][1]
    assert not bad["passed"] and bad["checks"][0]["message"] == "ValueError: no data; second line"
    assert saved["stories"][0]["passed"]


def test_every_story_is_listed_in_the_help():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0
    for name in STORY_NAMES:
        assert name in result.output
    assert list(STORIES) == STORY_NAMES


def test_the_stories_generate_their_data_from_fixed_seeds():
    frame = _stories.sleep_study_frame()
    assert frame.shape == (180, 3) and frame["subject"].nunique() == 18
    np.testing.assert_array_equal(frame["reaction"], _stories.sleep_study_frame()["reaction"])


def test_report_directory_defaults_to_jaxpro_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stories = {"good": StoryDef("good", "good story", 1, lambda q, s, step: _story("good"))}
    monkeypatch.setattr("jaxpro.cli.demo.STORIES", stories)
    monkeypatch.setattr("jaxpro.cli.demo._cpu_devices_for_chains", lambda chains: None)
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    assert Path("jaxpro-demo/index.html").exists()
    assert "report:" in result.output and "every check passed" in result.output


# slow (about a minute): the full stories, a 1e7-point fit among them, within the
# issue's 5 minutes on a 2-core CPU (measured 2026-12-07: 56 s)
@pytest.mark.slow
def test_the_full_demo_runs_within_five_minutes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jaxpro", "demo", "--out", str(tmp_path),
                           "--json"], capture_output=True, text=True, timeout=900, env=env)  # fmt: skip
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert all(story["passed"] for story in results.values()), results
    assert "10,000,000-point" in results["curve"]["title"]
    assert seconds < 300.0, f"jaxpro demo took {seconds:.0f} s"
