"""`ldrt extract` as a user runs it: on a file, and over what a refresh stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.test_cli import run_ldrt
from tests.support.bad_pdfs import encrypted_pdf

pytestmark = pytest.mark.unit


def test_extract_a_file_to_json(tmp_path: Path) -> None:
    assert (
        run_ldrt(["sample-corpus", "papers", "--papers", "1", "--seed", "4"], tmp_path).returncode
        == 0
    )
    pdf = next((tmp_path / "papers").glob("*.pdf"))
    truth = json.loads(pdf.with_suffix(".json").read_text())
    result = run_ldrt(["extract", str(pdf), "--out", "figs", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pages"] == truth["pages"]
    assert [f["label"] for f in report["figures"]] == [f["label"] for f in truth["figures"]]
    for got, want in zip(report["figures"], truth["figures"], strict=True):
        assert got["page"] == want["page"]
        assert (
            len(got["bbox"]) == 4
            and got["bbox"][0] < got["bbox"][2]
            and got["bbox"][1] < got["bbox"][3]
        )
        assert all(abs(a - b) < 3 for a, b in zip(got["bbox"], want["bbox"], strict=True))
        assert got["caption"].startswith(want["caption"][:20])
        image = tmp_path / got["image"]  # relative paths stay relative to where ldrt ran
        assert image.parent == tmp_path / "figs" and image.read_bytes().startswith(b"\x89PNG")


def test_a_bad_file_is_one_readable_error(tmp_path: Path) -> None:
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf())
    result = run_ldrt(["extract", "locked.pdf"], tmp_path)
    assert result.returncode == 2
    assert "encrypted" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_file_that_cannot_be_read_is_one_readable_error(tmp_path: Path) -> None:
    result = run_ldrt(["extract", "/proc/self/mem"], tmp_path)  # a file that errors on read
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "cannot read /proc/self/mem" in result.stderr


def test_refresh_then_extract_pending(tmp_path: Path) -> None:
    assert run_ldrt(["sample-corpus", "papers", "--papers", "2"], tmp_path).returncode == 0
    (tmp_path / "papers" / "zz-locked.pdf").write_bytes(encrypted_pdf())
    assert run_ldrt(["refresh", "--source", "folder:papers"], tmp_path).returncode == 0
    first = run_ldrt(["extract", "--pending", "--json"], tmp_path)
    assert first.returncode == 1, first.stderr  # one document failed: the others are done
    summary = json.loads(first.stdout)
    assert (summary["documents"], summary["ok"], summary["failed"]) == (3, 2, 1)
    assert "EncryptedPDFError" in summary["failures"][0]["error"]
    second = run_ldrt(["extract", "--pending"], tmp_path)
    assert second.returncode == 0 and "0 documents" in second.stdout, second.stderr
    # --retry-failed really extracts the failed document again (it fails again: same bytes).
    again = run_ldrt(["extract", "--pending", "--retry-failed", "--json"], tmp_path)
    assert again.returncode == 1, again.stderr
    retried = json.loads(again.stdout)
    assert (retried["documents"], retried["ok"], retried["failed"]) == (1, 0, 1)
    assert "EncryptedPDFError" in retried["failures"][0]["error"]
