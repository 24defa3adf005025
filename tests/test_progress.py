"""The shared progress bar: off unless asked for (or on a terminal); both update modes."""

import io

import rich.progress

from jaxpro import _progress


def test_bar_is_off_without_a_terminal_and_updates_both_ways(monkeypatch):
    with _progress.progress_bar(False, 10) as update:
        assert update is None
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    with _progress.progress_bar(None, 10) as update:
        assert update is None
    seen = []
    monkeypatch.setattr(rich.progress.Progress, "update",
                        lambda self, task, **kw: seen.append(kw))  # fmt: skip
    for by in ("advance", "completed"):
        with _progress.progress_bar(True, 10, by=by) as update:
            update(4)
    assert seen == [{"advance": 4}, {"completed": 4}]
