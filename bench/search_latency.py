"""Search latency over a labelled catalogue: the stored-label filter, against query-time exclusion
of every term (Openverse's first plan) and against no filter. Run by ``search_filter.py``.

The catalogue goes into a real mediaguard database (the migrations' schema: FTS5 on SQLite, the
tsvector column with its GIN index on PostgreSQL), labelled by ``TermMatcher`` as the workers
label it. Every query runs the three ways in turn, through ``SearchRepository.search``, the code
behind ``GET /v1/search``:

* unfiltered: sensitive results included (``include_sensitive_results=true``);
* filtered: sensitive results left out through the stored labels (the default);
* query-time exclusion: sensitive results included, and every item whose text matches any of the
  terms left out by the index itself (one OR of all the terms, negated).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mediaguard.signals.terms import TermList, TermMatcher, normalize
from mediaguard.store import Store
from mediaguard.store.models import MEDIA_ITEMS
from mediaguard.store.search import SearchRepository, fts_query, search_text

Item = tuple[str, str, list[str]]
MODES = ("unfiltered", "filtered", "exclusion")
CHUNK = 20_000
SCRATCH = "mediaguard_search_bench"


def fill(
    store: Store, items: Iterable[Item], terms: Sequence[str], count: int, seed: int
) -> dict[str, int]:
    """Insert ``count`` processed items, labelled as a worker labels them."""
    matcher = TermMatcher(TermList.of(terms))
    rng = random.Random(f"scores-{seed}")
    now = datetime.now(UTC)
    flagged = {"text": 0, "image": 0, "any": 0}
    stream = iter(items)
    number = 0
    started = time.perf_counter()
    while chunk := list(islice(stream, CHUNK)):
        rows: list[dict[str, Any]] = []
        for title, description, tags in chunk:
            number += 1
            matched = matcher.match(title, description, tags)
            score = rng.random() ** 8  # most photos are far from the threshold
            image = score >= 0.8
            flagged["text"] += bool(matched)
            flagged["image"] += image
            flagged["any"] += bool(matched) or image
            rows.append(
                {
                    "platform_id": f"File:{number}.jpg",
                    "intake_key": f"k{number}",
                    "origin": "backfill",
                    "state": "done",
                    "match_status": "no_match",
                    "title": title,
                    "description": description,
                    "tags": tags,
                    "search_text": search_text(title, description, tags),
                    "uploader": f"user{number % 5000}",
                    "nsfw_score": score,
                    "nsfw_model_version": "bench",
                    "attempts": 1,
                    "text_sensitive": bool(matched),
                    "image_sensitive": image,
                    "matched_terms": matched or None,
                    "terms_version": matcher.version,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with store.engine.begin() as connection:
            connection.execute(sa.insert(MEDIA_ITEMS), rows)
        print(f"\r  {number:,}/{count:,} items stored", end="", flush=True)
    print(f" in {time.perf_counter() - started:.0f} s")
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE media_items")
    else:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO media_search(media_search) VALUES ('optimize')")
            connection.exec_driver_sql("ANALYZE")
    return flagged


def scratch_database(server_url: str, *, drop: bool = False) -> str:
    """A fresh database on the server of ``server_url`` (dropped again with ``drop``)."""
    url = sa.make_url(server_url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
            if not drop:
                connection.exec_driver_sql(f"CREATE DATABASE {SCRATCH}")
    finally:
        engine.dispose()
    return url.set(database=SCRATCH).render_as_string(hide_password=False)


def exclusion(dialect: str, terms: Sequence[str]) -> sa.ColumnElement[bool]:
    """NOT (the item's text matches any term): the query-time plan, on the same index."""
    words = [normalize(term).split() for term in terms]
    if dialect == "sqlite":
        any_term = " OR ".join(fts_query([" ".join(w)]) for w in words)
        matching = sa.text("SELECT rowid FROM media_search WHERE media_search MATCH :terms")
        return ~MEDIA_ITEMS.c.id.in_(matching.bindparams(terms=any_term))
    any_term = " | ".join("(" + " <-> ".join(w) + ")" for w in words)
    tsquery = sa.func.to_tsquery(sa.literal_column("'simple'"), any_term)
    return ~sa.literal_column("media_items.search_vector").op("@@")(tsquery)


def queries(vocabulary: Sequence[str], n: int, seed: int) -> list[str]:
    """Single words and pairs from the catalogue's vocabulary, as people type them."""
    rng = random.Random(f"queries-{seed}")
    words = [w for w in vocabulary if w.isalpha() and len(w) > 3]
    singles = [rng.choice(words) for _ in range(n * 2 // 3)]
    pairs = [f"{rng.choice(words)} {rng.choice(words)}" for _ in range(n - len(singles))]
    return singles + pairs


def measure(
    repository: SearchRepository,
    searches: Sequence[str],
    excluded: sa.ColumnElement[bool],
    rounds: int,
    exclusion_queries: int,
) -> dict[str, dict[str, float]]:
    """p50 and p95 of each mode. Query-time exclusion is slow, so it runs once over the first
    ``exclusion_queries`` queries; ``filtered_subset`` is the stored-label filter on the same."""
    runs: dict[str, Callable[[str], object]] = {
        "unfiltered": lambda q: repository.search(q, include_sensitive=True, offset=0, limit=20),
        "filtered": lambda q: repository.search(q, include_sensitive=False, offset=0, limit=20),
        "exclusion": lambda q: repository.search(
            q, include_sensitive=True, offset=0, limit=20, extra=excluded
        ),
    }
    for query in searches[:3]:  # warm the caches
        for mode in ("unfiltered", "filtered"):
            runs[mode](query)
    times: dict[str, list[float]] = {mode: [] for mode in (*MODES, "filtered_subset")}
    for round_number in range(rounds):
        for position, query in enumerate(searches):
            for mode in MODES:
                if mode == "exclusion" and (round_number or position >= exclusion_queries):
                    continue
                start = time.perf_counter()
                runs[mode](query)
                times[mode].append(time.perf_counter() - start)
                if mode == "filtered" and not round_number and position < exclusion_queries:
                    times["filtered_subset"].append(times[mode][-1])
    return {
        mode: {
            "p50_ms": 1e3 * statistics.median(values),
            "p95_ms": 1e3 * statistics.quantiles(values, n=20)[-1],
        }
        for mode, values in times.items()
    }


def bench_search(
    backend_url: str | None,
    items: Iterable[Item],
    count: int,
    terms: Sequence[str],
    vocabulary: Sequence[str],
    *,
    n_queries: int,
    rounds: int,
    exclusion_queries: int,
    seed: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mediaguard-search-") as folder:
        url = scratch_database(backend_url) if backend_url else f"sqlite:///{Path(folder) / 'c.db'}"
        store = Store(url)
        try:
            store.upgrade()
            dialect = store.engine.dialect.name
            print(f"{dialect}: filling {count:,} items", flush=True)
            flagged = fill(store, items, terms, count, seed)
            searches = queries(vocabulary, n_queries, seed)
            excluded = exclusion(dialect, terms)
            latency = measure(
                SearchRepository(store.engine), searches, excluded, rounds, exclusion_queries
            )
        finally:
            store.close()
            if backend_url is not None:
                scratch_database(backend_url, drop=True)
    return {
        "backend": dialect,
        "items": count,
        "flagged": flagged,
        "queries": len(searches),
        "rounds": rounds,
        "latency": latency,
        "filtered_over_unfiltered": latency["filtered"]["p50_ms"] / latency["unfiltered"]["p50_ms"],
        "exclusion_queries": min(exclusion_queries, len(searches)),
        "exclusion_over_filtered": latency["exclusion"]["p50_ms"]
        / latency["filtered_subset"]["p50_ms"],
    }


def report_search(r: dict[str, Any]) -> None:
    print()
    print(
        f"{r['backend']}, {r['items']:,} items ({r['flagged']['any']:,} sensitive), "
        f"{r['queries']} queries x {r['rounds']} rounds"
    )
    print(f"{'path':>22}  {'p50 ms':>8}  {'p95 ms':>8}")
    names = {
        "unfiltered": "no filter",
        "filtered": "stored labels",
        "exclusion": "query-time exclusion",
    }
    for mode in MODES:
        values = r["latency"][mode]
        print(f"{names[mode]:>22}  {values['p50_ms']:>8.2f}  {values['p95_ms']:>8.2f}")
    print(
        f"stored labels / no filter: {r['filtered_over_unfiltered']:.2f}x p50 (target <= 1.2); "
        f"query-time exclusion / stored labels: {r['exclusion_over_filtered']:.1f}x p50 "
        f"(on the first {r['exclusion_queries']} queries, one round)"
    )
