"""`ldrt dataset build / show / list` after a refresh and an extraction, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


@pytest.mark.integration
def test_refresh_extract_curate_on_postgres_and_s3(
    tmp_path: Path, pg_url: str, s3_env: dict[str, str]
) -> None:
    env = {**s3_env, "LDRT_DB_URL": pg_url}
    assert (
        run_ldrt(["sample-corpus", "papers", "--papers", "4", "--seed", "11"], tmp_path).returncode
        == 0
    )
    for args in (["refresh", "--source", "folder:papers"], ["extract", "--pending"]):
        result = run_ldrt(args, tmp_path, env)
        assert result.returncode == 0, (args, result.stderr)
    first = run_ldrt(["dataset", "build", "--json"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    again = json.loads(run_ldrt(["dataset", "build", "--json"], tmp_path, env).stdout)
    assert (again["id"], again["created"]) == (built["id"], False)
    assert built["splits"]["train"] + built["splits"]["eval"] > 0
    shown = run_ldrt(["dataset", "show", built["id"][:8], "--json"], tmp_path, env)
    assert json.loads(shown.stdout)["id"] == built["id"]

    from ldrt_core.config import load_settings
    from ldrt_core.store import open_store

    store = open_store(load_settings(s3_env))
    llava = json.loads(store.get(f"datasets/{built['id']}/llava_train.json"))
    assert all(store.exists(record["image"]) for record in llava)


def test_qa_generate_with_the_template_backend(tmp_path: Path) -> None:
    for args in (
        ["sample-corpus", "papers", "--papers", "3", "--seed", "5"],
        ["refresh", "--source", "folder:papers"],
        ["extract", "--pending"],
    ):
        assert run_ldrt(args, tmp_path).returncode == 0, args
    built = json.loads(run_ldrt(["dataset", "build", "--json"], tmp_path).stdout)
    result = run_ldrt(["qa", "generate", "--dataset", built["id"][:10], "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["parent"] == built["id"] and summary["failed"] == 0
    assert summary["generated"] == summary["pairs"] > 0
    vllm = run_ldrt(["qa", "generate", "--dataset", built["id"], "--backend", "vllm"], tmp_path)
    assert vllm.returncode == 2 and "vllm serve" in vllm.stderr
    openai = run_ldrt(["qa", "generate", "--dataset", built["id"], "--backend", "openai"], tmp_path)
    assert openai.returncode == 2 and "LDRT_LLM_MODEL" in openai.stderr


def test_qa_generate_exits_1_when_a_pair_fails_and_a_rerun_retries_it(tmp_path: Path) -> None:
    from tests.ldrt_core.test_qa import GOOD
    from tests.support.openai_replay import OpenAIReplay, Reply

    for args in (
        ["sample-corpus", "papers", "--papers", "3", "--seed", "5"],
        ["refresh", "--source", "folder:papers"],
        ["extract", "--pending"],
        ["dataset", "build"],
    ):
        assert run_ldrt(args, tmp_path).returncode == 0, args
    broken: list[str] = []  # the caption of the one pair whose answers never parse

    def script(body: dict[str, Any]) -> Reply:
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        caption = text.split("Caption: ", 1)[1].split("\n", 1)[0]
        if not broken:
            broken.append(caption)
        return "not json at all" if caption == broken[0] else GOOD

    with OpenAIReplay(script) as server:
        env = {
            "LDRT_LLM_BASE_URL": server.url,
            "LDRT_LLM_MODEL": server.model,
            "LDRT_LLM_MAX_INVALID_RETRIES": "1",
        }
        qa = ["qa", "generate", "--backend", "openai", "--json"]
        first = run_ldrt(qa, tmp_path, env)
        assert first.returncode == 1, first.stderr
        summary = json.loads(first.stdout)
        assert summary["failed"] == 1 and summary["generated"] == summary["pairs"] - 1
        hits = server.chat_hits
        human = run_ldrt(qa[:-1], tmp_path, env)  # the human summary, and the same exit status
        assert human.returncode == 1 and "1 failed" in human.stdout, human.stderr
        assert server.chat_hits - hits == 2  # only the failed pair was asked again (twice)
