"""The Huey queue: SQLite storage on one machine, Redis across machines. One task: process the
media item with this id. The message carries only the id; the item lives in the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
from huey import Huey, RedisHuey, SqliteHuey
from redis import ConnectionPool

from mediaguard.config import Settings
from mediaguard.service import Service

QUEUE_NAME = "mediaguard"
TASK_NAME = "process_media"


def queue_path(settings: Settings) -> Path:
    """The SQLite queue file: set, or beside a SQLite database, or in the working directory."""
    if settings.queue_path:
        return Path(settings.queue_path)
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(str(url.database))
        return database.with_name(f"{database.stem}-queue.db")
    return Path("mediaguard-queue.db")


def make_huey(settings: Settings) -> Huey:
    if settings.redis_url:
        pool = ConnectionPool.from_url(
            settings.redis_url,
            socket_connect_timeout=5,
            socket_timeout=10,  # above the blocking read's 1 s
            health_check_interval=30,
        )
        return RedisHuey(QUEUE_NAME, connection_pool=pool, results=False, read_timeout=1)
    path = queue_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(path), results=False, timeout=10)


class JobQueue:
    """What the pipeline enqueues through (its ``Dispatcher``) and what workers consume."""

    def __init__(self, settings: Settings, process: Callable[[int], object]) -> None:
        self.settings = settings
        self.huey = make_huey(settings)
        self._task = self.huey.task(name=TASK_NAME)(process)

    @property
    def backend(self) -> str:
        return "redis" if self.settings.redis_url else "sqlite"

    def enqueue(self, item_ids: Sequence[int]) -> None:
        for item_id in item_ids:
            self._task(item_id)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def close(self) -> None:
        self.huey.storage.close()


def attach_queue(service: Service) -> JobQueue:
    """The queue for this service's settings, set as its pipeline's dispatcher."""
    queue = JobQueue(service.settings, service.pipeline.process)
    service.pipeline.dispatcher = queue
    return queue
