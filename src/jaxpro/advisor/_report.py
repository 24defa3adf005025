"""The demo's HTML report: one page with every story's tables, figures, plan and checks.

``write_report(stories, directory)`` writes ``index.html``, its figures as PNG
files under ``figures/`` and ``stories.json`` (the same content, machine
readable). Every piece of text is HTML-escaped; the page needs no network and no
script to show (a one-line script only records, in the page itself, how many
figures the browser loaded: the report's test reads it).
"""

from __future__ import annotations

import datetime
import html
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxpro._result import jsonable
from jaxpro.advisor._stories import Story

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child, table.text td { text-align: left; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
.pass { color: #176b2c; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
.meta { color: #555; font-size: 0.9em; } figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { color: #555; }
ul.reasons { font-size: 0.92em; } code { background: #f3f3f3; padding: 0 0.2em; }
"""

# Records how many figures the browser decoded (a headless-browser test reads it
# from the DOM); the report shows the same without it.
_SCRIPT = (
    "window.addEventListener('load', function () { var n = 0;"
    " document.querySelectorAll('figure img').forEach(function (i) {"
    " if (i.complete && i.naturalWidth > 0) { n += 1; } });"
    " document.body.setAttribute('data-figures-loaded', String(n)); });"
)


def _text(value: Any) -> str:
    return html.escape(str(value))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _text(format(value, ".6g"))
    return _text(value)


def _table(
    caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = ""
) -> str:
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f' class="{css}"' if css else ""
    return (
        f"<table{attribute}><caption>{_text(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _verdict(passed: bool) -> str:
    return '<span class="pass">passed</span>' if passed else '<span class="fail">FAILED</span>'


def _machine() -> str:
    import jax

    import jaxpro

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = jax.devices()
    return (
        f"jaxpro {jaxpro.__version__}, jax {jax.__version__}, Python {platform.python_version()};"
        f" {cores} CPU cores ({platform.processor() or platform.machine()}), JAX backend"
        f" {jax.default_backend()} with {len(devices)} device(s)"
    )


def _story(story: Story, figures: list[str]) -> str:
    parts = [
        f'<section id="{_text(story.name)}">',
        f"<h2>{_text(story.title)} ({_verdict(story.passed)})</h2>",
        f"<p>{_text(story.blurb)}</p>",
    ]
    parts += [_table(t.caption, t.headers, t.rows) for t in story.tables]
    for (caption, _), path in zip(story.figures, figures, strict=True):
        parts.append(
            f'<figure><img src="{_text(path)}" alt="{_text(caption)}">'
            f"<figcaption>{_text(caption)}</figcaption></figure>"
        )
    checks = [(c.name, "passed" if c.passed else "FAILED", c.message) for c in story.checks]
    parts.append(_table("Checks", ("check", "result", "measured"), checks, css="text"))
    reasons = "".join(f"<li>{_text(r)}</li>" for r in story.plan.reasons)
    parts.append(
        f"<p><b>Plan:</b> method <code>{_text(story.plan.method)}</code></p>"
        f'<ul class="reasons">{reasons}</ul>'
        f'<p class="meta">{_text(story.timings.summary())}</p></section>'
    )
    return "\n".join(parts)


def write_report(
    stories: Sequence[Story], directory: str | Path, *, quick: bool, seconds: float
) -> Path:
    """Write the report of ``stories`` into ``directory`` (created if needed).

    Args:
        stories: the stories run, in order.
        directory: where ``index.html``, ``figures/`` and ``stories.json`` go.
        quick: whether the stories ran in their quick form (said in the report).
        seconds: the whole demo's wall time.

    Returns:
        The path of ``index.html``.
    """
    out = Path(directory)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    sections, summary = [], []
    for story in stories:
        paths = []
        for i, (_, figure) in enumerate(story.figures, start=1):
            path = f"figures/{story.name}-{i}.png"
            figure.savefig(out / path, dpi=100)
            paths.append(path)
        sections.append(_story(story, paths))
        summary.append(
            (story.title, "passed" if story.passed else "FAILED",
             f"{sum(c.passed for c in story.checks)} of {len(story.checks)}",
             f"{story.timings.total:.1f} s")
        )  # fmt: skip
    passed = all(story.passed for story in stories)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jaxpro demo</title>
<style>{_STYLE}</style></head>
<body>
<h1>jaxpro demo: {_verdict(passed)}</h1>
<p class="meta">{_text(when)}; {"quick" if quick else "full"} run of {len(stories)} stories in
{seconds:.1f} s. {_text(_machine())}.</p>
{_table("Stories", ("story", "result", "checks passed", "time"), summary)}
{"".join(sections)}
<script>{_SCRIPT}</script>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    payload = {"quick": quick, "seconds": seconds, "passed": passed,
               "stories": [story.to_dict() for story in stories]}  # fmt: skip
    (out / "stories.json").write_text(json.dumps(jsonable(payload), indent=2) + "\n")
    return index
