"""Train/eval split by paper, and removal of evaluation images that leak from training.

Input: the pairs the filters kept. Output: each pair's split, and the evaluation pairs dropped
because their image is a near duplicate of a training image (the same figure in a preprint and
in its journal version, say). The split is a hash of the paper id: deterministic, every figure of
a paper on one side, and a paper never changes side as the corpus grows week by week.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from ldrt_core.curate.imagehash import NearCopies, phash
from ldrt_core.curate.records import PairCandidate

SPLIT_SALT = "ldrt-split-v1"  # changing it reshuffles every paper: a new split version


def split_of(paper_id: str, eval_share: float, salt: str = SPLIT_SALT) -> str:
    digest = hashlib.sha256(f"{salt}:{paper_id}".encode()).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < eval_share else "train"


@dataclass
class SplitResult:
    train: list[PairCandidate] = field(default_factory=list)
    eval: list[PairCandidate] = field(default_factory=list)
    leaked: dict[str, str] = field(default_factory=dict)  # eval pair_key -> train pair_key


def split_pairs(
    pairs: Sequence[PairCandidate],
    eval_share: float = 0.03,
    max_distance: int = 4,
    salt: str = SPLIT_SALT,
) -> SplitResult:
    result = SplitResult()
    for pair in pairs:
        (
            result.eval if split_of(pair.paper_id, eval_share, salt) == "eval" else result.train
        ).append(pair)
    if not result.eval or not result.train:
        return result
    train = NearCopies(max_distance)
    for pair in result.train:
        train.add(pair.pair_key, pair.image, _hash(pair))
    train_exact = {pair.image_sha256: pair.pair_key for pair in result.train}
    kept = []
    for pair in result.eval:
        twin = train_exact.get(pair.image_sha256)
        if twin is None:
            near = train.find(pair.image, _hash(pair))
            twin = near[0] if near else None
        if twin is None:
            kept.append(pair)
        else:
            result.leaked[pair.pair_key] = twin
    result.eval = kept
    return result


def _hash(pair: PairCandidate) -> int:
    with Image.open(io.BytesIO(pair.image)) as image:
        return phash(image)
