"""QA generation: leak filters, the template backend on the sample corpus, an LLM over HTTP."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ldrt_core import db
from ldrt_core.curate.dataset import CurationConfig, build_dataset
from ldrt_core.db.models import DatasetVersion
from ldrt_core.errors import LdrtError
from ldrt_core.llm.openai_http import OpenAIHTTPClient
from ldrt_core.qa import LLMQAGenerator, TemplateQAGenerator, generate_for_dataset
from ldrt_core.qa.clean import clean_turn
from ldrt_core.qa.generate import QAInput
from ldrt_core.qa.prompts import BRIEF_INSTRUCTIONS, SCHEMA
from ldrt_core.store import ArtifactStore
from tests.support.corpus import extracted_world
from tests.support.openai_replay import Malformed, OpenAIReplay, Reply, Sleep, Status

pytestmark = pytest.mark.unit

CAPTION = (
    "Figure 2. Dose-dependent changes in IL-6 after LDRT in mice with collagen-induced "
    "arthritis, measured over seventy-two hours of follow-up."
)


def test_the_cache_key_covers_what_the_prompt_is_made_of() -> None:
    """Better citing sentences after a re-extraction, or a corrected title, are a new prompt:
    its conversations are generated again, not taken from the cache."""
    caption = "Figure 1. Cell counts."
    base = QAInput("ab" * 32, "figures/x.png", caption, ("It rose.",), "T", "train")
    generator = TemplateQAGenerator()
    key = generator.cache_key(base)
    assert generator.cache_key(dataclasses.replace(base, image="figures/y.png")) == key
    for changed in (
        dataclasses.replace(base, mentions=("It rose after 0.5 Gy (Figure 1).",)),
        dataclasses.replace(base, title="T (corrected)"),
        dataclasses.replace(base, pair_sha256="cd" * 32),
    ):
        assert generator.cache_key(changed) != key


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        (
            "What is shown?",
            "IL-6 falls as the dose rises.",
            ("What is shown?", "IL-6 falls as the dose rises."),
        ),
        ("What is shown?", "Based on the caption, IL-6 falls.", ("What is shown?", "IL-6 falls.")),
        (
            "What is shown?",
            "According to the description: IL-6 falls.",
            ("What is shown?", "IL-6 falls."),
        ),
        ("What does the caption say?", "That IL-6 falls with dose.", "leaks"),
        ("What is shown?", "The caption says IL-6 falls.", "leaks"),
        ("What is shown?", "I cannot see the image, but IL-6 probably falls.", "leaks"),
        ("What is shown?", "Sorry, I am not able to help.", "leaks"),
        (
            "What is shown?",
            "It shows dose-dependent changes in IL-6 after LDRT in mice with collagen-induced "
            "arthritis.",
            "copies",
        ),
    ],
)
def test_leaking_turns_are_dropped_and_prefixes_trimmed(
    question: str, answer: str, expected: tuple[str, str] | str
) -> None:
    cleaned = clean_turn(question, answer, CAPTION)
    if isinstance(expected, tuple):
        assert cleaned == expected
    else:
        assert isinstance(cleaned, str) and cleaned.startswith(expected)


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, ArtifactStore, str]:
    engine, store = extracted_world(
        tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("papers"), papers=8, seed=0
    )
    version = build_dataset(engine, store, CurationConfig(eval_share=0.2)).id
    return engine, store, version


def check_llava(records: list[dict[str, Any]]) -> None:
    for record in records:
        turns = record["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith("<image>\n")
        assert all("<image>" not in t["value"] for t in turns[1:])
        assert all(t["value"].strip() for t in turns)
        assert "caption" not in json.dumps(turns).lower()


def test_template_backend_covers_the_whole_sample_corpus(
    curated: tuple[Engine, ArtifactStore, str],
) -> None:
    engine, store, version = curated
    summary = generate_for_dataset(engine, store, version, TemplateQAGenerator())
    assert summary.failed == 0 and summary.generated == summary.pairs > 0
    train = json.loads(store.get(f"datasets/{summary.instruct_id}/llava_instruct_train.json"))
    check_llava(train)
    assert Counter(r["category"] for r in train) == {
        "conversation": summary.records["align_train.json"],
        "detailed_description": summary.records["align_train.json"],
        "complex_reasoning": summary.records["align_train.json"],
    }
    align = json.loads(store.get(f"datasets/{summary.align_id}/align_train.json"))
    check_llava(align)
    assert {r["conversations"][0]["value"].split("\n", 1)[1] for r in align} <= set(
        BRIEF_INSTRUCTIONS
    )

    again = generate_for_dataset(engine, store, version, TemplateQAGenerator())
    assert (again.generated, again.cached) == (0, summary.pairs)
    assert (again.instruct_id, again.align_id) == (summary.instruct_id, summary.align_id)
    with db.session_scope(engine) as session:
        derived = {v.id: v for v in session.scalars(select(DatasetVersion))}
    assert derived[summary.instruct_id].parent_id == version
    assert derived[summary.instruct_id].kind == "instruct"
    assert derived[summary.align_id].kind == "align"


GOOD = json.dumps(
    {
        "conversation": [
            {"question": "What is plotted here?", "answer": "Cytokine levels by radiation dose."},
            {"question": "Which dose works best?", "answer": "The effect peaks around 0.5 Gy."},
        ],
        "detailed_description": {
            "question": "Describe the figure in detail.",
            "answer": "Bars show cytokine release falling with dose, with error bars.",
        },
        "complex_reasoning": {
            "question": "Why might the response be non-linear?",
            "answer": "Different signalling thresholds in immune cells may shape the response.",
        },
    }
)
LEAKY = json.loads(GOOD)
LEAKY["conversation"][1]["answer"] = "The caption says 0.5 Gy."


def test_an_llm_over_http_with_faults_loses_no_pair(
    curated: tuple[Engine, ArtifactStore, str],
) -> None:
    engine, store, version = curated
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    faults: dict[int, list[Reply]] = {
        0: [Malformed(), GOOD],  # bad JSON, then good
        1: ['{"conversation": []}'] * 3,  # a schema violation that never clears: a failure
        2: [Status(500), GOOD],
        3: [Sleep(2.0, then=GOOD), GOOD],  # a timeout, then good
        4: [json.dumps(LEAKY)],  # one turn leaks: dropped, the rest kept
    }
    order: dict[str, int] = {}

    def script(body: dict[str, Any]) -> Reply:
        # The first user message carries the pair; re-asks append the bad answer after it.
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        caption = text.split("Caption: ", 1)[1].split("\n", 1)[0]
        with lock:
            index = order.setdefault(caption, len(order))
            attempt = seen[caption]
            seen[caption] += 1
        replies = faults.get(index, [GOOD])
        return replies[min(attempt, len(replies) - 1)]

    with OpenAIReplay(script) as server:
        client = OpenAIHTTPClient(
            server.url,
            "replay-model",
            api_key=None,
            timeout_s=1.0,
            backoff_s=0.01,
            max_invalid_retries=2,
        )
        summary = generate_for_dataset(engine, store, version, LLMQAGenerator(client))
        assert summary.generated + summary.failed == summary.pairs
        assert summary.failed == 1
        assert summary.dropped_turns == 1
        (failure,) = summary.failures.values()
        assert "attempts" in failure
        first_hits = server.chat_hits
        assert server.requests[0]["response_format"]["json_schema"]["schema"] == SCHEMA

        again = generate_for_dataset(engine, store, version, LLMQAGenerator(client))
        assert again.cached == summary.pairs - 1  # only the failed pair is asked again
        assert server.chat_hits - first_hits == 3  # its three attempts
        client.close()
    records = json.loads(store.get(f"datasets/{summary.instruct_id}/llava_instruct_train.json"))
    check_llava(records)


def test_an_llm_outage_stores_no_empty_version(
    curated: tuple[Engine, ArtifactStore, str], tmp_path: Path
) -> None:
    """Every pair failing is the LLM's trouble, not the pairs': no version with no conversations
    (it would become the newest, and the next `ldrt train` would find nothing to train on)."""
    engine, store, version = curated
    before = set(store.list("datasets/"))
    client = OpenAIHTTPClient(
        "http://127.0.0.1:9/v1", "down", api_key=None, timeout_s=1.0, max_retries=0
    )
    with pytest.raises(LdrtError, match=r"all \d+ pairs failed .*no dataset version was stored"):
        generate_for_dataset(engine, store, version, LLMQAGenerator(client))
    client.close()
    assert set(store.list("datasets/")) == before


def test_a_curated_version_is_required(
    curated: tuple[Engine, ArtifactStore, str], tmp_path: Path
) -> None:
    engine, store, version = curated
    derived = generate_for_dataset(engine, store, version, TemplateQAGenerator())
    from ldrt_core.errors import LdrtError

    with pytest.raises(LdrtError, match="curated"):
        generate_for_dataset(engine, store, derived.instruct_id, TemplateQAGenerator())
