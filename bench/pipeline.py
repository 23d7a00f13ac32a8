"""The upload pipeline end to end, items/s: distinct 1-megapixel JPEGs fetched over loopback.

Every item is a distinct 1152x864 JPEG (q90) made at run time from scikit-image's photos
(bench/images.py) with its own crop and noise, so no two are byte-identical and no score comes
from the store. The images are served by a `python -m http.server` subprocess on 127.0.0.1
(ThreadingHTTPServer), each at /img/<n>.jpg. Measured in the same run:

* the peer, "the straightforward path": a separate hasher and a separate scorer. Per URL the
  hasher fetches (httpx), decodes with Pillow, converts to RGB and computes PDQ
  (`pdqhash.compute`) and MD5/SHA-1/SHA-256; the scorer fetches again, decodes again
  (`mediaguard.media.decode.decode`) and scores with mediaguard's own model one image at a time
  (`NsfwSignal("exact", batch_size=1).extract`). Two threads (the machine's two cores).
* mediaguard embedded: `mediaguard serve` on SQLite with its in-process worker (SQLite queue).
* mediaguard production: PostgreSQL + Redis, `mediaguard serve` with no in-process worker and
  two `mediaguard worker --workers 4` processes.

Each mediaguard set-up gets every item by `POST /v1/media {"url", "platform_id"}` at once, then
polls `GET /v1/media/{id}` until `done`; throughput = items / (first POST .. last verdict).
Latency: upload-to-verdict of sequential items on the idle embedded service (GET every 5 ms).
Targets: both set-ups >= 1.5x the peer; latency p50 <= 250 ms.

    python bench/pipeline.py [--quick] [--no-postgres] [--json] [--items N] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from images import _encode, photos

SIZE = (1152, 864)  # 0.995 MP
ITEMS, QUICK_ITEMS = 96, 24
LATENCY_ITEMS, QUICK_LATENCY_ITEMS = 30, 10
WORKER_PROCESSES, WORKER_THREADS = 2, 4  # the PostgreSQL + Redis set-up
WARMUP_ITEMS = 8  # per set-up, not measured: loads the model in every worker
TARGET_RATIO = 1.5
TARGET_P50_MS = 250.0
PG_ADMIN_DSN = os.environ.get(
    "MEDIAGUARD_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/5"
MEDIAGUARD = [sys.executable, "-m", "mediaguard"]


class BenchError(RuntimeError):
    pass


# -- images and their server -------------------------------------------------------------------


def make_images(count: int, *, seed: int = 0) -> list[bytes]:
    """`count` distinct 1-MP JPEGs: a random crop (80-100% of each side) of a photo, resized to
    SIZE, with mild noise of its own."""
    rng = np.random.default_rng(seed)
    sources = [rgb for _, rgb in photos()]
    out = []
    for n in range(count):
        rgb = sources[n % len(sources)]
        width, height = rgb.size
        crop_w, crop_h = (int(side * rng.uniform(0.8, 1.0)) for side in (width, height))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        resized = rgb.crop((left, top, left + crop_w, top + crop_h)).resize(
            SIZE, Image.Resampling.BICUBIC
        )
        pixels = np.asarray(resized, dtype=np.int16)
        pixels = pixels + rng.integers(-4, 5, size=pixels.shape, dtype=np.int16)
        out.append(_encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG"))
    if len({hashlib.sha256(c).digest() for c in out}) != count:
        raise BenchError("two generated images are byte-identical")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    return " ".join(str(a) for a in args) if isinstance(args, list) else str(args)


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Until `url` answers 200, while `proc` (which serves it) is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{command(proc)} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 within {timeout:.0f} s")


class Processes:
    """Subprocesses with their output in log files; all terminated (then waited for) on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append((proc, log))
        return proc

    def check(self) -> None:
        """Raise if any process has exited (a worker that died would only show as a timeout)."""
        for proc, _ in self.started:
            if proc.poll() is not None:
                raise BenchError(f"{command(proc)} exited with {proc.returncode}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the processes have used so far; Linux /proc, else 0."""
        total = 0
        for proc, _ in self.started:
            stat = Path(f"/proc/{proc.pid}/stat")
            if stat.exists():
                fields = stat.read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def tails(self, lines: int = 15) -> str:
        parts = []
        for proc, log in self.started:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {command(proc)} (log {log.name})\n" + "\n".join(text))
        return "\n".join(parts)

    def close(self) -> None:
        for proc, _ in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in reversed(self.started):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def image_server(folder: Path, processes: Processes) -> Iterator[str]:
    port = free_port()
    serve = ["http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    proc = processes.start("images", [sys.executable, "-m", *serve], dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/img/0.jpg", proc, timeout=30)
    yield base


# -- the peer ----------------------------------------------------------------------------------


def run_peer(urls: Sequence[str], warmup: str, threads: int = 2) -> tuple[float, float]:
    """Items/s and CPU ms per item (every thread of this process)."""
    import pdqhash

    from mediaguard.config import load_settings
    from mediaguard.media.decode import decode
    from mediaguard.signals.nsfw import NsfwSignal

    max_pixels = load_settings().max_image_pixels
    scorer = NsfwSignal("exact", batch_size=1)
    client = httpx.Client(timeout=30)

    def fetch(url: str) -> bytes:
        response = client.get(url)
        response.raise_for_status()
        return response.content

    def item(url: str) -> tuple[str, int, str, float]:
        # the hasher: its own fetch and decode
        content = fetch(url)
        with Image.open(io.BytesIO(content)) as image:
            rgb = image.convert("RGB")
        vector, quality = pdqhash.compute(np.asarray(rgb))
        pdq = np.packbits(vector.astype(np.uint8)).tobytes().hex()
        digests = [hashlib.new(name, content).hexdigest() for name in ("md5", "sha1", "sha256")]
        # the scorer: fetches and decodes again
        media = decode(fetch(url), max_pixels=max_pixels)
        return pdq, int(quality), digests[2], scorer.extract(media)

    try:
        item(warmup)
        cpu = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(item, urls))  # raises the first failure
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        client.close()
        scorer.close()
    if not all(0.0 <= score <= 1.0 for *_, score in results):
        raise BenchError("the peer gave a score outside 0..1")
    return len(urls) / seconds, cpu * 1000 / len(urls)


