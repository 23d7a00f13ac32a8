"""Nothing is lost: `mediaguard worker` processes killed mid-batch, Redis restarted under a full
queue, PostgreSQL unreachable during an upload, an image host that times out and recovers.

Each ends with every item `done` once and no e-mail or webhook sent twice. The test process plays
the API's part (it stores notifications and enqueues them); the workers are real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mediaguard.api import create_app
from mediaguard.jobs.queue import attach_queue
from mediaguard.pipeline import MediaSubmission
from mediaguard.service import Service
from mediaguard.store.models import ACTIONS, MEDIA_ITEMS

from fixtures.images import REAL_PHOTOS, encode, photo, transformed_copies
from fixtures.redis_server import RedisServer
from fixtures.servers import LocalHttpServer, unused_tcp_port
from fixtures.service import ServerThread
from fixtures.smtp import SmtpTestServer
from fixtures.tcp_proxy import TcpProxy

SECRET = "failure-tests-secret"
SETUPS = [
    pytest.param("sqlite", id="sqlite-huey-sqlite"),
    pytest.param("postgresql", id="postgres-redis", marks=pytest.mark.postgres),
]


@dataclass
class Setup:
    """A database, a queue, the peers, and worker processes sharing them."""

    database_url: str
    env: dict[str, str]
    service: Service  # the API's side, in this process
    workers: list[subprocess.Popen[bytes]]
    logs: Path

    def start_worker(
        self, threads: int = 2, metrics_port: int | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        metrics = ["--metrics-port", str(metrics_port)] if metrics_port else []
        process = subprocess.Popen(
            [sys.executable, "-m", "mediaguard", "worker", "--workers", str(threads), *metrics],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(process)
        return process

    def submit(self, url: str, platform_id: str) -> int:
        item = self.service.pipeline.submit(MediaSubmission(url=url, platform_id=platform_id)).item
        assert item is not None
        return item.id

    def states(self) -> dict[int, str]:
        with self.service.store.engine.connect() as connection:
            rows = connection.execute(sa.select(MEDIA_ITEMS.c.id, MEDIA_ITEMS.c.state)).all()
        return {row[0]: row[1] for row in rows}

    def wait_until(self, check: Callable[[dict[int, str]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.states()):
                return
            for worker in self.workers:
                assert worker.poll() in (None, -signal.SIGKILL), self.worker_logs()
            time.sleep(0.1)
        raise AssertionError(f"timed out: {self.states()}\n{self.worker_logs()}")

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.glob("*.log"))


@pytest.fixture
def make_setup(
    make_service: Callable[..., Service],
    make_database_url: Callable[[str], str],
    redis_server: RedisServer,
    smtp_server: SmtpTestServer,
    http_server: LocalHttpServer,
    tmp_path: Path,
) -> Iterator[Callable[..., Setup]]:
    setups: list[Setup] = []

    def make(kind: str, **overrides: str) -> Setup:
        database_url = make_database_url(kind)
        env = {
            "MEDIAGUARD_DATABASE_URL": database_url,
            "MEDIAGUARD_FETCH_ALLOW_LOOPBACK": "true",
            "MEDIAGUARD_FETCH_READ_TIMEOUT": "1",
            "MEDIAGUARD_FETCH_TOTAL_TIMEOUT": "3",
            "MEDIAGUARD_SMTP_HOST": "127.0.0.1",
            "MEDIAGUARD_SMTP_PORT": str(smtp_server.port),
            "MEDIAGUARD_NOTIFY_RECIPIENTS": "trust@wiki.example",
            "MEDIAGUARD_TAKEDOWN_WEBHOOK_URL": http_server.url("/takedown"),
            "MEDIAGUARD_TAKEDOWN_WEBHOOK_SECRET": SECRET,
            "MEDIAGUARD_AUTO_TAKEDOWN": "true",
            "MEDIAGUARD_LEASE_SECONDS": "4",
            "MEDIAGUARD_SWEEP_INTERVAL": "0.5",
            "MEDIAGUARD_RETRY_BACKOFF": "0.2",
            "MEDIAGUARD_RETRY_BACKOFF_MAX": "0.5",
            "MEDIAGUARD_QUEUE_PATH": str(tmp_path / f"queue-{len(setups)}.db"),
            "MEDIAGUARD_LOG_LEVEL": "INFO",
            **({"MEDIAGUARD_REDIS_URL": redis_server.url} if kind == "postgresql" else {}),
            **overrides,
        }
        settings = {k.removeprefix("MEDIAGUARD_").lower(): v for k, v in env.items()}
        settings.pop("database_url")
        service = make_service(database_url=database_url, **settings)
        service.start_index(wait=True)
        attach_queue(service)
        logs = tmp_path / f"logs-{len(setups)}"
        logs.mkdir()
        setup = Setup(database_url, env, service, [], logs)
        setups.append(setup)
        return setup

    yield make
    for setup in setups:
        for worker in setup.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


def bank_chelsea(service: Service) -> None:
    service.banks.create("CSAM_LIST", category="child_protection")
    hashes = service.hash_bytes(encode(photo("chelsea.png").convert("RGB"), "PNG"))
    service.banks.add_content("CSAM_LIST", hashes.signals(), quality=100)


def serve_images(http_server: LocalHttpServer, delay: float) -> tuple[list[str], set[str]]:
    """Distinct images, four of them copies of the banked photo; each answer `delay` late."""
    copies = transformed_copies(photo("chelsea.png"))
    matching = {name: copies[name] for name in ("jpeg-q50", "webp", "half-jpeg", "grey-png")}
    others = {
        name: encode(photo(name).convert("RGB"), "JPEG", quality=85)
        for name in REAL_PHOTOS
        if name != "chelsea.png"
    }
    urls, matched = [], set()
    for name, content in [*matching.items(), *others.items()]:
        url = http_server.add_sequence(
            f"/img/{name}", [(200, content)], content_type="image/jpeg", delays=[delay]
        )
        urls.append(url)
        if name in matching:
            matched.add(url)
    return urls, matched


def assert_acted_once(
    setup: Setup, smtp: SmtpTestServer, http: LocalHttpServer, matched: int
) -> None:
    """Per matched item one e-mail and one takedown, never two. An action a killed worker had
    claimed is not run again: the sweeper marks it `failed` (interrupted) once its lease is
    over; its e-mail or webhook went out at most once (before the kill, or not at all)."""

    def actions() -> list[sa.Row[tuple[int, str, str, str | None]]]:
        with setup.service.store.engine.connect() as connection:
            query = sa.select(
                ACTIONS.c.item_id, ACTIONS.c.action, ACTIONS.c.status, ACTIONS.c.detail
            )
            return list(connection.execute(query).all())

    deadline = time.monotonic() + 30
    while any(a.status in ("running", "pending") for a in actions()):
        assert time.monotonic() < deadline, actions()
        time.sleep(0.2)
    found = actions()
    assert len({a.item_id for a in found}) == matched
    urls = {item_id: setup.service.pipeline.get(item_id).media_url for item_id, *_ in found}
    takedowns = [
        json.loads(r.body)["item"]["id"]
        for r in http.requests
        if r.path == "/takedown" and r.method == "POST"
    ]
    for action in found:
        if action.action == "takedown":
            sent = takedowns.count(action.item_id)
        else:
            url = urls[action.item_id] or ""
            sent = sum(1 for m in smtp.messages if url in m.message.get_content())
        if action.status == "done":
            assert sent == 1, action
        else:
            assert action.status == "failed" and "interrupted" in (action.detail or ""), action
            assert sent <= 1, action


@pytest.mark.slow
@pytest.mark.parametrize("kind", SETUPS)
def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(
    kind: str,
    make_setup: Callable[..., Setup],
    http_server: LocalHttpServer,
    smtp_server: SmtpTestServer,
) -> None:
    setup = make_setup(kind)
    bank_chelsea(setup.service)
    urls, matched = serve_images(http_server, delay=0.4)
    ids = [setup.submit(url, f"File:{n}") for n, url in enumerate(urls)]
    worker = setup.start_worker()
    setup.wait_until(lambda states: list(states.values()).count("done") >= 3)
    in_hand = [i for i, state in setup.states().items() if state == "processing"]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert in_hand, "the worker was killed between items; the test wants it mid-batch"

    setup.start_worker()
    setup.wait_until(lambda states: all(s == "done" for s in states.values()))
    assert sorted(setup.states()) == sorted(ids)
    with setup.service.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(MEDIA_ITEMS.c.id, MEDIA_ITEMS.c.attempts, MEDIA_ITEMS.c.match_status)
        ).all()
    assert {row.id for row in rows if row.match_status == "match"} == {
        i for i, url in zip(ids, urls, strict=True) if url in matched
    }
    assert any(row.attempts == 2 for row in rows if row.id in in_hand)
    assert_acted_once(setup, smtp_server, http_server, len(matched))


@pytest.mark.slow
@pytest.mark.postgres
def test_items_queued_when_redis_restarts_are_swept_back_into_the_queue(
    make_setup: Callable[..., Setup],
    redis_server: RedisServer,
    http_server: LocalHttpServer,
    smtp_server: SmtpTestServer,
) -> None:
    setup = make_setup("postgresql")
    bank_chelsea(setup.service)
    urls, matched = serve_images(http_server, delay=0)
    ids = [setup.submit(url, f"File:{n}") for n, url in enumerate(urls[:6])]
    assert setup.service.pipeline.queued_messages() == 6  # the messages are in this Redis
    redis_server.restart()  # every queued message is gone
    assert setup.service.pipeline.queued_messages() == 0
    redis_server.stop()
    late = setup.submit(urls[6], "File:late")  # stored while Redis is down
    redis_server.start()
    setup.start_worker()
    setup.wait_until(lambda states: all(s == "done" for s in states.values()))
    assert sorted(setup.states()) == sorted([*ids, late])
    assert_acted_once(setup, smtp_server, http_server, len(matched & set(urls[:7])))


@pytest.mark.slow
@pytest.mark.parametrize("kind", SETUPS)
def test_an_image_host_that_times_out_then_recovers(
    kind: str, make_setup: Callable[..., Setup], http_server: LocalHttpServer
) -> None:
    setup = make_setup(kind)
    content = encode(photo("coffee.png").convert("RGB"), "JPEG")
    url = http_server.add_sequence(
        "/slow.jpg", [(200, content)] * 3, content_type="image/jpeg", delays=[2.5, 2.5, 0]
    )
    item_id = setup.submit(url, "File:Slow.jpg")
    port = unused_tcp_port()
    setup.start_worker(metrics_port=port)
    setup.wait_until(lambda states: states[item_id] == "done")
    item = setup.service.pipeline.get(item_id)
    assert item.attempts == 3 and item.error_code is None and item.nsfw_score is not None
    assert sum(1 for r in http_server.requests if r.path == "/slow.jpg") == 3
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text  # the worker's own counters
    assert 'mediaguard_item_failures_total{reason="fetch_timeout"} 2.0' in metrics
    assert 'mediaguard_items_processed_total{result="retry"} 2.0' in metrics
    assert 'mediaguard_items_processed_total{result="done"} 1.0' in metrics
    assert 'mediaguard_items{state="done"} 1.0' in metrics


@pytest.fixture
def api_through_proxy(
    make_service: Callable[..., Service],
    make_database_url: Callable[[str], str],
    make_tcp_proxy: Callable[[str, int], TcpProxy],
) -> Iterator[tuple[httpx.Client, TcpProxy, Service, str]]:
    """The API on a PostgreSQL database reached through a proxy that can cut it off."""
    direct = make_database_url("postgresql")
    proxy = make_tcp_proxy("127.0.0.1", 5432)
    url = sa.make_url(direct).set(host=proxy.host, port=proxy.port)
    service = make_service(database_url=url.render_as_string(hide_password=False))
    token = service.create_token("platform", "client")[0]
    server = ServerThread(create_app(service, jobs=False))
    base_url = server.__enter__()
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield client, proxy, service, direct
    finally:
        server.__exit__()


@pytest.mark.postgres
def test_no_202_for_an_upload_the_database_did_not_store(
    api_through_proxy: tuple[httpx.Client, TcpProxy, Service, str], http_server: LocalHttpServer
) -> None:
    client, proxy, _service, direct = api_through_proxy
    notification = {"url": http_server.url("/a.jpg"), "platform_id": "File:A.jpg"}
    proxy.down()
    for _ in range(3):
        refused = client.post("/v1/media", json=notification)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "unavailable"
    engine = sa.create_engine(direct)
    try:
        with engine.connect() as connection:
            count = sa.select(sa.func.count()).select_from(MEDIA_ITEMS)
            assert connection.execute(count).scalar() == 0
            proxy.up()
            accepted = client.post("/v1/media", json=notification)
            assert accepted.status_code == 202, accepted.text
            assert connection.execute(count).scalar() == 1
            stored = connection.execute(sa.select(MEDIA_ITEMS.c.id)).scalar()
            assert stored == accepted.json()["id"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_worker_that_loses_the_database_mid_item_retries_it_to_one_verdict(
    make_service: Callable[..., Service],
    make_database_url: Callable[[str], str],
    make_tcp_proxy: Callable[[str, int], TcpProxy],
    http_server: LocalHttpServer,
) -> None:
    """PostgreSQL goes away while the worker fetches: the verdict cannot be written, nothing
    half-written stays, and once it is back the item is swept round and done once."""
    proxy = make_tcp_proxy("127.0.0.1", 5432)
    url = sa.make_url(make_database_url("postgresql")).set(host=proxy.host, port=proxy.port)
    service = make_service(
        database_url=url.render_as_string(hide_password=False),
        lease_seconds=0.5,
        retry_backoff=0.05,
        retry_backoff_max=0.1,
    )
    service.start_index(wait=True)
    content = encode(photo("coffee.png").convert("RGB"), "JPEG")
    slow = http_server.add_sequence("/slow.jpg", [(200, content)], "image/jpeg", delays=[0.8])
    item = service.pipeline.submit(MediaSubmission(url=slow, platform_id="File:Slow.jpg")).item
    assert item is not None

    cut = threading.Timer(0.3, proxy.down)  # while the worker waits for the image
    cut.start()
    assert service.pipeline.process(item.id) == "retry"  # never raises, nothing recorded
    cut.join()
    assert service.pipeline.process(item.id) == "retry"  # cannot even claim it
    proxy.up()
    deadline = time.monotonic() + 20
    while service.pipeline.get(item.id).state != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
        service.pipeline.sweep()  # the expired lease goes back to the queue
        service.pipeline.process(item.id)
    done = service.pipeline.get(item.id)
    assert done.state == "done" and done.nsfw_score is not None and done.pdq
    assert service.store.media.content(item.id) is None
    assert service.store.scores.get(done.sha256 or "", done.nsfw_model_version or "")
