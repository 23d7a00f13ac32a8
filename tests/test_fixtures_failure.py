"""The failure-test fixtures themselves: a restartable redis-server and a TCP proxy to cut PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from fixtures.redis_server import RedisServer
from fixtures.tcp_proxy import TcpProxy


def test_redis_restart_loses_keys(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        client.set("upload:1", "queued")
        assert client.get("upload:1") == b"queued"

    redis_server.stop()
    with (
        redis.Redis.from_url(redis_server.url, socket_connect_timeout=1) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()

    redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping()
        assert client.get("upload:1") is None
        client.set("upload:2", "queued")

    redis_server.restart()
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.dbsize() == 0


@pytest.mark.postgres
def test_proxy_cuts_postgres(make_tcp_proxy: Callable[[str, int], TcpProxy]) -> None:
    proxy = make_tcp_proxy("127.0.0.1", 5432)
    engine = create_engine(
        f"postgresql+psycopg://postgres@{proxy.host}:{proxy.port}/test",
        poolclass=NullPool,
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.connect() as connection:
            assert connection.execute(text("select 1")).scalar_one() == 1
            proxy.down()
            assert proxy.open_connections == 0
            with pytest.raises(OperationalError):
                connection.execute(text("select 1"))

        started = time.monotonic()
        with pytest.raises(OperationalError), engine.connect():
            pass
        assert time.monotonic() - started < 5

        proxy.up()
        with engine.connect() as connection:
            assert connection.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()
