"""A flow run tagged TAG that prints its id and then works for SECONDS: a stand-in for a worker's
flow run process, which a test may kill. It sends heartbeats as our flows do.

    python -m tests.support.tagged_flow TAG SECONDS
"""

from __future__ import annotations

import sys
import time

from prefect import flow, tags
from prefect.runtime import flow_run

import flows  # noqa: F401  (our flows' heartbeats: flows/heartbeats.py)


@flow(name="ldrt-tagged-stand-in", persist_result=False)
def stand_in(seconds: float) -> None:
    print(flow_run.get_id(), flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    tag, seconds = sys.argv[1], float(sys.argv[2])
    with tags(tag):
        stand_in(seconds)
