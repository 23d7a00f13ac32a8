"""Exact, incrementally updatable in-memory index of PDQ hashes (256 bits, Hamming distance).

Hash banks must find *every* stored hash within a bank's threshold: a missed match is a missed
known image, so approximate indexes (LSH, IVF, HNSW) are out and the search is an exact range
search, verified on the full 256 bits.

Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012): the bits are cut into m substrings of
b bits (m * b <= 256; leftover bits only count at verification). If two hashes are within R
bits, then for radii r_i with sum(r_i + 1) > R at least one substring i differs in <= r_i bits
(pigeonhole). With R = q * m + s we give s + 1 tables radius q and the rest q - 1, which meets
the bound with far fewer probes than radius q everywhere. Each table is a CSR layout (bucket
`offsets` and uint32 row numbers grouped by substring value), about 4 bytes per hash per table
on top of 32 bytes per hash; b grows with the base so buckets hold about one row. A query XORs its
substrings with every mask of popcount <= r_i, gathers those buckets in one vectorised step,
then verifies the candidates with XOR + popcount. When that would cost more than a scan (small
bases, large radii) the base is scanned instead.

Updates: the CSR base is immutable. Additions go to an append-only "delta" that is scanned by
brute force; removals and replacements are tombstones (sorted row numbers). When the delta
outgrows `delta_limit`, or tombstones pile up, or on `compact()`, the live rows are rebuilt into
a new base from the hash arrays.

Concurrency: every state is an immutable `_Snapshot`, published by a single reference
assignment. Readers take the current snapshot and never lock; writers serialise on a lock, also
held while a compaction rebuilds the base (readers keep using the previous snapshot meanwhile).
Delta rows are written past the published row count before the new snapshot is published, so a
reader never sees a half-written row.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import cast

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_DISTANCE", "PdqIndex", "parse_pdq_hex", "pdq_distance"]

HASH_BITS = 256
HASH_BYTES = 32
MAX_DISTANCE = 63

U8Array = npt.NDArray[np.uint8]
U32Array = npt.NDArray[np.uint32]
U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]
IntpArray = npt.NDArray[np.intp]
I32Array = npt.NDArray[np.int32]
# Hashes are stored by columns, (4, n) uint64: word j of every hash is contiguous, so each
# verification step is a 1-D gather and 1-D arithmetic (numpy is slow on an inner axis of 4).
Words = U64Array
Query = tuple[np.uint64, np.uint64, np.uint64, np.uint64]

_WORDS = HASH_BITS // 64
_EMPTY_I64: I64Array = np.zeros(0, dtype=np.int64)
_EMPTY_WORDS: Words = np.zeros((_WORDS, 0), dtype=np.uint64)
_EMPTY_ROWS: IntpArray = np.zeros(0, dtype=np.intp)
_SCAN_CHUNK = 1 << 16
# Below this many hashes a scan beats any table (and tables would cost more memory than hashes).
_MIN_TABLE_ROWS = 1 << 16
# Costs of one probe, one candidate and one scanned hash, in nanoseconds on a 2-core EPYC; they
# only decide between probing and scanning, never what is found.
_PROBE_COST = 50.0
_CANDIDATE_COST = 50.0
_SCAN_COST = 2.0


def parse_pdq_hex(value: str) -> bytes:
    """The 32 bytes of a PDQ hash given as 64 hex digits; ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 2 * HASH_BYTES:
        raise ValueError("a PDQ hash is 64 hex digits")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError("a PDQ hash is 64 hex digits") from None
    if len(raw) != HASH_BYTES:  # fromhex skips whitespace
        raise ValueError("a PDQ hash is 64 hex digits")
    return raw


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two hex PDQ hashes."""
    return (_as_int(parse_pdq_hex(a)) ^ _as_int(parse_pdq_hex(b))).bit_count()


def _as_int(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _words_from_hex(hashes: Sequence[str]) -> Words:
    for value in hashes:
        if not isinstance(value, str) or len(value) != 2 * HASH_BYTES:
            raise ValueError("a PDQ hash is 64 hex digits")
    try:
        raw = bytes.fromhex("".join(hashes))
    except ValueError:
        raise ValueError("a PDQ hash is 64 hex digits") from None
    if len(raw) != HASH_BYTES * len(hashes):
        raise ValueError("a PDQ hash is 64 hex digits")
    return _words_from_bytes(np.frombuffer(raw, dtype=np.uint8).reshape(-1, HASH_BYTES))


def _words_from_bytes(raw: U8Array) -> Words:
    """(n, 32) hash bytes as an owned (4, n) uint64 array. Bit k of a hash is bit k % 64 of
    its word k // 64, the same order as `int.from_bytes(raw, "little")`."""
    words = np.ascontiguousarray(raw).view("<u8").astype(np.uint64, copy=False)
    return words.T.copy(order="C")


