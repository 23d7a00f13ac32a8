"""Catalogue search and the public view of one item: what people searching a catalogue see.

Sensitive results are left out unless asked for, through the labels stored on each item; items
that matched a bank or that a reviewer deindexed are never served, asked for or not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from mediaguard.config import Settings
from mediaguard.errors import InvalidInputError, NotFoundError
from mediaguard.metrics import Metrics
from mediaguard.store import Store
from mediaguard.store.items import ItemInfo

MAX_QUERY = 200


@dataclass(frozen=True)
class SearchPage:
    query: str
    page: int
    page_size: int
    total: int
    include_sensitive: bool
    results: list[ItemInfo]

    @property
    def page_count(self) -> int:
        return math.ceil(self.total / self.page_size)


class Catalogue:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self._settings = settings
        self._search = store.search
        self._metrics = metrics

    def search(
        self, query: str, *, page: int = 1, page_size: int = 20, include_sensitive: bool = False
    ) -> SearchPage:
        if len(query) > MAX_QUERY:
            raise InvalidInputError(f"the query is longer than {MAX_QUERY} characters")
        largest = self._settings.search_max_page_size
        if not 1 <= page_size <= largest:
            raise InvalidInputError(f"page_size must be between 1 and {largest}")
        if page < 1:
            raise InvalidInputError("page starts at 1")
        started = time.perf_counter()
        hits = self._search.search(
            query,
            include_sensitive=include_sensitive,
            offset=(page - 1) * page_size,
            limit=page_size,
        )
        self._metrics.searches.labels(str(include_sensitive).lower()).observe(
            time.perf_counter() - started
        )
        return SearchPage(query, page, page_size, hits.total, include_sensitive, hits.items)

    def item(self, item_id: int) -> ItemInfo:
        """An item as the public may see it: NotFoundError for anything search never serves."""
        item = self._search.public_item(item_id)
        if item is None:
            raise NotFoundError(f"no media item {item_id}")
        return item

    def is_public(self, item_id: int) -> bool:
        return self._search.public_item(item_id) is not None
