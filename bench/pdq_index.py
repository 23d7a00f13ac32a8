"""PDQ index: build time, single-query latency, recall and memory, against threatexchange.

For each size, clustered PDQ hashes are made once (bench/pdq_hashes.py: one in ten uniform random,
the rest 1..40 bits from one of those) and saved as .npy files in a temporary directory. Each
measured index then runs in a fresh interpreter (subprocess) that np.load()s them fully into
memory (no mmap): its baseline RSS is read before loading, so generating the hashes never counts,
and the input arrays are freed before "RSS after build" is read (VmHWM, the peak, includes them).

* ours: `mediaguard.banks.pdq_index.PdqIndex.build(ids, hashes)` from the (n, 32) uint8 array,
  then `search(hex, 31)` one query at a time; then 1,000 single-entry adds and removes and a
  `compact()` (measured after everything else, so they don't touch the other figures).
* the peer, on the same hashes and queries (sizes up to --peer-max): threatexchange's
  `PDQIndex.build([(hex, id), ...])` (faiss IndexBinaryMultiHash, 16 x 16 bits) and `query(hex)`,
  whose threshold is 31.

Queries: half near-duplicates of indexed hashes (0..31 bits away, one in ten 32..40), half random;
timed one by one like a web request, on a warm index (every query is run once before). Recall:
the first --recall-sample queries, against a brute-force numpy scan of all hashes at <= 31.
Targets: at 10M, p50 <= 1 ms, recall 100%, <= 1.5 GB resident; at 1M, at least 3x less memory
than the peer (RSS after build minus baseline) and p50 no slower.

    python bench/pdq_index.py [--sizes 1000000,10000000] [--queries 2000] [--recall-sample 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))
from pdq_hashes import clustered, queries

SEED = 20240611
RADIUS = 31
GIB = 1 << 30
MIB = 1 << 20

Result = dict[str, Any]
Matches = list[tuple[int, int]]


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory() -> dict[str, int]:
    return {"rss": status_kib("VmRSS") * 1024, "peak": status_kib("VmHWM") * 1024}


def percentiles_us(nanos: Sequence[int]) -> dict[str, float]:
    values = np.asarray(nanos, dtype=np.float64) / 1e3
    return {
        "p50_us": float(np.percentile(values, 50)),
        "p99_us": float(np.percentile(values, 99)),
        "mean_us": float(values.mean()),
    }


def time_each(calls: Sequence[Callable[[], object]]) -> list[int]:
    out = []
    for call in calls:
        start = time.perf_counter_ns()
        call()
        out.append(time.perf_counter_ns() - start)
    return out


# --- workers: each runs alone in a fresh interpreter -------------------------------------------


def load(data: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], list[str]]:
    ids = np.load(data / "ids.npy")
    hashes = np.load(data / "hashes.npy")
    hex_queries = json.loads((data / "queries.json").read_text())["queries"]
    return ids, hashes, hex_queries


def run_ours(data: Path, sample: int) -> Result:
    from mediaguard.banks.pdq_index import PdqIndex

    gc.collect()
    baseline = memory()["rss"]
    ids, hashes, hex_queries = load(data)
    loaded = memory()["rss"]
    start = time.perf_counter()
    index = PdqIndex.build(ids, hashes)
    build_s = time.perf_counter() - start
    spare = hashes[:1000].copy(), ids[-1]
    del ids, hashes
    gc.collect()
    after = memory()
    layout = index._snapshot.base.layout

    for q in hex_queries:  # warm-up
        index.search(q, RADIUS)
    latencies = time_each([lambda q=q: index.search(q, RADIUS) for q in hex_queries])
    found = [index.search(q, RADIUS) for q in hex_queries[:sample]]
    result: Result = {
        "build_s": build_s,
        "baseline_rss": baseline,
        "loaded_rss": loaded,
        "rss": after["rss"],
        "peak": after["peak"],
        "index_rss": after["rss"] - baseline,
        "memory_bytes": index.memory_bytes(),
        "layout": f"m={layout.tables} b={layout.bits}" if layout else "scan",
        "latencies_ns": latencies,
        "found": found,
    }
    result.update(measure_updates(index, *spare, hex_queries))
    return result


def measure_updates(
    index: Any, hashes: npt.NDArray[np.uint8], last_id: int, hex_queries: list[str]
) -> Result:
    """Single-entry adds and removes, search with them in the delta, then a compaction."""
    new_ids = [int(last_id) + 1 + i for i in range(len(hashes))]
    adds = time_each(
        [lambda i=i, h=h: index.add([i], h[None, :]) for i, h in zip(new_ids, hashes, strict=True)]
    )
    with_delta = time_each([lambda q=q: index.search(q, RADIUS) for q in hex_queries])
    removes = time_each([lambda i=i: index.remove([i]) for i in new_ids])
    start = time.perf_counter()
    index.compact()
    compact_s = time.perf_counter() - start
    return {
        "add_p50_us": percentiles_us(adds)["p50_us"],
        "remove_p50_us": percentiles_us(removes)["p50_us"],
        "search_with_delta_p50_us": percentiles_us(with_delta)["p50_us"],
        "compact_s": compact_s,
        "peak_after_compact": memory()["peak"],
    }


def run_peer(data: Path, sample: int) -> Result:
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    gc.collect()
    baseline = memory()["rss"]
    ids, hashes, hex_queries = load(data)
    loaded = memory()["rss"]
    entries = [(row.tobytes().hex(), int(i)) for row, i in zip(hashes, ids, strict=True)]
    del ids, hashes
    start = time.perf_counter()
    index = PDQIndex.build(entries)
    build_s = time.perf_counter() - start
    del entries  # the index keeps the tuples
    gc.collect()
    after = memory()

    def search(q: str) -> Matches:
        return [(int(m.metadata), int(m.similarity_info.distance)) for m in index.query(q)]

    for q in hex_queries:
        search(q)
    latencies = time_each([lambda q=q: search(q) for q in hex_queries])
    return {
        "build_s": build_s,
        "baseline_rss": baseline,
        "loaded_rss": loaded,
        "rss": after["rss"],
        "peak": after["peak"],
        "index_rss": after["rss"] - baseline,
        "latencies_ns": latencies,
        "found": [search(q) for q in hex_queries[:sample]],
    }


def worker(kind: str, data: Path, sample: int) -> None:
    result = run_ours(data, sample) if kind == "ours" else run_peer(data, sample)
    print(json.dumps(result))


def in_subprocess(kind: str, data: Path, sample: int) -> Result:
    command = [sys.executable, __file__, "--worker", kind, "--data", str(data)]
    command += ["--recall-sample", str(sample)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{out.stderr}")
    result: Result = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- parent ------------------------------------------------------------------------------------


def brute_force(hashes: npt.NDArray[np.uint8], ids: npt.NDArray[np.int64], qs: list[str]) -> Any:
    """Every (id, distance) within RADIUS of each query: XOR + popcount of all 4 words of every
    hash, chunk by chunk (no index, no early exit)."""
    columns = np.ascontiguousarray(hashes.view("<u8").T)
    query_words = [np.frombuffer(bytes.fromhex(q), dtype="<u8") for q in qs]
    out: list[Matches] = [[] for _ in qs]
    step = 1 << 20
    for lo in range(0, columns.shape[1], step):
        chunk = columns[:, lo : lo + step]
        for matches, q in zip(out, query_words, strict=True):
            d = np.zeros(chunk.shape[1], dtype=np.uint16)
            for j in range(4):
                d += np.bitwise_count(chunk[j] ^ q[j])
            hits = np.flatnonzero(d <= RADIUS)
            matches.extend(zip(ids[hits + lo].tolist(), d[hits].tolist(), strict=True))
    return [sorted(m, key=lambda p: (p[1], p[0])) for m in out]


def recall(found: list[Matches], truth: list[Matches]) -> dict[str, Any]:
    expected = sum(len(t) for t in truth)
    hits = sum(len({tuple(p) for p in f} & set(t)) for f, t in zip(found, truth, strict=True))
    exact = all(
        sorted(map(tuple, f), key=lambda p: (p[1], p[0])) == t
        for f, t in zip(found, truth, strict=True)
    )
    return {"recall": hits / expected if expected else 1.0, "exact": exact, "truth": expected}


def measure_size(size: int, n_queries: int, sample: int, peer: bool, tmp: Path) -> Result:
    data = tmp / str(size)
    data.mkdir()
    start = time.perf_counter()
    ids, hashes = clustered(size, SEED)
    hex_queries, near = queries(hashes, n_queries, SEED + 1)
    np.save(data / "ids.npy", ids)
    np.save(data / "hashes.npy", hashes)
    (data / "queries.json").write_text(json.dumps({"queries": hex_queries}))
    print(f"[{size:,}] generated in {time.perf_counter() - start:.1f}s", flush=True)
    start = time.perf_counter()
    truth = brute_force(hashes, ids, hex_queries[:sample])
    print(f"[{size:,}] brute force of {sample} queries: {time.perf_counter() - start:.1f}s")
    del ids, hashes

    out: Result = {"size": size, "queries": n_queries, "recall_sample": sample}
    for kind in ("ours", "peer") if peer else ("ours",):
        start = time.perf_counter()
        result = in_subprocess(kind, data, sample)
        print(f"[{size:,}] {kind} worker: {time.perf_counter() - start:.1f}s", flush=True)
        latencies = result.pop("latencies_ns")
        result.update(percentiles_us(latencies))
        result["near_p50_us"] = float(np.percentile(np.asarray(latencies)[near], 50) / 1e3)
        result["random_p50_us"] = float(np.percentile(np.asarray(latencies)[~near], 50) / 1e3)
        result.update(recall(result.pop("found"), truth))
        out[kind] = result
    for path in data.iterdir():
        path.unlink()
    data.rmdir()
    return out


def report(results: list[Result]) -> None:
    rows = [
        ("build (s)", lambda r: f"{r['build_s']:.1f}"),
        ("query p50 (us)", lambda r: f"{r['p50_us']:.0f}"),
        ("query p99 (us)", lambda r: f"{r['p99_us']:.0f}"),
        (
            "p50 near-dup / random (us)",
            lambda r: f"{r['near_p50_us']:.0f} / {r['random_p50_us']:.0f}",
        ),
        ("recall @31 (sample)", lambda r: f"{100 * r['recall']:.2f}% of {r['truth']}"),
        ("exact result sets", lambda r: "yes" if r["exact"] else "no"),
        ("RSS after build (MiB)", lambda r: f"{r['rss'] / MIB:.0f}"),
        ("RSS peak (MiB)", lambda r: f"{r['peak'] / MIB:.0f}"),
        ("baseline RSS (MiB)", lambda r: f"{r['baseline_rss'] / MIB:.0f}"),
        ("index RSS = after - baseline (MiB)", lambda r: f"{r['index_rss'] / MIB:.0f}"),
        ("memory_bytes() (MiB)", lambda r: f"{r['memory_bytes'] / MIB:.0f}"),
        ("layout", lambda r: r["layout"]),
        ("add 1 entry p50 (us)", lambda r: f"{r['add_p50_us']:.0f}"),
        ("remove 1 entry p50 (us)", lambda r: f"{r['remove_p50_us']:.0f}"),
        ("query p50, 1000 in delta (us)", lambda r: f"{r['search_with_delta_p50_us']:.0f}"),
        ("compact() (s)", lambda r: f"{r['compact_s']:.1f}"),
        ("RSS peak after compact (MiB)", lambda r: f"{r['peak_after_compact'] / MIB:.0f}"),
    ]
    columns = [(f"ours {r['size']:,}", r["ours"]) for r in results]
    columns += [(f"peer {r['size']:,}", r["peer"]) for r in results if "peer" in r]
    width = max(len(name) for name, _ in rows)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{name:>16}" for name, _ in columns))
    for name, cell in rows:
        values = [cell(result) if _has(cell, result) else "-" for _, result in columns]
        print(f"{name:{width}}  " + "  ".join(f"{v:>16}" for v in values))
    print()
    for r in results:
        if "peer" in r:
            ours, peer = r["ours"], r["peer"]
            r["ratios"] = {
                "index_rss": peer["index_rss"] / ours["index_rss"],
                "rss": peer["rss"] / ours["rss"],
                "p50": peer["p50_us"] / ours["p50_us"],
                "p99": peer["p99_us"] / ours["p99_us"],
                "build": peer["build_s"] / ours["build_s"],
            }
            print(
                f"{r['size']:,}: peer/ours  index RSS {r['ratios']['index_rss']:.1f}x, "
                f"raw RSS {r['ratios']['rss']:.1f}x, p50 {r['ratios']['p50']:.1f}x, "
                f"p99 {r['ratios']['p99']:.1f}x, build {r['ratios']['build']:.1f}x"
            )
    print()
    for r in results:
        for target, met in targets(r):
            print(f"target {r['size']:,}: {target}: {'MET' if met else 'NOT MET'}")


def _has(cell: Callable[[Result], str], result: Result) -> bool:
    try:
        cell(result)
    except KeyError:
        return False
    return True


def targets(r: Result) -> list[tuple[str, bool]]:
    ours = r["ours"]
    checks = [("recall 100% and exact", ours["recall"] == 1.0 and ours["exact"])]
    if r["size"] >= 10_000_000:
        checks.append((f"p50 <= 1 ms ({ours['p50_us']:.0f} us)", ours["p50_us"] <= 1000))
        checks.append((f"RSS <= 1.5 GiB ({ours['rss'] / GIB:.2f} GiB)", ours["rss"] <= 1.5 * GIB))
    if "peer" in r:
        ratio = r["ratios"]["index_rss"]
        checks.append((f">= 3x less memory than the peer ({ratio:.1f}x)", ratio >= 3))
        p50s = f"{ours['p50_us']:.0f} vs {r['peer']['p50_us']:.0f} us"
        checks.append(
            (f"p50 no slower than the peer ({p50s})", ours["p50_us"] <= r["peer"]["p50_us"])
        )
    r["targets"] = {name: met for name, met in checks}
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--recall-sample", type=int, default=200)
    parser.add_argument("--peer-max", type=int, default=1_000_000, help="largest size for the peer")
    parser.add_argument("--worker", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.recall_sample)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    sample = min(args.recall_sample, args.queries)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"threatexchange {version('threatexchange')}, faiss-cpu {version('faiss-cpu')}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="pdq-bench-") as tmp:
        for size in sizes:
            peer = size <= args.peer_max
            results.append(measure_size(size, args.queries, sample, peer, Path(tmp)))
    report(results)
    print(json.dumps({"bench": "pdq_index", "results": results}))


if __name__ == "__main__":
    main()
