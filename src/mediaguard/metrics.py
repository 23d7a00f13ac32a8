"""Prometheus metrics, one registry per service so several services (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def observe_batch(self, size: int, seconds: float) -> None:
        self.inference_batch_size.observe(size)
        self.inference_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
