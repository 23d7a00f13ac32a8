"""PDQ hashing: mediaguard's numba port against `pdqhash.compute`, per image and in threads.

The images are the photos of bench/images.py (scikit-image's, no download) converted to RGB and
resized (bicubic) to 0.3 MP (640x480), 1 MP (1152x864) and 12 MP (4000x3000: upscaled, only the
first --large photos, the peer takes most of a second each). Both hashers get the same decoded
uint8 RGB arrays: decoding is not timed.

* ours: `mediaguard.signals.pdq_fast.compute(pixels)` (what `pdq_hash` calls), compiled by numba
  with the GIL released; compiled (or loaded from numba's cache) before anything is timed.
* the peer: `pdqhash.compute(pixels)` (Meta's C++ through Cython; the hasher of ThreatExchange's
  Python library and of the Hasher-Matcher-Actioner), which holds the GIL.

First every image is hashed by both and the hex digits and quality compared (they must be equal).
Single thread: each image hashed --repeat times, its fastest time kept; ms per image is the mean
over the set. Threads: a pool of N threads hashes the whole set --rounds times over; images per
second against one thread doing the same (the scaling). Compile: a fresh interpreter imports
pdq_fast and hashes one image with an empty numba cache directory (cold: numba compiles), then a
second one with the cache it left (cached).

    python bench/pdq_hashing.py [--sizes 0.3,1,12] [--large 4] [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pdqhash
from PIL import Image

from mediaguard.signals import pdq_fast

sys.path.insert(0, str(Path(__file__).parent))
from images import photos

Pixels = npt.NDArray[np.uint8]
Hasher = Callable[[Pixels], tuple[str, int]]
Result = dict[str, Any]
SIZES = {"0.3": (640, 480), "1": (1152, 864), "12": (4000, 3000)}


def peer(pixels: Pixels) -> tuple[str, int]:
    bits, quality = pdqhash.compute(pixels)
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)


def ours(pixels: Pixels) -> tuple[str, int]:
    bits, quality = pdq_fast.compute(pixels)
    return pdq_fast.hash_bits(bits), quality


HASHERS: dict[str, Hasher] = {"peer": peer, "ours": ours}


def image_set(size: tuple[int, int], limit: int | None) -> list[Pixels]:
    return [
        np.asarray(rgb.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)
        for _, rgb in photos(limit)
    ]


def single_thread_ms(hasher: Hasher, images: Sequence[Pixels], repeat: int) -> float:
    """The mean over the images of each one's fastest of `repeat` hashes, in ms."""
    best = []
    for pixels in images:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            hasher(pixels)
            times.append(time.perf_counter() - start)
        best.append(min(times))
    return 1e3 * statistics.fmean(best)


def throughput(hasher: Hasher, images: Sequence[Pixels], threads: int, rounds: int) -> float:
    """Images per second when `threads` threads hash the set `rounds` times over."""
    work = list(images) * rounds
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(hasher, images[:threads]))  # start the threads
        start = time.perf_counter()
        list(pool.map(hasher, work))
        elapsed = time.perf_counter() - start
    return len(work) / elapsed


def compile_times() -> dict[str, float]:
    """Import + first hash in a fresh interpreter, with an empty numba cache, then with it."""
    code = (
        "import time; start = time.perf_counter()\n"
        "import numpy as np\n"
        "from mediaguard.signals import pdq_fast\n"
        "imported = time.perf_counter()\n"
        "pdq_fast.compute(np.zeros((480, 640, 3), dtype=np.uint8))\n"
        "end = time.perf_counter()\n"
        "print(imported - start, end - imported)\n"
    )
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pdq-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for kind in ("cold", "cached"):
            run = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            imported, first = (float(v) for v in run.stdout.split())
            out[f"{kind}_import_s"] = imported
            out[f"{kind}_first_call_s"] = first
    return out