def _parse_hashes(hashes: Sequence[str] | np.ndarray) -> Words:
    if isinstance(hashes, np.ndarray):
        if hashes.dtype.kind in "UO":  # hex strings
            return _words_from_hex(hashes.tolist())
        if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
            raise ValueError("hash arrays must be (n, 32) uint8")
        return _words_from_bytes(hashes)
    if isinstance(hashes, str):
        raise ValueError("hashes must be a sequence of hex strings, not one string")
    return _words_from_hex(hashes)


def _parse_ids(ids: Sequence[int] | np.ndarray, count: int) -> I64Array:
    try:
        out = np.array(ids, dtype=np.int64).reshape(-1)  # a copy: the caller may reuse theirs
    except (OverflowError, TypeError) as exc:
        raise ValueError(f"ids must be int64: {exc}") from None
    if len(out) != count:
        raise ValueError(f"{len(out)} ids for {count} hashes")
    return out


def _distinct(values: I64Array) -> I64Array:
    """Sorted distinct values.

    Not np.unique: on numpy 2.4 it leaves its freed work memory in the process heap (300 MB of
    resident memory after 10M ids)."""
    ordered = np.sort(values)
    first = np.ones(len(ordered), dtype=np.bool_)
    first[1:] = ordered[1:] != ordered[:-1]
    return ordered[first]


def _known_int64(ids: Iterable[int]) -> I64Array:
    """The distinct values of `ids` that can be int64 ids (others cannot be in an index)."""
    values = [int(i) for i in ids]
    return _distinct(np.array([i for i in values if -(1 << 63) <= i < 1 << 63], dtype=np.int64))


def _parse_query(query: str | bytes) -> bytes:
    if isinstance(query, bytes | bytearray):
        if len(query) != HASH_BYTES:
            raise ValueError("a raw PDQ hash is 32 bytes")
        return bytes(query)
    return parse_pdq_hex(query)


def _check_distance(max_distance: int) -> None:
    if (
        not isinstance(max_distance, int | np.integer)
        or isinstance(max_distance, bool)
        or not 0 <= max_distance <= MAX_DISTANCE
    ):
        raise ValueError(f"max_distance must be an integer in 0..{MAX_DISTANCE}")


def _query_words(raw: bytes) -> Query:
    w = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    return (w[0], w[1], w[2], w[3])


def _verify(
    words: Words, rows: IntpArray, query: Query, radius: int
) -> tuple[IntpArray, IntpArray]:
    """(rows, distances) of the given rows within `radius` of `query`.

    The first 128 bits alone rule out nearly every non-match, so the other two words are only
    read for the few candidates left.
    """
    first = np.bitwise_count(words[0][rows] ^ query[0])
    first += np.bitwise_count(words[1][rows] ^ query[1])  # <= 128: no uint8 overflow
    keep = np.flatnonzero(first <= radius)
    return _second_half(words, rows[keep], first[keep], query, radius)


def _second_half(
    words: Words, rows: IntpArray, first: U8Array, query: Query, radius: int
) -> tuple[IntpArray, IntpArray]:
    d = first.astype(np.intp)
    d += np.bitwise_count(words[2][rows] ^ query[2])
    d += np.bitwise_count(words[3][rows] ^ query[3])
    keep = np.flatnonzero(d <= radius)
    return rows[keep], d[keep]


def _scan(words: Words, query: Query, radius: int) -> tuple[IntpArray, IntpArray]:
    """(rows, distances) of all rows of `words` within `radius` of `query`, by brute force."""
    found: list[tuple[IntpArray, IntpArray]] = []
    for lo in range(0, words.shape[1], _SCAN_CHUNK):
        hi = lo + _SCAN_CHUNK
        first = np.bitwise_count(words[0, lo:hi] ^ query[0])
        first += np.bitwise_count(words[1, lo:hi] ^ query[1])
        keep = np.flatnonzero(first <= radius)
        found.append(_second_half(words, keep + lo, first[keep], query, radius))
    if not found:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    return np.concatenate([r for r, _ in found]), np.concatenate([d for _, d in found])