# -- mediaguard --------------------------------------------------------------------------------


class Client:
    """POST /v1/media and GET /v1/media/{id} with a client token."""

    def __init__(self, base: str, token: str, processes: Processes) -> None:
        self.processes = processes
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def submit(self, url: str, platform_id: str) -> str:
        response = self.http.post("/v1/media", json={"url": url, "platform_id": platform_id})
        if response.status_code not in (200, 201, 202) or "id" not in response.json():
            raise BenchError(f"POST /v1/media {url}: {response.status_code} {response.text}")
        return str(response.json()["id"])

    def state(self, item_id: str) -> tuple[str, dict[str, object]]:
        response = self.http.get(f"/v1/media/{item_id}")
        if response.status_code != 200:
            raise BenchError(f"GET /v1/media/{item_id}: {response.status_code} {response.text}")
        body = response.json()
        if body.get("state") == "failed":
            raise BenchError(f"item {item_id} failed: {json.dumps(body)}")
        return str(body.get("state")), body

    def wait_done(self, item_id: str, interval: float, deadline: float) -> dict[str, object]:
        while True:
            state, body = self.state(item_id)
            if state == "done":
                return body
            if time.monotonic() > deadline:
                raise BenchError(f"item {item_id} still {state!r} at the deadline: {body}")
            self.processes.check()
            time.sleep(interval)

    def close(self) -> None:
        self.http.close()


SIGNALS = ("sha256", "sha1", "md5", "pdq", "nsfw")


