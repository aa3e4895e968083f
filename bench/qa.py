"""Client overhead of the LLM backend: requests/s of `complete_batch` against an instant server.

    python bench/qa.py [--requests 400]

Input: N small schema-constrained requests. Output: one line per concurrency (1, 8, 32) with the
requests/s of `OpenAIHTTPClient.complete_batch` against the loopback OpenAI replay, which answers
a fixed valid JSON at once: HTTP, JSON and validation cost only, not a model's speed. The
replay runs in a process of its own so that it does not share the client's GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ldrt_core.llm import Completion, Message, Request
from ldrt_core.llm.openai_http import OpenAIHTTPClient
from tests.support.openai_replay import OpenAIReplay

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["plot", "diagram", "photo"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
ANSWER = '{"label": "plot", "score": 0.87}'


def _answer(body: dict[str, Any]) -> str:
    return ANSWER


def _serve(conn: Connection) -> None:
    """In the child process: serve until the parent says stop."""
    with OpenAIReplay(_answer) as server:
        conn.send(server.url)
        conn.recv()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()

    requests = [
        Request(
            messages=(
                Message("system", "Label the figure. Answer JSON."),
                Message("user", f"Figure {i}: dose-response curve of IL-6 after 0.5 Gy."),
            ),
            json_schema=SCHEMA,
        )
        for i in range(args.requests)
    ]
    parent, child = multiprocessing.get_context("spawn").Pipe()
    replay = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,))
    replay.start()
    try:
        url = parent.recv()
        for concurrency in (1, 8, 32):
            client = OpenAIHTTPClient(url, "bench", None, concurrency=concurrency)
            client.complete_batch(requests[:4])  # warm up: imports, first connections
            started = time.perf_counter()
            results = client.complete_batch(requests)
            elapsed = time.perf_counter() - started
            ok = sum(isinstance(r, Completion) for r in results)
            if ok != len(requests):
                sys.exit(f"only {ok} of {len(requests)} requests succeeded")
            print(
                f"concurrency {concurrency:>2}: {len(requests) / elapsed:7.0f} requests/s "
                f"({len(requests)} requests in {elapsed:.2f} s)"
            )
            client.close()
    finally:
        parent.send("stop")
        replay.join(10)


if __name__ == "__main__":
    main()