def _ranges(starts: I64Array, ends: I64Array) -> I64Array:
    """Concatenation of arange(s, e) for every (s, e) pair, without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY_I64
    shift = starts - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


@dataclass(frozen=True)
class _Layout:
    bits: int  # b, bits per substring
    tables: int  # m = 256 // b

    @staticmethod
    def for_size(rows: int) -> _Layout | None:
        """About one row per bucket: bigger buckets mean more candidates to verify; smaller ones
        mean more probes and an offsets array larger than the tables themselves."""
        if rows < _MIN_TABLE_ROWS:
            return None
        bits = min(23, round(math.log2(rows)))
        return _Layout(bits=bits, tables=HASH_BITS // bits)

    def radii(self, radius: int) -> list[int]:
        """Per-table search radius guaranteeing every hash within `radius` is probed."""
        q, s = divmod(radius, self.tables)
        return [q] * (s + 1) + [q - 1] * (self.tables - s - 1)

    def keys(self, words: Words, table: int) -> U64Array:
        """Substring `table` of every hash in `words`."""
        word, shift = divmod(table * self.bits, 64)
        keys = words[word] >> np.uint64(shift)
        if shift + self.bits > 64:
            keys |= words[word + 1] << np.uint64(64 - shift)
        return cast(U64Array, keys & np.uint64((1 << self.bits) - 1))

    def probe_count(self, radius: int) -> int:
        return sum(math.comb(self.bits, k) for r in self.radii(radius) for k in range(r + 1))

    def query_buckets(self, query: int) -> I64Array:
        """Flat bucket number of the query's own substring in each table."""
        mask = (1 << self.bits) - 1
        return np.array(
            [(t << self.bits) | ((query >> (t * self.bits)) & mask) for t in range(self.tables)],
            dtype=np.int64,
        )


@lru_cache(maxsize=32)
def _masks(bits: int, radius: int) -> I32Array:
    """Every `bits`-bit value of popcount <= radius."""
    values = np.arange(1 << bits, dtype=np.int32)
    out = values[np.bitwise_count(values) <= radius]
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class _ProbePlan:
    per_table: IntpArray  # number of probes in each table
    masks: I32Array  # XOR masks of all probes, table after table


@lru_cache(maxsize=128)
def _probe_plan(layout: _Layout, radius: int) -> _ProbePlan:
    masks = [_masks(layout.bits, r) for r in layout.radii(radius) if r >= 0]
    counts = [len(_masks(layout.bits, r)) if r >= 0 else 0 for r in layout.radii(radius)]
    plan = _ProbePlan(per_table=np.array(counts, dtype=np.intp), masks=np.concatenate(masks))
    plan.per_table.flags.writeable = False
    plan.masks.flags.writeable = False
    return plan


@dataclass(frozen=True, eq=False)
class _Base:
    """Immutable bulk of the index: hashes sorted by external id, plus the CSR tables."""

    words: Words  # (4, n)
    ids: I64Array  # (n,) external ids, strictly increasing: row lookup is a binary search
    layout: _Layout | None  # None: too small for tables, always scanned
    offsets: U32Array | U64Array  # (m * 2^b + 1,) bucket starts in `rows`
    rows: U32Array  # (m * n,) row numbers grouped by table, then by substring value

    @staticmethod
    def build(words: Words, ids: I64Array) -> _Base:
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, words = ids[order], np.ascontiguousarray(words[:, order])
            if bool(np.any(ids[1:] == ids[:-1])):
                raise ValueError("ids must be unique")
        layout = _Layout.for_size(len(ids))
        if layout is None:
            empty = np.zeros(0, dtype=np.uint32)
            return _Base(words=words, ids=ids, layout=None, offsets=empty, rows=empty)
        offsets, rows = _build_tables(words, layout)
        return _Base(words=words, ids=ids, layout=layout, offsets=offsets, rows=rows)

    @property
    def nbytes(self) -> int:
        return self.words.nbytes + self.ids.nbytes + self.offsets.nbytes + self.rows.nbytes

    def lookup(self, ids: I64Array) -> IntpArray:
        """Row of each external id, -1 where absent."""
        pos = np.searchsorted(self.ids, ids)
        found = pos < len(self.ids)
        found[found] = self.ids[pos[found]] == ids[found]
        return np.where(found, pos, -1)

    def search(self, query: Query, query_int: int, radius: int) -> tuple[IntpArray, IntpArray]:
        """(rows, distances) within `radius`, each row once, in no particular order."""
        layout = self.layout
        if layout is None or not self._probing_pays(layout, radius):
            return _scan(self.words, query, radius)
        plan = _probe_plan(layout, radius)
        buckets = np.repeat(layout.query_buckets(query_int), plan.per_table) ^ plan.masks
        starts = self.offsets[buckets].astype(np.intp)
        ends = self.offsets[buckets + 1].astype(np.intp)
        candidates = self.rows[_ranges(starts, ends)].astype(np.intp)
        rows, d = _verify(self.words, candidates, query, radius)
        # A row can be reached through several tables.
        rows, first = np.unique(rows, return_index=True)
        return rows, d[first]

    def _probing_pays(self, layout: _Layout, radius: int) -> bool:
        n = len(self.ids)
        probes = layout.probe_count(radius)
        expected = probes * (_PROBE_COST + _CANDIDATE_COST * n / (1 << layout.bits))
        return expected < _SCAN_COST * n