def finished_at(body: dict[str, object]) -> float:
    """The verdict's time (epoch seconds) by the service's clock, which is this machine's."""
    signals = body.get("signals")
    missing = [k for k in SIGNALS if not isinstance(signals, dict) or signals.get(k) is None]
    if missing:
        raise BenchError(f"item {body.get('id')} is done without {', '.join(missing)}: {body}")
    return datetime.fromisoformat(str(body["finished_at"])).timestamp()


def run_items(client: Client, urls: dict[int, str]) -> tuple[float, dict[str, object]]:
    """Submit every item at once, then collect each verdict. Items/s from the first POST to the
    last `finished_at`, so the polling (oldest pending item only, every 100 ms, to keep the
    requests from competing with the work) does not decide the figure."""
    deadline = time.monotonic() + 120 + 3 * len(urls)
    started = time.time()
    ids = [client.submit(url, f"bench-{n}") for n, url in urls.items()]
    body: dict[str, object] = {}
    last = started
    for item_id in ids:
        body = client.wait_done(item_id, 0.1, deadline)
        last = max(last, finished_at(body))
    return len(urls) / (last - started), body


def run_latency(client: Client, urls: dict[int, str]) -> tuple[list[float], list[float]]:
    """Upload-to-verdict of sequential items (GET every 5 ms): as the client sees it, and from
    the item's `created_at` to its `finished_at` (the polling's share left out), in ms."""
    seen, served = [], []
    for n, url in urls.items():
        started = time.perf_counter()
        item_id = client.submit(url, f"bench-{n}")
        body = client.wait_done(item_id, 0.005, time.monotonic() + 60)
        seen.append((time.perf_counter() - started) * 1000)
        created = datetime.fromisoformat(str(body["created_at"])).timestamp()
        served.append((finished_at(body) - created) * 1000)
    return seen, served


def wait_idle(processes: Processes, timeout: float = 180) -> None:
    """Until the processes' CPU time stops growing (below 10% of a core over 0.5 s): workers
    have loaded their model and index. Linux /proc; elsewhere a fixed pause."""
    if not Path("/proc/self/stat").exists():
        time.sleep(10)
        return
    deadline = time.monotonic() + timeout
    before = processes.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        processes.check()
        now = processes.cpu_seconds()
        if now - before < 0.05:
            return
        before = now
    raise BenchError(f"the service was still busy after {timeout:.0f} s")


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(ms, 50)), 1),
        "p95": round(float(np.percentile(ms, 95)), 1),
        "max": round(max(ms), 1),
    }


def create_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [*MEDIAGUARD, "tokens", "create", "--name", "bench", "--role", "client"],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode or not lines:
        raise BenchError(f"tokens create: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return lines[-1]


def service_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEDIAGUARD_DATABASE_URL": database_url,
        "MEDIAGUARD_FETCH_ALLOW_LOOPBACK": "true",
        "MEDIAGUARD_PORT": str(port),
        "MEDIAGUARD_LOG_LEVEL": "WARNING",
        **extra,
    }


def measure_setup(
    env: dict[str, str],
    workers: int,
    processes: Processes,
    warmup: dict[int, str],
    rounds: list[dict[int, str]],
    latency: dict[int, str] | None = None,
) -> dict[str, object]:
    """Start the set-up, warm it up, then run each round of distinct items; the fastest counts
    (the others lost time to whatever else the machine did)."""
    token = create_token(env)
    server = processes.start("serve", [*MEDIAGUARD, "serve"], env)
    for _ in range(workers):
        processes.start("worker", [*MEDIAGUARD, "worker", "--workers", str(WORKER_THREADS)], env)
    base = f"http://127.0.0.1:{env['MEDIAGUARD_PORT']}"
    wait_for(f"{base}/readyz", server)
    client = Client(base, token, processes)
    try:
        wait_idle(processes)
        run_items(client, warmup)
        runs = []
        for items in rounds:
            wait_idle(processes)
            cpu = processes.cpu_seconds()
            rate, last = run_items(client, items)
            runs.append((rate, (processes.cpu_seconds() - cpu) * 1000 / len(items)))
        rate, cpu_ms = max(runs)
        row: dict[str, object] = {
            "items": len(rounds[0]),
            "items_per_s": round(rate, 2),
            "cpu_ms_per_item": round(cpu_ms, 1),
            "runs": [round(r, 2) for r, _ in runs],
            "last_signals": last["signals"],
        }
        if latency:
            wait_idle(processes)
            seen, served = run_latency(client, latency)
            row["latency_ms"] = {"items": len(seen), **percentiles(seen)}
            row["latency_server_ms"] = percentiles(served)
        processes.check()
        return row
    finally:
        client.close()


