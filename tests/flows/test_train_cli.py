"""`ldrt train`, `ldrt model list / show / merge` as a user runs them, on PostgreSQL and S3.

Input: the sample corpus taken through `ldrt refresh`, `extract`, `dataset build` and `qa
generate`, then both training stages of the tiny random LLaVA. Output: exit codes, the JSON the
commands print, the progress bar on stderr, and the merged checkpoint on disk.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load
from sqlalchemy import select

from ldrt_core import db
from ldrt_core.config import load_settings
from ldrt_core.db.models import TrainingRun
from ldrt_core.fsck import check
from ldrt_core.store import open_store
from tests.flows.test_cli import LDRT, REPO, run_ldrt

pytestmark = pytest.mark.slow


def generate_conversations(
    cwd: Path, papers: int, seed: int, env: dict[str, str] | None = None
) -> None:
    """The sample corpus through refresh, extract, dataset build and qa generate, by the CLI."""
    made = run_ldrt(["sample-corpus", "papers", "--papers", str(papers), "--seed", str(seed)], cwd)
    assert made.returncode == 0, made.stderr
    for args in (
        ["refresh", "--source", "folder:papers"],
        ["extract", "--pending"],
        ["dataset", "build"],
        ["qa", "generate"],
    ):
        result = run_ldrt(args, cwd, env, timeout=300)
        assert result.returncode == 0, (args, result.stderr)


@pytest.mark.integration
def test_train_both_stages_list_show_merge(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "LDRT_DB_URL": pg_url, "LDRT_TRAIN_CHECKPOINT_EVERY": "2"}
    generate_conversations(tmp_path, papers=3, seed=5, env=env)

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


def test_two_processes_train_one_run_with_zero3(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m flows.cli train --deepspeed zero3` on CPU (gloo): the two
    ranks share one run id, rank 0 alone records it, and every sample is seen once a step."""
    import os
    import subprocess
    import sys

    from tests.conftest import _free_port as free_port
    from tests.flows.test_cli import REPO

    generate_conversations(tmp_path, papers=2, seed=8)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LDRT_", "PREFECT_"))}
    env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "-m",
            "flows.cli",
            "train",
            "--stage",
            "instruct",
            "--max-steps",
            "3",
            "--batch-size",
            "2",
            "--lora-r",
            "8",
            "--deepspeed",
            "zero3",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    start = re.search(r"^\[$", launched.stdout, re.MULTILINE).start()  # after DeepSpeed's logs
    (summary,) = json.loads(launched.stdout[start:])  # rank 0 prints, rank 1 does not
    assert summary["metrics"]["steps"] == 3
    assert summary["metrics"]["samples_seen"] == 3 * 2 * 2
    listed = run_ldrt(["model", "show", summary["run_id"]], tmp_path)
    shown = json.loads(listed.stdout)
    assert shown["status"] == "completed" and shown["config"]["deepspeed"].endswith("zero3.json")


@pytest.mark.integration
def test_training_killed_with_sigkill_resumes_to_the_same_adapter(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str]
) -> None:
    """No chance to record anything: the run stays `running` with its checkpoints in the store,
    and `--resume` finishes it with the adapter an uninterrupted run makes."""
    env = {**s3_env, "LDRT_DB_URL": pg_url}
    generate_conversations(tmp_path, papers=3, seed=5, env=env)
    train = [
        *("train", "--stage", "instruct", "--epochs", "100", "--max-steps", "30"),
        *("--batch-size", "1", "--checkpoint-every", "2", "--instruct-lr", "5e-3"),
        *("--lora-r", "8", "--lora-alpha", "16", "--json"),
    ]
    straight = run_ldrt(train, tmp_path, env, timeout=300)
    assert straight.returncode == 0, straight.stderr
    [uninterrupted] = json.loads(straight.stdout)

    settings = load_settings({**env, "LDRT_HOME": str(tmp_path / ".ldrt")})
    engine, store = db.connect(settings), open_store(settings)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LDRT_", "PREFECT_"))}
    killed = subprocess.Popen(
        [*LDRT, *train],
        cwd=tmp_path,
        env={**clean, **env, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / ".p")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline and killed.poll() is None:
            with db.session_scope(engine) as session:
                run_id = session.scalar(
                    select(TrainingRun.id).where(TrainingRun.id != uninterrupted["run_id"])
                )
            if run_id and any(store.list(f"runs/{run_id}/checkpoints/step-4/")):
                break
            time.sleep(0.05)
        assert killed.poll() is None, "the run ended before a checkpoint could be awaited"
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.wait(30)
    assert run_id is not None
    with db.session_scope(engine) as session:
        row = session.get(TrainingRun, run_id)
        assert row is not None and row.status == "running"  # nobody could say otherwise

    resumed = run_ldrt(["train", "--resume", run_id[:10], "--json"], tmp_path, env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    [finished] = json.loads(resumed.stdout)
    assert finished["run_id"] == run_id and finished["metrics"]["steps"] == 30
    assert finished["metrics"]["resumed_from_step"] >= 4
    adapter = "adapter/adapter_model.safetensors"
    a = load(store.get(finished["outputs"][adapter]))
    b = load(store.get(uninterrupted["outputs"][adapter]))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert check(engine, store).ok