def _build_tables(words: Words, layout: _Layout) -> tuple[U32Array | U64Array, U32Array]:
    n = words.shape[1]
    if n >= 1 << 32:
        raise ValueError("at most 2^32 - 1 hashes per index")
    buckets = 1 << layout.bits
    offset_type = np.uint32 if layout.tables * n < 1 << 32 else np.uint64
    offsets = cast(U32Array | U64Array, np.zeros(layout.tables * buckets + 1, dtype=offset_type))
    rows = np.empty(layout.tables * n, dtype=np.uint32)
    row_numbers = np.arange(n, dtype=np.uint64)
    for table in range(layout.tables):
        keys = layout.keys(words, table)
        counts = np.bincount(keys.view(np.int64), minlength=buckets)
        lo = table * buckets
        offsets[lo + 1 : lo + buckets + 1] = np.cumsum(counts) + table * n
        # Sorting (key << 32 | row) groups rows by key with a plain, SIMD-accelerated sort;
        # rows stay ascending inside a bucket, which keeps verification reads in order.
        keys <<= np.uint64(32)
        keys |= row_numbers
        keys.sort()
        np.copyto(rows[table * n : (table + 1) * n], keys, casting="unsafe")  # low 32 bits: row
    return offsets, rows


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """One consistent state of the index; never mutated once published."""

    base: _Base
    delta_words: Words  # (4, capacity); columns >= delta_count are not published yet
    delta_ids: I64Array  # (capacity,)
    delta_count: int
    dead_base: IntpArray  # sorted base rows that were removed or replaced
    dead_delta: IntpArray  # sorted delta rows that were removed or replaced
    live: int

    @staticmethod
    def of(base: _Base) -> _Snapshot:
        return _Snapshot(
            base=base,
            delta_words=_EMPTY_WORDS,
            delta_ids=_EMPTY_I64,
            delta_count=0,
            dead_base=_EMPTY_ROWS,
            dead_delta=_EMPTY_ROWS,
            live=len(base.ids),
        )

    @property
    def nbytes(self) -> int:
        extra = (self.delta_words, self.delta_ids, self.dead_base, self.dead_delta)
        return self.base.nbytes + sum(a.nbytes for a in extra)

    def search(self, raw: bytes, radius: int) -> list[tuple[int, int]]:
        query = _query_words(raw)
        rows, dists = self.base.search(query, _as_int(raw), radius)
        keep = ~_isin_sorted(rows, self.dead_base)
        ids = [self.base.ids[rows[keep]]]
        distances = [dists[keep]]
        if self.delta_count:
            delta = self.delta_words[:, : self.delta_count]
            rows, dists = _scan(delta, query, radius)
            keep = ~_isin_sorted(rows, self.dead_delta)
            ids.append(self.delta_ids[rows[keep]])
            distances.append(dists[keep])
        all_ids = np.concatenate(ids)
        all_distances = np.concatenate(distances)
        order = np.lexsort((all_ids, all_distances))
        return list(zip(all_ids[order].tolist(), all_distances[order].tolist(), strict=True))

    def contains(self, ext_id: int) -> bool:
        delta_rows = np.flatnonzero(self.delta_ids[: self.delta_count] == ext_id)
        if not np.all(_isin_sorted(delta_rows, self.dead_delta)):
            return True
        row = self.base.lookup(np.array([ext_id], dtype=np.int64))
        return bool(row[0] >= 0 and not _isin_sorted(row, self.dead_base)[0])


