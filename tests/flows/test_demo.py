"""`ldrt demo`: the main job on embedded defaults, offline, as README's first command runs it.

Input: an empty folder. Output: the exit code, the stages' progress on stderr, a completed
training run per stage, and a report that `ldrt report latest` prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from tests.flows.test_cli import run_ldrt

pytestmark = pytest.mark.slow


def test_demo_runs_every_stage_and_leaves_a_report(tmp_path: Path) -> None:
    result = run_ldrt(
        ["demo", "--papers", "5", "--steps", "3", "--questions", "2"], tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("1/7 sample corpus", "3/7 extract", "6/7 train", "7/7 evaluate"):
        assert step in result.stderr
    assert "demo done" in result.stdout
    runs = run_ldrt(["model", "show", "latest"], tmp_path)
    shown = json.loads(runs.stdout)
    assert shown["status"] == "completed" and shown["stage"] == "instruct"
    assert shown["metrics"]["steps"] == 3 and shown["parent_run_id"]
    report = run_ldrt(["report", "latest"], tmp_path)
    assert report.returncode == 0 and "# Evaluation report" in report.stdout
    assert "Judging was skipped" in report.stdout and "ROUGE-1" in report.stdout
    (tmp_path / "taken").write_text("a file, not a folder")
    taken = run_ldrt(["report", "latest", "--out", "taken"], tmp_path)
    assert taken.returncode == 2 and "Traceback" not in taken.stderr, taken.stderr
    assert "cannot write the report to taken/" in taken.stderr


def demo_with_papers_cut(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pick: Callable[[list[Path]], list[Path]],
    args: list[str],
) -> Result:
    """`ldrt demo ARGS` in this process, its sample papers those `pick` chooses cut short (their
    downloads fail)."""
    from typer.testing import CliRunner

    import flows.cli as cli
    from tests.support.corpus import cut_short

    real = cli.sample_corpus

    def with_papers_cut(out_dir: Path, papers: int, seed: int) -> None:
        real(out_dir, papers=papers, seed=seed)
        for pdf in pick(sorted(out_dir.glob("*.pdf"))):
            cut_short(pdf)

    monkeypatch.setattr(cli, "sample_corpus", with_papers_cut)
    return CliRunner().invoke(
        cli.app,
        ["demo", *args],
        env={"LDRT_HOME": str(tmp_path / "home"), "LDRT_DOWNLOAD_RETRIES": "0"},
    )


def test_a_paper_that_fails_leaves_the_demo_to_finish_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the pipeline: the other papers go on through every stage; the exit status tells."""
    args = ["--papers", "5", "--steps", "2", "--questions", "2"]
    result = demo_with_papers_cut(tmp_path, monkeypatch, lambda pdfs: pdfs[:1], args)
    assert result.exit_code == 1, result.output[-3000:]
    assert "demo done" in result.output and "some items failed in: refresh" in result.output


def test_when_every_paper_fails_the_demo_says_so_before_the_error_it_leads_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ldrt_core.errors import LdrtError

    result = demo_with_papers_cut(tmp_path, monkeypatch, lambda pdfs: pdfs, ["--papers", "4"])
    assert isinstance(result.exception, LdrtError)  # `ldrt` prints it in one line, exit 2
    assert "no extracted figures" in str(result.exception)
    assert "items had failed in: refresh" in result.output
