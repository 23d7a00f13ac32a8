"""Prometheus metrics, one registry per service so several services (tests) never collide."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mediaguard.store.db import utcnow
from mediaguard.store.media import QueueStats

log = structlog.get_logger("mediaguard.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_request_seconds = Histogram(
            "mediaguard_http_request_duration_seconds",
            "HTTP request latency by route.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "mediaguard_scoring_duration_seconds",
            "Decode, preprocessing and inference of one image.",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_batch_size = Histogram(
            "mediaguard_inference_batch_size",
            "Images per model run.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "mediaguard_inference_duration_seconds",
            "One model run over a batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.images_scored = Counter(
            "mediaguard_images_scored_total", "Images run through the model.", ["mode"], registry=r
        )
        self.store_lookups = Counter(
            "mediaguard_score_store_lookups_total",
            "Scores asked of the store before scoring, by result (hit: not scored again).",
            ["result"],
            registry=r,
        )
        self.digest_lookups = Counter(
            "mediaguard_digest_lookups_total",
            "Digests asked of the lookup API, by result.",
            ["result"],
            registry=r,
        )
        self.fetch_failures = Counter(
            "mediaguard_fetch_failures_total", "URL fetches that failed.", ["reason"], registry=r
        )
        self.decode_failures = Counter(
            "mediaguard_decode_failures_total",
            "Media that could not be decoded.",
            ["reason"],
            registry=r,
        )

        self.checks = Counter(
            "mediaguard_checks_total",
            "Items checked against the banks, by outcome (match, no_match).",
            ["result"],
            registry=r,
        )
        self.new_matches = Counter(
            "mediaguard_bank_matches_total",
            "Items matching a bank for the first time, by category and signal type.",
            ["category", "signal_type"],
            registry=r,
        )
        self.actions = Counter(
            "mediaguard_actions_total",
            "Actions run or queued, by action and how they ended.",
            ["action", "status"],
            registry=r,
        )
        self.pdq_index_hashes = Gauge(
            "mediaguard_pdq_index_hashes", "PDQ hashes in this process's index.", registry=r
        )
        self.pdq_index_sync_age = Gauge(
            "mediaguard_pdq_index_sync_age_seconds",
            "Seconds since this process's PDQ index last applied the bank change feed.",
            registry=r,
        )

        # upload pipeline, counted by the process that does the work
        self.items_submitted = Counter(
            "mediaguard_items_submitted_total",
            "Notifications stored and queued, by origin (api, backfill).",
            ["origin"],
            registry=r,
        )
        self.enqueue_failures = Counter(
            "mediaguard_enqueue_failures_total",
            "Item ids the queue refused (the sweeper enqueues them later).",
            registry=r,
        )
        self.items_processed = Counter(
            "mediaguard_items_processed_total",
            "Queue messages handled, by result (done, failed, retry, skipped: not due or taken).",
            ["result"],
            registry=r,
        )
        self.item_failures = Counter(
            "mediaguard_item_failures_total",
            "Failed processing attempts, by reason (retried or final).",
            ["reason"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "mediaguard_item_processing_seconds",
            "Lease to verdict: fetch, decode, signals, banks and actions of one item.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_to_verdict_seconds = Histogram(
            "mediaguard_upload_to_verdict_seconds",
            "From the notification being stored to the verdict.",
            buckets=(*_LATENCY_BUCKETS, 60, 300, 1800, 3600),
            registry=r,
        )
        self.sweeper_items = Counter(
            "mediaguard_sweeper_items_total",
            "What the sweeper did: lease_expired (re-queued), lease_expired_failed (attempts "
            "used up), enqueued (due retries and lost messages), action_interrupted.",
            ["what"],
            registry=r,
        )
        self.items_relabelled = Counter(
            "mediaguard_items_relabelled_total",
            "Items whose text labels were re-evaluated against a new term list.",
            registry=r,
        )
        self.term_list_terms = Gauge(
            "mediaguard_sensitive_terms", "Terms in the list this process uses.", registry=r
        )
        self.reports = Counter(
            "mediaguard_reports_total", "User reports filed, by reason.", ["reason"], registry=r
        )
        self.reports_refused = Counter(
            "mediaguard_reports_rate_limited_total",
            "Reports refused because the client filed too many.",
            registry=r,
        )
        self.decisions = Counter(
            "mediaguard_review_decisions_total",
            "Reviewer decisions, by action, counted per item.",
            ["action"],
            registry=r,
        )
        self.searches = Histogram(
            "mediaguard_search_seconds",
            "Catalogue search latency, by whether sensitive results were included.",
            ["include_sensitive"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def watch_queue(
        self, stats: Callable[[], QueueStats], messages: Callable[[], int | None]
    ) -> None:
        """Queue gauges read from the database at scrape time, so every process reports the
        whole pipeline, whichever machines its workers run on."""
        self.registry.register(_QueueCollector(stats, messages))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.inference_batch_size.observe(size)
        self.inference_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector(Collector):
    def __init__(self, stats: Callable[[], QueueStats], messages: Callable[[], int | None]) -> None:
        self._stats = stats
        self._messages = messages

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._stats()
        except Exception as exc:  # a scrape must answer while the database is down
            log.warning("queue_stats_unavailable", error=str(exc).splitlines()[0])
            return
        depth = GaugeMetricFamily(
            "mediaguard_queue_depth", "Items waiting to be processed (state queued)."
        )
        depth.add_metric([], stats.by_state.get("queued", 0))
        yield depth
        oldest = GaugeMetricFamily(
            "mediaguard_queue_oldest_age_seconds", "Age of the oldest queued item (0: none)."
        )
        age = (utcnow() - stats.oldest_queued_at).total_seconds() if stats.oldest_queued_at else 0
        oldest.add_metric([], max(age, 0.0))
        yield oldest
        items = GaugeMetricFamily("mediaguard_items", "Media items by state.", labels=["state"])
        for state in ("queued", "processing", "done", "failed"):
            items.add_metric([state], stats.by_state.get(state, 0))
        yield items
        failed = GaugeMetricFamily(
            "mediaguard_items_failed", "Items in state failed, by reason.", labels=["reason"]
        )
        for reason, count in sorted(stats.failed_by_reason.items()):
            failed.add_metric([reason], count)
        yield failed
        messages = self._messages()
        if messages is not None:
            queue = GaugeMetricFamily(
                "mediaguard_queue_messages", "Messages in the queue broker (Huey) right now."
            )
            queue.add_metric([], messages)
            yield queue