def _concat_kept(
    parts: list[tuple[Words, I64Array, npt.NDArray[np.bool_]]],
) -> tuple[Words, I64Array]:
    """The kept columns of every part, copied once into new arrays."""
    total = sum(int(keep.sum()) for _, _, keep in parts)
    words = np.empty((_WORDS, total), dtype=np.uint64)
    ids = np.empty(total, dtype=np.int64)
    start = 0
    for part_words, part_ids, keep in parts:
        end = start + int(keep.sum())
        np.compress(keep, part_ids[: len(keep)], out=ids[start:end])
        for j in range(_WORDS):
            np.compress(keep, part_words[j, : len(keep)], out=words[j, start:end])
        start = end
    return words, ids


def _isin_sorted(values: IntpArray, sorted_set: IntpArray) -> npt.NDArray[np.bool_]:
    if len(sorted_set) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=np.bool_)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return cast(npt.NDArray[np.bool_], sorted_set[pos] == values)


class PdqIndex:
    """Exact Hamming-range search over PDQ hashes keyed by int64 external ids.

    Searches never block; writers serialise among themselves (see the module docstring).
    """

    def __init__(self, *, delta_limit: int = 20_000) -> None:
        if delta_limit < 1:
            raise ValueError("delta_limit must be positive")
        self._delta_limit = delta_limit
        self._lock = threading.Lock()
        # External id -> delta row of the live delta entries; only used under the lock.
        self._delta_rows: dict[int, int] = {}
        self._snapshot = _Snapshot.of(_Base.build(_EMPTY_WORDS, _EMPTY_I64))

    @classmethod
    def build(
        cls,
        ids: Sequence[int] | np.ndarray,
        hashes: Sequence[str] | np.ndarray,
        *,
        delta_limit: int = 20_000,
    ) -> PdqIndex:
        """An index holding exactly these entries, built straight into the base."""
        index = cls(delta_limit=delta_limit)
        words = _parse_hashes(hashes)
        index._snapshot = _Snapshot.of(_Base.build(words, _parse_ids(ids, words.shape[1])))
        return index

    def __len__(self) -> int:
        return self._snapshot.live

    def __contains__(self, ext_id: object) -> bool:
        if isinstance(ext_id, bool) or not isinstance(ext_id, int | np.integer):
            return False
        if not -(1 << 63) <= int(ext_id) < 1 << 63:
            return False
        return self._snapshot.contains(int(ext_id))

    def memory_bytes(self) -> int:
        """Bytes held by this index's numpy arrays (the probe masks shared by all excluded)."""
        return self._snapshot.nbytes

    def search(self, query: str | bytes, max_distance: int) -> list[tuple[int, int]]:
        """(id, distance) of every entry within `max_distance` of `query` (64 hex digits, or
        the 32 raw bytes), sorted by distance then id."""
        _check_distance(max_distance)
        return self._snapshot.search(_parse_query(query), int(max_distance))

    def search_many(
        self, queries: Sequence[str | bytes], max_distance: int
    ) -> list[list[tuple[int, int]]]:
        """`search` for each query, all against the same state of the index."""
        _check_distance(max_distance)
        raws = [_parse_query(q) for q in queries]
        snapshot = self._snapshot
        return [snapshot.search(raw, int(max_distance)) for raw in raws]

    def add(self, ids: Sequence[int] | np.ndarray, hashes: Sequence[str] | np.ndarray) -> None:
        """Add entries, replacing the hash of ids already present; searchable on return.

        A batch that would overflow the delta is merged with everything else into a new base
        before returning (this takes about as long as `build`).
        """
        words = _parse_hashes(hashes)
        new_ids = _parse_ids(ids, words.shape[1])
        if len(new_ids) == 0:
            return
        if len(_distinct(new_ids)) != len(new_ids):
            raise ValueError("ids must be unique")
        with self._lock:
            snapshot = self._snapshot
            if snapshot.delta_count + len(new_ids) > self._delta_limit:
                self._rebuild(snapshot, new_ids, words)
            else:
                self._append(snapshot, new_ids, words)

    def remove(self, ids: Iterable[int]) -> None:
        """Remove entries; ids not in the index are ignored. Unsearchable on return."""
        wanted = _known_int64(ids)
        if len(wanted) == 0:
            return
        with self._lock:
            snapshot = self._snapshot
            dead_base, dead_delta = self._kill(snapshot, wanted)
            removed = len(dead_base) - len(snapshot.dead_base)
            removed += len(dead_delta) - len(snapshot.dead_delta)
            snapshot = replace(
                snapshot, dead_base=dead_base, dead_delta=dead_delta, live=snapshot.live - removed
            )
            self._snapshot = snapshot
            # Dead rows still cost probes and memory; drop them once they are many.
            if len(dead_base) > max(self._delta_limit, len(snapshot.base.ids) // 4):
                self._rebuild(snapshot, _EMPTY_I64, _EMPTY_WORDS)

    def compact(self) -> None:
        """Merge the delta into a new base and drop tombstones."""
        with self._lock:
            self._rebuild(self._snapshot, _EMPTY_I64, _EMPTY_WORDS)

    def _kill(self, snapshot: _Snapshot, ids: I64Array) -> tuple[IntpArray, IntpArray]:
        """The tombstone arrays with the rows of `ids` added (live or not)."""
        in_delta = [self._delta_rows.pop(i) for i in ids.tolist() if i in self._delta_rows]
        base_rows = snapshot.base.lookup(ids)
        dead_base = _distinct(np.concatenate([snapshot.dead_base, base_rows[base_rows >= 0]]))
        dead_delta = snapshot.dead_delta
        if in_delta:
            dead_delta = _distinct(np.concatenate([dead_delta, np.array(in_delta, dtype=np.intp)]))
        return dead_base, dead_delta

    def _append(self, snapshot: _Snapshot, ids: I64Array, words: Words) -> None:
        dead_base, dead_delta = self._kill(snapshot, ids)
        replaced = len(dead_base) - len(snapshot.dead_base)
        replaced += len(dead_delta) - len(snapshot.dead_delta)
        start = snapshot.delta_count
        end = start + len(ids)
        delta_words, delta_ids = snapshot.delta_words, snapshot.delta_ids
        if end > len(delta_ids):
            capacity = min(max(2 * len(delta_ids), end, 1024), max(self._delta_limit, end))
            delta_words = np.empty((_WORDS, capacity), dtype=np.uint64)
            delta_ids = np.empty(capacity, dtype=np.int64)
            delta_words[:, :start] = snapshot.delta_words[:, :start]
            delta_ids[:start] = snapshot.delta_ids[:start]
        # Published snapshots only read columns < start: writing past it is invisible to them.
        delta_words[:, start:end] = words
        delta_ids[start:end] = ids
        self._delta_rows.update(zip(ids.tolist(), range(start, end), strict=True))
        self._snapshot = _Snapshot(
            base=snapshot.base,
            delta_words=delta_words,
            delta_ids=delta_ids,
            delta_count=end,
            dead_base=dead_base,
            dead_delta=dead_delta,
            live=snapshot.live - replaced + len(ids),
        )

    def _rebuild(self, snapshot: _Snapshot, ids: I64Array, words: Words) -> None:
        """Publish a fresh base of the live entries of `snapshot` plus (ids, words)."""
        base = snapshot.base
        keep_base = np.ones(len(base.ids), dtype=np.bool_)
        keep_base[snapshot.dead_base] = False
        superseded = base.lookup(ids)
        keep_base[superseded[superseded >= 0]] = False
        keep_delta = np.ones(snapshot.delta_count, dtype=np.bool_)
        keep_delta[snapshot.dead_delta] = False
        replaced = [self._delta_rows[i] for i in ids.tolist() if i in self._delta_rows]
        keep_delta[np.array(replaced, dtype=np.intp)] = False
        parts = [
            (base.words, base.ids, keep_base),
            (snapshot.delta_words, snapshot.delta_ids, keep_delta),
            (words, ids, np.ones(len(ids), dtype=np.bool_)),
        ]
        self._snapshot = _Snapshot.of(_Base.build(*_concat_kept(parts)))
        self._delta_rows = {}
