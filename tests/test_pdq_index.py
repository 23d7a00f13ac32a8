from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from mediaguard.banks import pdq_index
from mediaguard.banks.pdq_index import PdqIndex, parse_pdq_hex, pdq_distance

RADII = (0, 8, 31, 32, 45, 63)
Hashes = npt.NDArray[np.uint8]
Ids = npt.NDArray[np.int64]


def flip(rng: np.random.Generator, hashes: Hashes, counts: npt.NDArray[np.int64]) -> Hashes:
    """Copies of `hashes` with exactly counts[i] distinct random bits of row i flipped."""
    bits = np.zeros((len(hashes), 256), dtype=np.bool_)
    rows = np.arange(len(hashes))
    need = rows[counts > 0]
    while need.size:
        bits[need, rng.integers(0, 256, need.size)] = True
        need = need[bits[need].sum(axis=1) < counts[need]]
    return hashes ^ np.packbits(bits, axis=1)


def clustered(rng: np.random.Generator, n: int) -> tuple[Ids, Hashes]:
    """One uniform random base hash per ten rows; the others are copies of a base with 0..40
    bits flipped. Ids are unique, unordered, and negative as well as positive."""
    n_base = max(1, n // 10)
    base = rng.integers(0, 256, size=(n_base, 32), dtype=np.uint8)
    near = flip(rng, base[rng.integers(0, n_base, n - n_base)], rng.integers(0, 41, n - n_base))
    hashes = np.concatenate([base, near])[rng.permutation(n)]
    ids = rng.choice(np.iinfo(np.int64).max, size=n, replace=False) - (1 << 62)
    return ids.astype(np.int64), hashes


def make_queries(rng: np.random.Generator, hashes: Hashes, count: int) -> list[str]:
    """Near-duplicates of indexed hashes at 0..50 bits, and unrelated random hashes."""
    half = count // 2
    picked = hashes[rng.integers(0, len(hashes), half)]
    near = flip(rng, picked, rng.integers(0, 51, half))
    far = rng.integers(0, 256, size=(count - half, 32), dtype=np.uint8)
    return [row.tobytes().hex() for row in np.concatenate([near, far])]


def distances_to(hashes: Hashes, query: str) -> npt.NDArray[np.int64]:
    q = np.frombuffer(bytes.fromhex(query), dtype=np.uint8)
    return np.unpackbits(hashes ^ q, axis=1).sum(axis=1, dtype=np.int64)


def within(ids: Ids, distances: npt.NDArray[np.int64], radius: int) -> list[tuple[int, int]]:
    """Every (id, distance) within radius, sorted by distance then id."""
    hits = np.flatnonzero(distances <= radius)
    return sorted(((int(ids[i]), int(distances[i])) for i in hits), key=lambda p: (p[1], p[0]))


def brute_force(ids: Ids, hashes: Hashes, query: str, radius: int) -> list[tuple[int, int]]:
    return within(ids, distances_to(hashes, query), radius)


@dataclass
class Data:
    ids: Ids
    hashes: Hashes
    queries: list[str]
    distances: list[npt.NDArray[np.int64]]  # of every hash, per query


def hex_of(hashes: Hashes) -> list[str]:
    return [row.tobytes().hex() for row in hashes]


@pytest.fixture(scope="module")
def data() -> Data:
    rng = np.random.default_rng(20240611)
    ids, hashes = clustered(rng, 70_000)
    queries = make_queries(rng, hashes, 40)
    return Data(ids, hashes, queries, [distances_to(hashes, q) for q in queries])


@pytest.fixture(params=["auto", "probe", "scan"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Force the base to probe its tables for every radius, or to scan, or let it choose."""
    if request.param == "probe":
        monkeypatch.setattr(pdq_index, "_SCAN_COST", 1e12)
    elif request.param == "scan":
        monkeypatch.setattr(pdq_index, "_SCAN_COST", 0.0)
    yield request.param


def test_matches_brute_force(data: Data, strategy: str) -> None:
    index = PdqIndex.build(data.ids, data.hashes)
    assert index._snapshot.base.layout is not None
    for query, distances in zip(data.queries, data.distances, strict=True):
        for radius in RADII:
            assert index.search(query, radius) == within(data.ids, distances, radius)


@pytest.mark.parametrize("bits", [12, 14, 19, 21])
def test_other_layouts_match_brute_force(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Substrings that straddle two 64-bit words, and many or few tables."""
    layout = pdq_index._Layout(bits=bits, tables=256 // bits)
    monkeypatch.setattr(pdq_index._Layout, "for_size", staticmethod(lambda rows: layout))
    monkeypatch.setattr(pdq_index, "_SCAN_COST", 1e12)
    rng = np.random.default_rng(bits)
    ids, hashes = clustered(rng, 5_000)
    index = PdqIndex.build(ids, hashes)
    for query in make_queries(rng, hashes, 16):
        for radius in RADII:
            assert index.search(query, radius) == brute_force(ids, hashes, query, radius)


def test_delta_and_compacted_base_agree(data: Data) -> None:
    ids, hashes, queries = data.ids, data.hashes, data.queries
    index = PdqIndex(delta_limit=len(ids))
    for lo in range(0, len(ids), 10_000):
        index.add(ids[lo : lo + 10_000], hex_of(hashes[lo : lo + 10_000]))
    assert index._snapshot.delta_count == len(ids)
    from_delta = [index.search(q, r) for q in queries for r in (8, 31, 45)]
    index.compact()
    assert index._snapshot.delta_count == 0
    assert index._snapshot.base.layout is not None
    assert [index.search(q, r) for q in queries for r in (8, 31, 45)] == from_delta
    assert from_delta == [within(ids, d, r) for d in data.distances for r in (8, 31, 45)]


def test_added_hash_is_found_at_once_and_removed_one_never() -> None:
    rng = np.random.default_rng(1)
    ids, hashes = clustered(rng, 70_000)
    index = PdqIndex.build(ids, hashes, delta_limit=100)
    target = rng.bytes(32).hex()
    gone = int(ids[0])
    old = hashes[0].tobytes().hex()
    assert pdq_distance(old, target) > 63

    index.add([10**15], [target])
    assert (10**15, 0) in index.search(target, 0)
    index.remove([gone, 10**15, 123456789])  # one base entry, one delta entry, one unknown
    assert all(i not in (gone, 10**15) for i, _ in index.search(old, 63))
    assert all(i not in (gone, 10**15) for i, _ in index.search(target, 63))
    assert gone not in index
    assert 10**15 not in index
    assert len(index) == len(ids) - 1

    index.add([gone], [target])  # re-added with another hash
    assert (gone, 0) in index.search(target, 0)
    assert gone not in dict(index.search(old, 63))
    assert len(index) == len(ids)
    index.compact()
    assert (gone, 0) in index.search(target, 0)
    assert gone not in dict(index.search(old, 63))
    assert len(index) == len(ids)


def test_replacing_a_hash_returns_the_id_once_with_its_new_distance() -> None:
    index = PdqIndex(delta_limit=10)
    first, second = "0" * 64, "f" * 8 + "0" * 56
    index.add([7], [first])
    index.compact()  # the first version goes to the base, the second to the delta
    index.add([7], [second])
    assert index.search(first, 63) == [(7, 32)]
    index.add([7], [first])  # replace the delta version
    assert index.search(first, 63) == [(7, 0)]
    assert len(index) == 1


def test_compact_drops_tombstones(data: Data) -> None:
    ids, hashes, queries = data.ids, data.hashes, data.queries
    index = PdqIndex.build(ids, hashes)
    index.add(ids[:500], hashes[1000:1500])  # replaces 500 hashes (base -> delta)
    removed = ids[::7]
    index.remove(removed.tolist())
    live = ~np.isin(ids, removed)
    current = hashes.copy()
    current[:500] = hashes[1000:1500]
    expected = [brute_force(ids[live], current[live], q, 31) for q in queries]
    assert [index.search(q, 31) for q in queries] == expected
    before = index.memory_bytes()
    index.compact()
    snapshot = index._snapshot
    assert len(snapshot.dead_base) == len(snapshot.dead_delta) == snapshot.delta_count == 0
    assert len(snapshot.base.ids) == len(index) == int(live.sum())
    assert index.memory_bytes() < before
    assert [index.search(q, 31) for q in queries] == expected
    assert int(removed[3]) not in index
    assert int(ids[1]) in index


def test_delta_overflow_merges_into_the_base() -> None:
    rng = np.random.default_rng(2)
    ids, hashes = clustered(rng, 1_000)
    index = PdqIndex(delta_limit=64)
    for lo in range(0, 1_000, 50):
        index.add(ids[lo : lo + 50], hashes[lo : lo + 50])
        assert index._snapshot.delta_count <= 64
    assert len(index._snapshot.base.ids) > 900
    index.add(ids[:200], hashes[200:400])  # a batch bigger than the delta goes to the base
    assert index._snapshot.delta_count == 0
    current = hashes.copy()
    current[:200] = hashes[200:400]
    for query in make_queries(rng, hashes, 20):
        assert index.search(query, 40) == brute_force(ids, current, query, 40)

    index.remove(ids[:300].tolist())  # tombstones over a quarter of the base: rebuilt
    assert len(index._snapshot.dead_base) == 0
    assert len(index) == len(index._snapshot.base.ids) == 700
    for query in make_queries(rng, hashes, 20):
        assert index.search(query, 40) == brute_force(ids[300:], current[300:], query, 40)


def test_concurrent_writer_and_readers() -> None:
    rng = np.random.default_rng(3)
    ids, hashes = clustered(rng, 70_000)
    stable = ids[1_000:]
    index = PdqIndex.build(ids, hashes, delta_limit=500)
    queries = make_queries(rng, hashes[:1_000], 30)
    stable_set = set(stable.tolist())
    expected_stable = {q: brute_force(stable, hashes[1_000:], q, 31) for q in queries}
    # Every hash an id ever had, recorded before the index can return it; the writer replaces
    # the sets rather than mutating them, so readers can iterate them.
    versions = {int(i): frozenset([h.tobytes().hex()]) for i, h in zip(ids, hashes, strict=True)}
    stop = threading.Event()
    errors: list[BaseException] = []
    searches = 0

    def writer() -> None:
        wrng = np.random.default_rng(4)
        step = 0
        try:
            while not stop.is_set():
                step += 1
                picked = wrng.choice(1_000, size=20, replace=False)
                new = flip(wrng, hashes[picked], wrng.integers(0, 20, 20))
                for i, h in zip(ids[picked].tolist(), new, strict=True):
                    versions[i] = versions[i] | {h.tobytes().hex()}
                index.add(ids[picked], new)
                index.remove(ids[wrng.choice(1_000, size=10, replace=False)].tolist())
                if step % 25 == 0:
                    index.compact()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    def reader() -> None:
        nonlocal searches
        try:
            while not stop.is_set():
                for query in queries:
                    found = index.search(query, 31)
                    assert found == sorted(found, key=lambda p: (p[1], p[0]))
                    assert len({i for i, _ in found}) == len(found)
                    for i, d in found:
                        assert d <= 31
                        assert d in {pdq_distance(query, h) for h in versions[i]}
                    on_stable = [p for p in found if p[0] in stable_set]
                    assert on_stable == expected_stable[query]
                    searches += 1
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert searches > 100


def test_empty_index() -> None:
    index = PdqIndex()
    assert index.search("0" * 64, 63) == []
    assert index.search_many(["0" * 64, "f" * 64], 31) == [[], []]
    assert len(index) == 0
    assert 0 not in index
    index.remove([1, 2])
    index.compact()
    assert index.search(bytes(32), 0) == []
    built = PdqIndex.build([], [])
    assert built.search("a" * 64, 31) == []


def test_query_forms_and_search_many(data: Data) -> None:
    ids, hashes, queries = data.ids, data.hashes, data.queries
    from_bytes = PdqIndex.build(ids, hashes)
    from_hex = PdqIndex.build(ids.tolist(), hex_of(hashes))
    many = from_bytes.search_many(queries[:5], 31)
    assert many == [from_hex.search(q, 31) for q in queries[:5]]
    assert many == [from_bytes.search(bytes.fromhex(q), 31) for q in queries[:5]]
    assert from_hex.search(queries[0].upper(), 31) == many[0]
    assert from_hex.memory_bytes() == from_bytes.memory_bytes() > 70_000 * 40


def test_extreme_ids() -> None:
    low, high = -(1 << 63), (1 << 63) - 1
    index = PdqIndex()
    index.add([low, high], ["0" * 64, "1" + "0" * 63])
    assert index.search("0" * 64, 1) == [(low, 0), (high, 1)]
    assert low in index and high in index
    assert 1 << 63 not in index
    index.remove([1 << 64, low])
    assert index.search("0" * 64, 1) == [(high, 1)]


@pytest.mark.parametrize(
    "bad",
    ["", "0" * 63, "0" * 65, "g" * 64, "0" * 62 + " 0", " " + "0" * 63, "é" * 64, "0x" + "0" * 62],
)
def test_malformed_hashes_are_rejected(bad: str) -> None:
    index = PdqIndex.build([1], ["0" * 64])
    with pytest.raises(ValueError):
        parse_pdq_hex(bad)
    with pytest.raises(ValueError):
        index.search(bad, 31)
    with pytest.raises(ValueError):
        index.add([2], [bad])
    with pytest.raises(ValueError):
        index.search_many(["0" * 64, bad], 31)
    assert len(index) == 1


@pytest.mark.parametrize("distance", [-1, 64, 256, 1.5, True, "31"])
def test_bad_distances_are_rejected(distance: object) -> None:
    index = PdqIndex.build([1], ["0" * 64])
    with pytest.raises(ValueError):
        index.search("0" * 64, distance)  # type: ignore[arg-type]


def test_bad_batches_are_rejected() -> None:
    index = PdqIndex()
    with pytest.raises(ValueError):
        index.search(bytes(31), 0)
    with pytest.raises(ValueError):
        index.add([1, 2], ["0" * 64])
    with pytest.raises(ValueError):
        index.add([1, 1], ["0" * 64, "1" * 64])
    with pytest.raises(ValueError):
        index.add([1], np.zeros((1, 31), dtype=np.uint8))
    with pytest.raises(ValueError):
        index.add([1], np.zeros((1, 32), dtype=np.int16))
    with pytest.raises(ValueError):
        index.add([1 << 63], ["0" * 64])
    with pytest.raises(ValueError):
        PdqIndex.build([5, 5], ["0" * 64, "1" * 64])
    assert len(index) == 0


def test_distance_helpers() -> None:
    assert parse_pdq_hex("00" * 31 + "ff") == bytes(31) + b"\xff"
    assert pdq_distance("0" * 64, "f" * 64) == 256
    assert pdq_distance("0" * 64, "0" * 63 + "7") == 3
    assert pdq_distance("A" * 64, "a" * 64) == 0
