"""Progress the Prefect UI shows for long work: a progress artifact fed by `(done, total)`.

Each update is one API call made by the thread doing the work, so updates are throttled: the
first, then at most one every `every_s` seconds, and always the last (done == total). A run of
a million steps makes a few hundred calls at most, and a run of a few seconds one or two.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class ProgressArtifact:
    def __init__(self, description: str, every_s: float = 1.0) -> None:
        self.description = description
        self.every_s = every_s
        self.artifact: UUID | None = None
        self.shown: tuple[int, int] | None = None
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        final = total > 0 and done >= total
        if self.shown == (done, total) or (not final and now - self.last < self.every_s):
            return
        self.shown, self.last = (done, total), now
        percent = min(100.0, 100.0 * done / total) if total else 0.0
        description = f"{self.description}: {done} of {total}"
        if self.artifact is None:
            made: Any = create_progress_artifact(percent, description=description)
            self.artifact = made
        else:
            update_progress_artifact(self.artifact, percent, description=description)
