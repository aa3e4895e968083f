"""The evaluation stage end to end: the tiny LLaVA answers with and without its adapter, judges
score over real HTTP, and the report lands in the store with its rows in the database.

Input: the sample corpus through curation, template QA and a short stage-2 run of the tiny random
LLaVA; judges are `OpenAIHTTPClient`s talking to a loopback OpenAI-compatible replay server
whose verdicts are scripted. Output: assertions on answers, scores, cache use, rows and report.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ldrt_core import db
from ldrt_core.curate.dataset import CurationConfig, build_dataset
from ldrt_core.db.models import EvaluationRun, EvaluationScore
from ldrt_core.errors import LdrtError
from ldrt_core.evaluate.answer import (
    Sampling,
    TransformersAnswerer,
    answerer_for_run,
    load_eval_items,
)
from ldrt_core.evaluate.judge import Judge
from ldrt_core.evaluate.stage import NO_JUDGE_NOTE, evaluate_run, latest_report
from ldrt_core.llm.openai_http import OpenAIHTTPClient
from ldrt_core.qa import TemplateQAGenerator, generate_for_dataset
from ldrt_core.train.loop import TrainConfig
from ldrt_core.train.model import TINY_RANDOM
from ldrt_core.train.runs import train_stage
from tests.support.corpus import extracted_world
from tests.support.openai_replay import OpenAIReplay

pytestmark = pytest.mark.slow

FAST = Sampling(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    engine, store = extracted_world(home, tmp_path_factory.mktemp("papers"), papers=4, seed=6)
    curated = build_dataset(engine, store, CurationConfig(eval_share=0.3)).id
    qa = generate_for_dataset(engine, store, curated, TemplateQAGenerator())
    run = train_stage(
        engine,
        store,
        home,
        dataset=qa.instruct_id,
        base_model=TINY_RANDOM,
        config=TrainConfig.for_stage(
            "instruct", max_steps=6, learning_rate=2e-2, lora_r=8, lora_alpha=16
        ),
    )
    return {"engine": engine, "store": store, "run": run.run_id, "instruct": qa.instruct_id}


def verdict(body: dict[str, Any]) -> str:
    """Scripted judges: "judge-a" gives 8 when the prompt mentions Gy, else 2; "judge-b" never
    answers with a verdict, to show an unparsable one is recorded as missing, not as a 0."""
    if body["model"] == "judge-b":
        return "I would rather not grade this."
    prompt = json.dumps(body["messages"])
    return json.dumps({"score": 8 if "Gy" in prompt else 2, "reason": "scripted"})


def test_a_verdict_is_reused_only_for_the_prompt_it_was_given(tmp_path: Path) -> None:
    """Cached per what the judge saw: new citing sentences (a re-extraction) are asked again."""
    from ldrt_core.evaluate.records import EvalItem
    from ldrt_core.evaluate.stage import _judge
    from ldrt_core.store import LocalStore

    store = LocalStore(tmp_path / "store")
    item = EvalItem("r#0", "r", "conversation", "figures/x.png", (), "Dose?", "0.5 Gy", "Fig. 1")
    with OpenAIReplay(verdict) as server:
        client = OpenAIHTTPClient(server.url, "judge-a", api_key=None, backoff_s=0.01)
        judge = Judge("judge-a", client)
        first = _judge(store, judge, [item], ["0.5 Gy"])
        again = _judge(store, judge, [item], ["0.5 Gy"])
        assert server.chat_hits == 1 and again == first
        _judge(
            store, judge, [dataclasses.replace(item, mentions=("It fell at 0.5 Gy.",))], ["0.5 Gy"]
        )
        assert server.chat_hits == 2


def test_eval_items_are_the_held_out_turns_with_their_context(world: dict[str, Any]) -> None:
    version, items = load_eval_items(world["engine"], world["store"], world["instruct"])
    assert version.id == world["instruct"] and items
    records = json.loads(world["store"].get(f"datasets/{version.id}/llava_instruct_eval.json"))
    turns = sum(len(r["conversations"]) // 2 for r in records)
    assert len(items) == turns
    assert len({i.item_id for i in items}) == len(items)
    assert all(i.caption and "<image>" not in i.question for i in items)
    later = [i for i in items if i.item_id.endswith("#1")]
    assert later and all(len(i.history) == 1 for i in later)


def test_the_adapter_changes_the_tiny_models_answers(world: dict[str, Any]) -> None:
    engine, store = world["engine"], world["store"]
    _, items = load_eval_items(engine, store, world["instruct"], limit=2)
    from ldrt_core.evaluate.answer import _image

    images = [_image(store, i.image) for i in items]
    base = TransformersAnswerer(TINY_RANDOM, sampling=FAST)
    tuned = answerer_for_run(engine, store, world["run"], FAST, None)
    assert type(tuned.model).__name__ == "PeftModelForCausalLM"  # applied, not merged
    assert base.key != tuned.key
    plain = base.answer(items, images)
    adapted = tuned.answer(items, images)
    assert len(plain) == len(adapted) == len(items)
    assert plain != adapted
    assert base.answer(items, images) == plain  # greedy: the same answers again


def test_evaluate_scores_both_models_and_stores_the_report(world: dict[str, Any]) -> None:
    engine, store = world["engine"], world["store"]
    with OpenAIReplay(verdict) as server:
        judges = [
            Judge(
                name,
                OpenAIHTTPClient(
                    server.url, name, api_key=None, max_retries=0, max_invalid_retries=0
                ),
            )
            for name in ("judge-a", "judge-b")
        ]
        summary = evaluate_run(
            engine, store, run=world["run"], judges=judges, limit=3, sampling=FAST
        )
        first_hits = server.hits["chat"]
        again = evaluate_run(engine, store, run=world["run"], judges=judges, limit=3, sampling=FAST)
        # Answers and judge-a's verdicts came from the store; judge-b's failures are asked again.
        assert server.hits["chat"] - first_hits == 2 * summary.items
    assert first_hits == 2 * 2 * summary.items  # two models, two judges
    assert again.data == summary.data
    with db.session_scope(engine) as session:
        rows = list(
            session.scalars(
                select(EvaluationRun).where(EvaluationRun.id.in_(summary.evaluations.values()))
            )
        )
        assert {r.status for r in rows} == {"completed"}
        assert {r.training_run_id for r in rows} == {None, world["run"]}
        assert all(r.report_key == f"{summary.report_prefix}/report.md" for r in rows)
        per_model = session.scalar(
            select(func.count())
            .select_from(EvaluationScore)
            .where(EvaluationScore.evaluation_run_id == rows[0].id)
        )
        assert per_model == summary.items * (3 + 2 + 2)  # rouge x3, length, hedges, 2 judges
        judged = list(
            session.scalars(
                select(EvaluationScore).where(EvaluationScore.metric == "judge:judge-a")
            )
        )
        assert judged and all(s.value in (2.0, 8.0) for s in judged)
        refused = list(
            session.scalars(
                select(EvaluationScore).where(EvaluationScore.metric == "judge:judge-b")
            )
        )
        assert refused and all(s.value is None and s.detail["error"] for s in refused)
    for name in ("report.md", "report.json", "scores.png"):
        assert store.exists(f"{summary.report_prefix}/{name}")
    markdown = store.get(f"{summary.report_prefix}/report.md").decode()
    assert "judge-a" in markdown and "ROUGE" in markdown
    assert latest_report(engine, world["run"]).report_key == f"{again.report_prefix}/report.md"


def test_without_judges_the_report_says_so_and_keeps_the_text_metrics(
    world: dict[str, Any],
) -> None:
    engine, store = world["engine"], world["store"]
    summary = evaluate_run(engine, store, run=world["run"], limit=2, sampling=FAST)
    markdown = store.get(f"{summary.report_prefix}/report.md").decode()
    assert NO_JUDGE_NOTE in markdown and "ROUGE" in markdown
    assert not store.exists(f"{summary.report_prefix}/scores.png")
    assert summary.judges == []


def test_an_unfinished_run_cannot_be_evaluated(world: dict[str, Any], tmp_path: Path) -> None:
    engine = world["engine"]
    from ldrt_core.db.models import TrainingRun

    with db.session_scope(engine) as session:
        row = session.get(TrainingRun, world["run"])
        assert row is not None
        copy = TrainingRun(
            id="00000000-dead-beef-0000-000000000000",
            stage="instruct",
            base_model=row.base_model,
            dataset_id=row.dataset_id,
            status="failed",
            config=row.config,
            config_hash=row.config_hash,
        )
        session.add(copy)
    with pytest.raises(LdrtError, match="evaluate a completed run"):
        evaluate_run(engine, world["store"], run="00000000-dead", limit=1, sampling=FAST)


def test_vllm_answering_is_prepared_or_refused_with_a_way_out(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """vLLM serves the base model with the run's projector and the LoRA kept unmerged: `merge_run(
    keep_adapter=True)` writes that; without vllm installed the backend says what to do."""
    import importlib.util

    import torch

    from ldrt_core.train.model import load_llava
    from ldrt_core.train.runs import merge_run

    engine, store = world["engine"], world["store"]
    out = merge_run(engine, store, world["run"], tmp_path / "served", keep_adapter=True)
    run = db_row(engine, world["run"])
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (out / "adapter" / name).read_bytes() == store.get(run.outputs[f"adapter/{name}"])
    served, _ = load_llava(out)
    base, _ = load_llava(TINY_RANDOM)
    projector = served.model.multi_modal_projector.linear_1.weight
    assert not torch.equal(projector, base.model.multi_modal_projector.linear_1.weight)
    layer = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(served.get_parameter(layer), base.get_parameter(layer))  # LoRA not merged

    with pytest.raises(LdrtError, match="use transformers or vllm"):
        evaluate_run(engine, store, run=world["run"], backend="tgi", limit=1, sampling=FAST)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(LdrtError, match=r"pip install -e '\.\[gpu\]'.*--backend transformers"):
            evaluate_run(engine, store, run=world["run"], backend="vllm", limit=1, sampling=FAST)


def db_row(engine: Any, run_id: str) -> Any:
    from ldrt_core.train.runs import find_run

    return find_run(engine, run_id)


def test_pairwise_judging_counts_position_bias_as_ties(world: dict[str, Any]) -> None:
    from ldrt_core.evaluate.judge import PAIR_SYSTEM

    def biased(body: dict[str, Any]) -> str:
        if body["messages"][0]["content"] == PAIR_SYSTEM:
            return json.dumps({"reason": "The first one.", "winner": "A"})  # always position A
        return json.dumps({"reason": "fine", "score": 5})

    engine, store = world["engine"], world["store"]
    with OpenAIReplay(biased) as server:
        judge = Judge("biased", OpenAIHTTPClient(server.url, "biased", api_key=None))
        summary = evaluate_run(
            engine, store, run=world["run"], judges=[judge], limit=2, sampling=FAST, pairwise=True
        )
    counts = summary.data["pairwise"]["biased"]
    assert counts["total"] == summary.items
    assert counts["ties"] == counts["inconsistent"] == summary.items
    assert counts["wins_a"] == counts["wins_b"] == 0
    with db.session_scope(engine) as session:
        values = list(
            session.scalars(
                select(EvaluationScore.value).where(EvaluationScore.metric == "pairwise:biased")
            )
        )
    assert values == [0.5] * summary.items
    markdown = store.get(f"{summary.report_prefix}/report.md").decode()
    assert "## Pairwise" in markdown and "position bias" in markdown


def test_judges_opened_before_a_bad_one_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge list that fails half-way (a typo in the third) leaves no client open: an `hf:`
    judge holds a model in memory, and the task's retry would open it again."""
    from ldrt_core.config import load_settings
    from ldrt_core.evaluate.stage import open_judges
    from ldrt_core.llm import factory

    closed: list[str] = []

    class Client:
        def __init__(self, model: str) -> None:
            self.model = model

        def close(self) -> None:
            closed.append(self.model)

    monkeypatch.setattr(factory, "open_llm", lambda _s, _b, model, *_: Client(model))
    settings = load_settings({"LDRT_HOME": str(tmp_path)})
    with pytest.raises(LdrtError, match="expected MODEL"):
        open_judges(settings, ["qwen@http://127.0.0.1:9/v1", "hf:/models/llama", "@typo"])
    assert closed == ["qwen", "/models/llama"]


def test_no_judges_given_means_ldrt_judges_and_an_empty_list_means_none(tmp_path: Path) -> None:
    """A flow run's `judges: []` (metrics only) is not the same as leaving it empty."""
    from ldrt_core.config import load_settings
    from ldrt_core.evaluate.stage import open_judges

    settings = load_settings({"LDRT_HOME": str(tmp_path), "LDRT_JUDGES": "qwen@http://x/v1"})
    configured = open_judges(settings, None)
    assert [judge.name for judge in configured] == ["qwen"]
    configured[0].client.close()
    assert open_judges(settings, []) == []
