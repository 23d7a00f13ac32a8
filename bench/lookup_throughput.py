"""Served lookups of stored scores, requests/s on loopback (target: at least 1,500/s).

Fills a SQLite store with `--rows` scores, starts `mediaguard serve` on it, and drives
`GET /v1/scores/{sha1}` for random stored digests (base-36 and hex alike) with wrk (Debian's
`wrk`; a Python client otherwise). The peer, measured in the same run on the same database file,
is the straightforward service: one bare Starlette route running the same SELECT through sqlite3,
with no middleware, metrics, logging or validation. The ratio shows what mediaguard's stack costs.

    python bench/lookup_throughput.py [--rows 200000] [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

from mediaguard.signals.digests import sha1_hex_to_base36
from mediaguard.store import Store
from mediaguard.store.models import SCORES

MODEL_VERSION = "open_nsfw/resnet50-1by2-864bb37b/exact"

PEER_APP = textwrap.dedent(
    """
    import sqlite3, sys
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    DB = sys.argv[1]
    SQL = ("SELECT sha256, sha1, model_version, score FROM scores WHERE sha1 = ?")
    local = {}

    def connection():
        import threading
        key = threading.get_ident()
        if key not in local:
            local[key] = sqlite3.connect(DB, check_same_thread=False)
        return local[key]

    async def lookup(request):
        rows = connection().execute(SQL, (request.path_params["digest"],)).fetchall()
        if not rows:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse({"scores": [dict(zip(("sha256", "sha1", "model_version", "score"), r))
                                        for r in rows]})

    app = Starlette(routes=[Route("/v1/scores/{digest}", lookup)])
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(database: Path, rows: int) -> list[str]:
    store = Store(f"sqlite:///{database}")
    store.upgrade()
    now = datetime.now(UTC)
    sha1s: list[str] = []
    batch: list[dict[str, object]] = []
    with store.engine.begin() as connection:
        for n in range(rows):
            content = n.to_bytes(8, "big")
            sha1 = hashlib.sha1(content).hexdigest()
            sha1s.append(sha1)
            batch.append(
                {
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "sha1": sha1,
                    "model": "open_nsfw",
                    "model_version": MODEL_VERSION,
                    "score": random.random(),
                    "width": 640,
                    "height": 480,
                    "media_format": "JPEG",
                    "created_at": now,
                }
            )
            if len(batch) == 10_000:
                connection.execute(sa.insert(SCORES), batch)
                batch.clear()
        if batch:
            connection.execute(sa.insert(SCORES), batch)
    store.close()
    return sha1s


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code in (200, 404):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def drive_with_wrk(base: str, paths_file: Path, seconds: int, connections: int) -> float:
    script = paths_file.with_suffix(".lua")
    script.write_text(
        textwrap.dedent(f"""
        local paths = {{}}
        for line in io.lines("{paths_file}") do paths[#paths + 1] = line end
        local i = 0
        request = function()
          i = i + 1
          return wrk.format("GET", paths[(i % #paths) + 1])
        end
        done = function(summary, latency, requests)
          local errors = summary.errors.status + summary.errors.connect + summary.errors.read
            + summary.errors.write + summary.errors.timeout
          io.write(string.format("RESULT %d %f %d %f\\n", summary.requests, summary.duration / 1e6,
            errors, latency:percentile(50) / 1e3))
        end
    """)
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    requests, duration, errors, _p50 = line.split()[1:]
    if int(errors):
        raise RuntimeError(f"{errors} failed requests against {base}")
    return int(requests) / float(duration)


def drive_with_python(base: str, paths: list[str], seconds: int, connections: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    deadline = time.monotonic() + seconds

    def worker(offset: int) -> int:
        done = 0
        with httpx.Client(base_url=base) as client:
            while time.monotonic() < deadline:
                response = client.get(paths[(offset + done) % len(paths)])
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code} from {base}")
                done += 1
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        total = sum(pool.map(worker, range(0, connections * 997, 997)))
    return total / (time.monotonic() - started)


def measure(cmd: list[str], base: str, ready: str, env: dict[str, str], drive: object) -> float:
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"{base}{ready}")
        return drive(base)  # type: ignore[operator,no-any-return]
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "lookup.db"
        sha1s = fill(database, args.rows)
        sample = random.sample(sha1s, 5000)
        paths = [
            f"/v1/scores/{sha1_hex_to_base36(s) if i % 2 else s}" for i, s in enumerate(sample)
        ]
        peer_paths = [f"/v1/scores/{s}" for s in sample]
        use_wrk = shutil.which("wrk") is not None

        def driver(path_list: list[str]) -> object:
            if use_wrk:
                paths_file = Path(tmp) / f"paths-{len(path_list)}-{id(path_list)}.txt"
                paths_file.write_text("\n".join(path_list))
                return lambda base: drive_with_wrk(base, paths_file, args.seconds, args.connections)
            return lambda base: drive_with_python(base, path_list, args.seconds, args.connections)

        env = {
            **os.environ,
            "MEDIAGUARD_DATABASE_URL": f"sqlite:///{database}",
            "MEDIAGUARD_LOG_LEVEL": "INFO",
        }
        port = free_port()
        ours = measure(
            [sys.executable, "-m", "mediaguard", "serve", "--port", str(port)],
            f"http://127.0.0.1:{port}",
            "/readyz",
            env,
            driver(paths),
        )
        peer_file = Path(tmp) / "peer.py"
        peer_file.write_text(PEER_APP)
        port = free_port()
        peer = measure(
            [
                sys.executable,
                "-c",
                f"import sys, uvicorn; sys.argv=['peer', {str(database)!r}]; "
                f"exec(open({str(peer_file)!r}).read()); "
                f"uvicorn.run(app, host='127.0.0.1', port={port}, "
                "log_level='warning', access_log=False)",
            ],
            f"http://127.0.0.1:{port}",
            f"/v1/scores/{'0' * 40}",
            env,
            driver(peer_paths),
        )

    result = {
        "rows": args.rows,
        "client": "wrk" if use_wrk else "python",
        "connections": args.connections,
        "mediaguard_rps": round(ours, 1),
        "bare_starlette_sqlite3_rps": round(peer, 1),
        "ratio": round(ours / peer, 3),
        "target_rps": 1500,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"lookups of stored scores, {args.rows:,} rows, {args.connections} connections "
        f"({result['client']})"
    )
    print(f"  mediaguard GET /v1/scores/{{digest}}   {ours:9.1f} req/s")
    print(f"  peer: bare Starlette + sqlite3        {peer:9.1f} req/s")
    print(f"  ratio                                  {ours / peer:9.3f}x   (target: >= 1500 req/s)")


if __name__ == "__main__":
    main()
