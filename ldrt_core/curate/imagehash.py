"""Perceptual hashes of figure images, for finding the same figure twice.

Input: a PIL image (open PNG bytes with `Image.open(io.BytesIO(png))`). Output: an int of at most
64 bits, and the Hamming distance between two such ints. The same figure re-encoded, slightly
rescaled or JPEG-compressed lands within a few bits (<= 6 in the tests); different figures are
usually more than 10 bits apart. Transparent pixels count as white, as they look in a paper.

Not always: two charts drawn on one template with different data (a paper's 6-, 9- and 12-month
results) can land within 2 bits. `NearCopies` confirms each pHash match on the pixels
(`pixel_difference`) before it calls an image a copy.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

_PHASH_SIDE_FACTOR = 4  # phash reads a (4 * size)-square thumbnail: 32 x 32 for size 8


def dhash(image: Image.Image, size: int = 8) -> int:
    """Difference hash: a (size + 1) x size grey thumbnail, one bit per left-brighter-than-right."""
    _check_size(size)
    pixels = _grey(image, (size + 1, size))
    return _pack(pixels[:, :-1] > pixels[:, 1:])


def phash(image: Image.Image, size: int = 8) -> int:
    """DCT hash: a 32 x 32 grey thumbnail, its 2-D DCT-II, the top-left size x size block minus
    the DC term, one bit per coefficient above the block's median (size * size - 1 bits)."""
    _check_size(size)
    side = size * _PHASH_SIDE_FACTOR
    pixels = _grey(image, (side, side))
    basis = _dct_matrix(side)
    coefficients = basis @ pixels @ basis.T
    low = coefficients[:size, :size].reshape(-1)[1:]  # drop the DC term: mean brightness
    return _pack(low > np.median(low))


def hamming(a: int, b: int) -> int:
    """The number of bits in which two hashes differ."""
    return (a ^ b).bit_count()


def _check_size(size: int) -> None:
    if not 2 <= size <= 8:  # 8 x 8 bits is all a uint64 (and the split's numpy arrays) can hold
        raise ValueError(f"hash size must be between 2 and 8, got {size}")


def _grey(image: Image.Image, shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        image = flat
    grey = image.convert("L").resize(shape, Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def _dct_matrix(n: int) -> npt.NDArray[np.float64]:
    """The orthonormal DCT-II matrix C: C @ x is the DCT of a column vector x of length n."""
    k = np.arange(n, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    basis: npt.NDArray[np.float64] = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    basis[0, :] = np.sqrt(1.0 / n)
    return basis


def _pack(bits: npt.NDArray[np.bool_]) -> int:
    value = 0
    for bit in bits.reshape(-1):
        value = (value << 1) | int(bit)
    return value


def popcount(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Set bits per element: the Hamming distance of XORed hashes, vectorised."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        counts: npt.NDArray[np.int64] = np.bitwise_count(values).astype(np.int64)
        return counts
    bits = np.unpackbits(values.view(np.uint8).reshape(-1, 8), axis=1)
    slow: npt.NDArray[np.int64] = bits.sum(axis=1, dtype=np.int64)
    return slow


# Mean grey-level difference (0-255) over inked pixels. Measured on the 135 figures of the real
# test corpus at 150 dpi: each figure rescaled to 70%, to 50% and JPEG-compressed, or made grey
# differs from itself by at most 2.4; the 7 pairs of distinct figures pHash put within 8 bits
# differ by 9.6 (two photographs of one tooth a step of a procedure apart) to 40 (charts drawn
# on one template with other data: 17 to 30).
MAX_PIXEL_DIFFERENCE = 6.0
_THUMB_SIDE = 128
_INK = 200  # grey level under which a thumbnail pixel counts as drawn on


def thumbnail(image: Image.Image) -> npt.NDArray[np.float64]:
    """A blurred 128 x 128 grey thumbnail, for `pixel_difference`."""
    grey = _grey(image, (_THUMB_SIDE, _THUMB_SIDE))
    blurred = Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    return np.asarray(blurred, dtype=np.float64)


def pixel_difference(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """How far apart two thumbnails are where either is drawn on: the mean absolute difference of
    their grey levels over those pixels (0 when neither has ink)."""
    ink = (a < _INK) | (b < _INK)
    return float(np.abs(a - b)[ink].mean()) if ink.any() else 0.0


class NearCopies:
    """Images added so far, to find a near copy of a new one: a pHash within `max_distance` bits
    whose thumbnail differs by at most `max_difference` (`pixel_difference`). Hash matches are
    tried nearest first; only they are decoded again for their pixels.

    Compares each hash with every added one (numpy over 64-bit hashes): 10k images take seconds.
    """

    def __init__(self, max_distance: int, max_difference: float = MAX_PIXEL_DIFFERENCE) -> None:
        self.max_distance = max_distance
        self.max_difference = max_difference
        self._hashes = np.zeros(64, dtype=np.uint64)
        self._keys: list[str] = []
        self._images: list[bytes] = []
        self._thumbs: dict[int, npt.NDArray[np.float64]] = {}

    def add(self, key: str, image: bytes, value: int) -> None:
        if len(self._keys) == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[len(self._keys)] = value
        self._keys.append(key)
        self._images.append(image)

    def find(self, image: bytes, value: int) -> tuple[str, int] | None:
        """The key of the image `image` (pHash `value`) copies, and their pHash distance."""
        mine: npt.NDArray[np.float64] | None = None
        for index, distance in self._matches(value):
            if mine is None:
                mine = _thumb_of(image)
            if pixel_difference(mine, self._thumb(index)) <= self.max_difference:
                return self._keys[index], distance
        return None

    def _matches(self, value: int) -> Iterator[tuple[int, int]]:
        if not self._keys:
            return
        distances = popcount(np.bitwise_xor(self._hashes[: len(self._keys)], np.uint64(value)))
        close = np.flatnonzero(distances <= self.max_distance)
        for index in close[np.argsort(distances[close], kind="stable")]:
            yield int(index), int(distances[index])

    def _thumb(self, index: int) -> npt.NDArray[np.float64]:
        if index not in self._thumbs:
            self._thumbs[index] = _thumb_of(self._images[index])
        return self._thumbs[index]


def _thumb_of(image: bytes) -> npt.NDArray[np.float64]:
    with Image.open(io.BytesIO(image)) as opened:
        return thumbnail(opened)
