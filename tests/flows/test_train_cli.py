"""`ldrt train`, `ldrt model list / show / merge` as a user runs them, on PostgreSQL and S3.

Input: the sample corpus taken through `ldrt refresh`, `extract`, `dataset build` and `qa
generate`, then both training stages of the tiny random LLaVA. Output: exit codes, the JSON the
commands print, the progress bar on stderr, and the merged checkpoint on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.test_cli import run_ldrt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_both_stages_list_show_merge(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "LDRT_DB_URL": pg_url, "LDRT_TRAIN_CHECKPOINT_EVERY": "2"}
    assert (
        run_ldrt(["sample-corpus", "papers", "--papers", "3", "--seed", "5"], tmp_path).returncode
        == 0
    )
    for args in (
        ["refresh", "--source", "folder:papers"],
        ["extract", "--pending"],
        ["dataset", "build"],
        ["qa", "generate"],
    ):
        result = run_ldrt(args, tmp_path, env, timeout=300)
        assert result.returncode == 0, (args, result.stderr)

    trained = run_ldrt(
        ["train", "--stage", "both", "--max-steps", "3", "--lora-r", "8", "--lora-alpha", "16"],
        tmp_path,
        env,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    assert "instruct: steps" in trained.stderr and "samples/s" in trained.stderr
    lines = trained.stdout.replace("\n  ", " ").splitlines()
    runs = [line.split()[2].rstrip(":") for line in lines if " run " in line]
    assert len(runs) == 2, trained.stdout

    listed = run_ldrt(["model", "list"], tmp_path, env)
    assert listed.returncode == 0 and all(r[:12] in listed.stdout for r in runs)
    shown = json.loads(run_ldrt(["model", "show", runs[1][:8]], tmp_path, env).stdout)
    assert shown["status"] == "completed" and shown["parent_run_id"] == runs[0]
    assert shown["metrics"]["steps"] == 3 and shown["config"]["lora_r"] == 8
    assert "adapter/adapter_model.safetensors" in shown["outputs"]

    merged = run_ldrt(["model", "merge", "latest", "--out", "merged"], tmp_path, env)
    assert merged.returncode == 0, merged.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "merged").iterdir()
    }

    resumed = run_ldrt(["train", "--resume", runs[1][:8]], tmp_path, env)
    assert resumed.returncode == 2 and "already completed" in resumed.stderr
    missing = run_ldrt(["train", "--base-model", "no/such/dir"], tmp_path, env)
    assert missing.returncode == 2 and "no model directory" in missing.stderr
    assert "Traceback" not in missing.stderr
