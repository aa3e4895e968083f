"""Perceptual hashes of figure images, for finding the same figure twice.

Input: a PIL image (open PNG bytes with `Image.open(io.BytesIO(png))`). Output: an int of at most
64 bits, and the Hamming distance between two such ints. The same figure re-encoded, slightly
rescaled or JPEG-compressed lands within a few bits (<= 6 in the tests); different figures are
usually more than 10 bits apart. Transparent pixels count as white, as they look in a paper.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

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
