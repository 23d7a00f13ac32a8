"""Deterministic, clustered PDQ-like hashes for the index benchmark.

One entry in ten is a base hash with uniform random bits; every other entry is a near-duplicate
of a random base at exactly 1..40 flipped bits, so clusters of about ten close hashes exist, as
in real banks (re-encodes, crops and thumbnails of one picture). The rows are shuffled and the
external ids are increasing with random gaps, like database row ids.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
CHUNK = 1 << 20


def random_words(rng: np.random.Generator, count: int) -> U64:
    """`count` uniform random 256-bit hashes as (count, 4) uint64."""
    return rng.integers(0, 1 << 64, size=(count, 4), dtype=np.uint64, endpoint=False)


def flip_bits(rng: np.random.Generator, words: U64, counts: npt.NDArray[np.int64]) -> U64:
    """Copies of `words` with exactly `counts[i]` distinct random bits of row i flipped."""
    out = words.copy()
    for lo in range(0, len(words), CHUNK):
        hi = min(lo + CHUNK, len(words))
        out[lo:hi] ^= _flip_masks(rng, counts[lo:hi])
    return out


def _flip_masks(rng: np.random.Generator, counts: npt.NDArray[np.int64]) -> U64:
    masks = np.zeros((len(counts), 4), dtype=np.uint64)
    have = np.zeros(len(counts), dtype=np.int64)
    need = np.flatnonzero(have < counts)
    # One new random bit per short row and round; a bit drawn twice just costs another round.
    while need.size:
        pos = rng.integers(0, 256, size=need.size)
        masks[need, pos >> 6] |= np.left_shift(np.uint64(1), (pos & 63).astype(np.uint64))
        have[need] = np.bitwise_count(masks[need]).sum(axis=1)
        need = need[have[need] < counts[need]]
    return masks


def clustered(size: int, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(ids, hashes): `size` increasing int64 ids and (size, 32) uint8 hash bytes."""
    rng = np.random.default_rng(seed)
    n_base = max(1, size // 10)
    words = np.empty((size, 4), dtype=np.uint64)
    words[:n_base] = random_words(rng, n_base)
    parents = rng.integers(0, n_base, size=size - n_base)
    distances = rng.integers(1, 41, size=size - n_base)
    words[n_base:] = flip_bits(rng, words[parents], distances)
    words = words[rng.permutation(size)]
    ids = np.cumsum(rng.integers(1, 4, size=size, dtype=np.int64)) + 1000
    return ids, words.view(np.uint8).reshape(size, 32)


def queries(
    hashes: npt.NDArray[np.uint8], count: int, seed: int
) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """`count` hex queries and which of them are near-duplicates of indexed hashes.

    Half are near-duplicates of random indexed hashes (distance 0..31, one in ten 32..40), half
    unrelated random hashes; the two kinds are interleaved.
    """
    rng = np.random.default_rng(seed)
    words = hashes.view(np.uint64)
    near = np.arange(count) % 2 == 0
    n_near = int(near.sum())
    distances = np.where(
        rng.random(n_near) < 0.9, rng.integers(0, 32, n_near), rng.integers(32, 41, n_near)
    )
    out = np.empty((count, 4), dtype=np.uint64)
    out[near] = flip_bits(rng, words[rng.integers(0, len(words), n_near)], distances)
    out[~near] = random_words(rng, count - n_near)
    raw = out.view(np.uint8).reshape(count, 32)
    return [row.tobytes().hex() for row in raw], near