def measure(label: str, images: list[Pixels], args: argparse.Namespace) -> Result:
    height, width = images[0].shape[:2]
    mismatches = [i for i, pixels in enumerate(images) if ours(pixels) != peer(pixels)]
    result: Result = {
        "size": f"{width}x{height}",
        "megapixels": label,
        "images": len(images),
        "mismatches": len(mismatches),
    }
    for name, hasher in HASHERS.items():
        repeat = args.repeat if width * height < 4_000_000 else max(1, args.repeat // 2)
        ms = single_thread_ms(hasher, images, repeat)
        rounds = max(1, round(args.seconds / (len(images) * ms / 1e3)))
        one = throughput(hasher, images, 1, rounds)
        many = throughput(hasher, images, args.threads, rounds)
        result[name] = {
            "ms_per_image": ms,
            "images_per_s_1_thread": one,
            f"images_per_s_{args.threads}_threads": many,
            "thread_scaling": many / one,
        }
        print(
            f"[{label} MP] {name}: {result[name]['ms_per_image']:.2f} ms/image, "
            f"{one:.1f} img/s on 1 thread, {many:.1f} on {args.threads}",
            flush=True,
        )
    result["ratios"] = {
        "ms_per_image": result["peer"]["ms_per_image"] / result["ours"]["ms_per_image"],
        "one_thread": result["ours"]["images_per_s_1_thread"]
        / result["peer"]["images_per_s_1_thread"],
        "threads": result["ours"][f"images_per_s_{args.threads}_threads"]
        / result["peer"][f"images_per_s_{args.threads}_threads"],
    }
    return result


def report(results: list[Result], threads: int, compile_s: dict[str, float]) -> None:
    many = f"img/s {threads} thr"
    header = ("size", "n", "same", "peer ms", "ours ms", "x", "peer img/s", "ours img/s", "x")
    header += (f"peer {many}", f"ours {many}", "x", "scaling peer/ours")
    rows = []
    for r in results:
        p, o = r["peer"], r["ours"]
        key = f"images_per_s_{threads}_threads"
        rows.append(
            (
                f"{r['size']} ({r['megapixels']} MP)",
                str(r["images"]),
                "yes" if r["mismatches"] == 0 else f"NO ({r['mismatches']})",
                f"{p['ms_per_image']:.1f}",
                f"{o['ms_per_image']:.2f}",
                f"{r['ratios']['ms_per_image']:.1f}",
                f"{p['images_per_s_1_thread']:.1f}",
                f"{o['images_per_s_1_thread']:.1f}",
                f"{r['ratios']['one_thread']:.1f}",
                f"{p[key]:.1f}",
                f"{o[key]:.1f}",
                f"{r['ratios']['threads']:.1f}",
                f"{p['thread_scaling']:.2f} / {o['thread_scaling']:.2f}",
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(f"{c:>{w}}" for c, w in zip(row, widths, strict=True)))
    print()
    if compile_s:
        print(
            "numba compile, fresh interpreter (import s + first hash s): "
            f"cold {compile_s['cold_import_s']:.2f} + {compile_s['cold_first_call_s']:.2f}, "
            f"cached {compile_s['cached_import_s']:.2f} + {compile_s['cached_first_call_s']:.2f}"
        )
    for r in results:
        print(
            f"{r['size']}: peer/ours {r['ratios']['ms_per_image']:.1f}x per image on one thread, "
            f"{r['ratios']['threads']:.1f}x the throughput on {threads} threads; "
            f"{'identical hashes' if r['mismatches'] == 0 else 'HASHES DIFFER'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.3,1,12", help=f"megapixels, of {list(SIZES)}")
    parser.add_argument("--limit", type=int, default=None, help="photos per size (default: 23)")
    parser.add_argument("--large", type=int, default=4, help="photos at 12 MP")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="single-thread runs per image")
    parser.add_argument("--seconds", type=float, default=2.0, help="rough length of each run")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile timing")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}, numba {version('numba')}, "
        f"pdqhash {version('pdqhash')}"
    )
    compile_s = {} if args.no_compile else compile_times()
    results = []
    for label in args.sizes.split(","):
        limit = min(args.large, args.limit or args.large) if label == "12" else args.limit
        results.append(measure(label, image_set(SIZES[label], limit), args))
    report(results, args.threads, compile_s)
    print(json.dumps({"bench": "pdq_hashing", "compile": compile_s, "results": results}))


if __name__ == "__main__":
    main()
