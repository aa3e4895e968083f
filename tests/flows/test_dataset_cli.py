"""`ldrt dataset build / show / list` after a refresh and an extraction, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.test_cli import run_ldrt

pytestmark = pytest.mark.unit


def test_build_show_list(tmp_path: Path) -> None:
    for args in (
        ["sample-corpus", "papers", "--papers", "5", "--seed", "9"],
        ["refresh", "--source", "folder:papers"],
        ["extract", "--pending"],
    ):
        assert run_ldrt(args, tmp_path).returncode == 0, args
    (tmp_path / "curation.yaml").write_text(
        "eval_share: 0.4\n"
        "filters:\n"
        "  - {name: caption_length, min_words: 5}\n"
        "  - {name: relevance, threshold: 1.0}\n"
        "  - {name: duplicate_images}\n"
    )
    built = run_ldrt(["dataset", "build", "--config", "curation.yaml", "--json"], tmp_path)
    assert built.returncode == 0, built.stderr
    stats = json.loads(built.stdout)
    assert [f["name"] for f in stats["filters"]] == [
        "caption_length",
        "relevance",
        "duplicate_images",
    ]
    assert stats["created"] is True
    shown = run_ldrt(["dataset", "show", stats["id"][:12]], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "caption_length" in shown.stdout and stats["id"] in shown.stdout.replace("\n", "")
    listed = run_ldrt(["dataset", "list"], tmp_path)
    assert stats["id"][:16] in listed.stdout

    (tmp_path / "bad.yaml").write_text("filters:\n  - {name: relevanse}\n")
    bad = run_ldrt(["dataset", "build", "--config", "bad.yaml"], tmp_path)
    assert bad.returncode == 2
    assert "relevance" in bad.stderr and "Traceback" not in bad.stderr