def run_embedded(
    tmp: Path, warmup: dict[int, str], rounds: list[dict[int, str]], latency: dict[int, str]
) -> dict[str, object]:
    folder = tmp / "embedded"
    folder.mkdir()
    env = service_env(f"sqlite:///{folder}/mg.db", free_port())
    processes = Processes(folder)
    try:
        return measure_setup(env, 0, processes, warmup, rounds, latency)
    except BenchError as exc:
        raise BenchError(f"embedded: {exc}\n{processes.tails()}") from None
    finally:
        processes.close()


def run_production(
    tmp: Path, warmup: dict[int, str], rounds: list[dict[int, str]]
) -> dict[str, object]:
    import psycopg
    import redis

    folder = tmp / "production"
    folder.mkdir()
    name = f"mg_bench_{secrets.token_hex(6)}"
    queue = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        queue.ping()
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except (redis.RedisError, psycopg.Error) as exc:
        queue.close()
        raise BenchError(
            f"PostgreSQL ({PG_ADMIN_DSN}) or Redis ({REDIS_URL}) is not reachable: {exc}; "
            "start them (scripts/start-services.sh) or pass --no-postgres"
        ) from None
    processes = Processes(folder)
    with ExitStack() as stack:
        stack.callback(admin.close)
        stack.callback(queue.close)
        stack.callback(queue.flushdb)
        stack.callback(admin.execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        stack.callback(processes.close)  # runs first: processes go before their database
        queue.flushdb()
        env = service_env(
            PG_URL.format(name=name),
            free_port(),
            MEDIAGUARD_REDIS_URL=REDIS_URL,
            MEDIAGUARD_SERVE_WORKERS="0",
        )
        done = subprocess.run([*MEDIAGUARD, "db", "upgrade"], env=env, capture_output=True)
        if done.returncode:
            raise BenchError(f"db upgrade: exit {done.returncode}\n{done.stderr.decode()}")
        try:
            return measure_setup(env, WORKER_PROCESSES, processes, warmup, rounds)
        except BenchError as exc:
            raise BenchError(f"production: {exc}\n{processes.tails()}") from None
    raise AssertionError("unreachable")


# -- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(result: dict[str, object]) -> str:
    peer, runs = result["peer_items_per_s"], result["peer_runs"]
    assert isinstance(peer, float) and isinstance(runs, list)
    lines = [
        f"upload pipeline end to end: {result['items']} distinct {SIZE[0]}x{SIZE[1]} JPEGs q90 "
        f"({result['mean_kb']} KB on average) over loopback"
        + (f", best of {len(runs)} runs each" if len(runs) > 1 else ""),
        f"{'path':<46}{'items/s':>9}{'x peer':>8}{'CPU ms/item':>13}  target",
        f"{'peer: separate hasher + scorer, 2 threads':<46}{peer:>9.2f}{1.0:>8.2f}"
        f"{result['peer_cpu_ms_per_item']:>13}",
    ]
    labels = {
        "embedded": "mediaguard embedded (SQLite, in-process)",
        "production": f"mediaguard PostgreSQL + Redis, {WORKER_PROCESSES} x {WORKER_THREADS} "
        "workers",
    }
    for key, label in labels.items():
        row = result.get(key)
        if not isinstance(row, dict):
            lines.append(f"{label:<46}{'skipped':>9}")
            continue
        ok = row["ratio"] >= TARGET_RATIO
        lines.append(
            f"{label:<46}{row['items_per_s']:>9.2f}{row['ratio']:>8.2f}"
            f"{row['cpu_ms_per_item']:>13}  >= {TARGET_RATIO}x {verdict(ok)}"
        )
    embedded = result.get("embedded")
    if isinstance(embedded, dict) and isinstance(embedded.get("latency_ms"), dict):
        lat = embedded["latency_ms"]
        lines.append(
            f"latency upload-to-verdict, idle embedded, {lat['items']} sequential items: "
            f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms  "
            f"(target p50 <= {TARGET_P50_MS:.0f} ms) {verdict(lat['p50'] <= TARGET_P50_MS)}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ITEMS} items (CI smoke)")
    parser.add_argument("--items", type=int, help=f"items per run (default {ITEMS})")
    parser.add_argument("--repeat", type=int, default=2, help="runs per path; the fastest counts")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL + Redis")
    parser.add_argument("--peer-only", action="store_true", help="measure only the peer")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    count = args.items or (QUICK_ITEMS if args.quick else ITEMS)
    repeat = 1 if args.quick else max(1, args.repeat)
    latency_count = QUICK_LATENCY_ITEMS if args.quick else LATENCY_ITEMS

    # Numbered once across every use, so that no two items anywhere share their bytes (a
    # set-up's second run would otherwise find its scores stored): `repeat` runs of `count`
    # items, then the warm-up items, then the latency items. The peer, which stores nothing,
    # runs the first `count` each time.
    total = count * repeat + WARMUP_ITEMS + latency_count
    images = make_images(total)
    rounds = [range(r * count, (r + 1) * count) for r in range(repeat)]
    warm = range(count * repeat, count * repeat + WARMUP_ITEMS)
    timed = range(count * repeat + WARMUP_ITEMS, total)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "www" / "img").mkdir(parents=True)
        for n, content in enumerate(images):
            (tmp / "www" / "img" / f"{n}.jpg").write_bytes(content)
        servers = Processes(tmp)
        try:
            with image_server(tmp / "www", servers) as base:
                urls = {n: f"{base}/img/{n}.jpg" for n in range(total)}
                warmup = {n: urls[n] for n in warm}
                sets = [{n: urls[n] for n in numbers} for numbers in rounds]
                peer_runs = [run_peer(list(sets[0].values()), urls[warm[0]]) for _ in rounds]
                result: dict[str, object] = {
                    "items": count,
                    "size": f"{SIZE[0]}x{SIZE[1]}",
                    "mean_kb": round(np.mean([len(images[n]) for n in rounds[0]]) / 1024),
                    "target_ratio": TARGET_RATIO,
                    "target_p50_ms": TARGET_P50_MS,
                }
                if not args.peer_only:
                    result["embedded"] = run_embedded(
                        tmp, warmup=warmup, rounds=sets, latency={n: urls[n] for n in timed}
                    )
                    if not args.no_postgres:
                        result["production"] = run_production(tmp, warmup=warmup, rounds=sets)
        except BenchError as exc:
            raise SystemExit(f"pipeline bench failed: {exc}") from None
        finally:
            servers.close()

    peer, peer_cpu = max(peer_runs)
    result["peer_items_per_s"] = round(peer, 2)
    result["peer_cpu_ms_per_item"] = round(peer_cpu, 1)
    result["peer_runs"] = [round(rate, 2) for rate, _ in peer_runs]
    for key in ("embedded", "production"):
        row = result.get(key)
        if isinstance(row, dict):
            row["ratio"] = round(float(row["items_per_s"]) / peer, 2)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(report(result))


if __name__ == "__main__":
    main()
