"""What ``attune serve`` has done, as Prometheus text (``GET /metrics``).

Counters by path and status (every status, 500 included), refusals by
reason, a latency histogram of the accepted scoring requests, the scorer's
running totals, the admission gauges, and the coordinator's caches: groups
and shared criteria held, their capacity, and their evictions (an evicted
group that was still open means the caches are smaller than a step). The recent latencies also feed the Retry-After estimate
(:meth:`Metrics.typical_seconds`). Everything is kept in this process: one
server, one set of numbers, exported on request.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from attunement.integrations.coordinator import BookStats
from attunement.integrations.scorer import ReplyScorer
from attunement.integrations.server.admission import Admission

#: latency histogram bucket bounds, seconds
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: (metric, help, ScorerCounts field) of the scorer's running totals
_SCORER_COUNTERS = (
    ("attune_replies_total", "Replies scored (fallbacks included).", "replies"),
    ("attune_unscorable_total", "Replies answered with the fallback.", "unscorable"),
    ("attune_timed_out_total", "Replies whose deadline passed first.", "timed_out"),
    ("attune_judge_calls_total", "Judge requests sent (cache misses).", "judge_calls"),
    (
        "attune_judge_cached_calls_total",
        "Judge samples served by the cache.",
        "cached_judge_calls",
    ),
)

#: (metric, kind, help, BookStats field) of the coordinator's caches
_BOOK_SAMPLES = (
    (
        "attune_groups_opened_total",
        "counter",
        "Reply groups (criteria rounds) opened.",
        "groups_opened",
    ),
    (
        "attune_groups_evicted_total",
        "counter",
        "Groups dropped from the cache (LRU).",
        "groups_evicted",
    ),
    (
        "attune_open_groups_evicted_total",
        "counter",
        "Groups dropped before they were complete (raise --prompts-per-step).",
        "open_groups_evicted",
    ),
    ("attune_groups", "gauge", "Groups in the cache.", "groups"),
    ("attune_group_capacity", "gauge", "Groups the cache holds at most.", "group_capacity"),
    (
        "attune_criteria_written_total",
        "counter",
        "Criteria requests sent to the judge.",
        "answers_written",
    ),
    (
        "attune_criteria_shared_total",
        "counter",
        "Criteria requests answered from the shared store (no judge call).",
        "answers_shared",
    ),
    (
        "attune_criteria_evicted_total",
        "counter",
        "Criteria answers dropped (LRU).",
        "answers_evicted",
    ),
    ("attune_criteria_cached", "gauge", "Criteria answers in the store.", "answers"),
    (
        "attune_criteria_capacity",
        "gauge",
        "Criteria answers the store holds at most.",
        "answer_capacity",
    ),
)


@dataclass
class Metrics:
    """Counters, a latency histogram and gauges, rendered as Prometheus text."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    latency: dict[str, list[int]] = field(default_factory=dict)
    latency_sum: dict[str, float] = field(default_factory=dict)
    latency_count: dict[str, int] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def request(self, path: str, status: int) -> None:
        key = (path, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def observe(self, path: str, seconds: float) -> None:
        buckets = self.latency.setdefault(path, [0] * (len(LATENCY_BUCKETS) + 1))
        buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum[path] = self.latency_sum.get(path, 0.0) + seconds
        self.latency_count[path] = self.latency_count.get(path, 0) + 1
        self.recent.append(seconds)

    def typical_seconds(self) -> float:
        """The median of the recent latencies (1 s before any request was answered)."""
        return sorted(self.recent)[len(self.recent) // 2] if self.recent else 1.0

    def _histogram(self) -> list[tuple[str, float]]:
        samples: list[tuple[str, float]] = []
        for path in sorted(self.latency):
            running = 0
            for bound, n in zip((*LATENCY_BUCKETS, math.inf), self.latency[path], strict=True):
                running += n
                le = "+Inf" if bound == math.inf else _fmt(bound)
                samples.append((f'_bucket{{path="{path}",le="{le}"}}', running))
            samples.append((f'_sum{{path="{path}"}}', self.latency_sum[path]))
            samples.append((f'_count{{path="{path}"}}', self.latency_count[path]))
        return samples

    def render(self, scorer: ReplyScorer, admission: Admission, book: BookStats) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: Sequence[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_fmt(value)}" for labels, value in samples)

        metric(
            "attune_requests_total",
            "counter",
            "HTTP requests by path and status.",
            [(f'{{path="{p}",code="{s}"}}', v) for (p, s), v in sorted(self.requests.items())],
        )
        metric(
            "attune_server_errors_total",
            "counter",
            "Answers with a 5xx status other than 503 (a bug or a failed dependency).",
            [("", sum(v for (_, code), v in self.requests.items() if code >= 500 and code != 503))],
        )
        metric(
            "attune_rejected_total",
            "counter",
            "Requests refused with 503, by reason.",
            [(f'{{reason="{r}"}}', v) for r, v in sorted(self.rejected.items())],
        )
        metric(
            "attune_request_seconds",
            "histogram",
            "Latency of accepted scoring requests.",
            self._histogram(),
        )
        for name, help_, count in _SCORER_COUNTERS:
            metric(name, "counter", help_, [("", getattr(scorer.counts, count))])
        for name, kind, help_, attr in _BOOK_SAMPLES:
            metric(name, kind, help_, [("", getattr(book, attr))])
        metric(
            "attune_waiting_replies",
            "gauge",
            "Replies waiting for room (not accepted yet).",
            [("", admission.waiting)],
        )
        metric(
            "attune_queue_depth",
            "gauge",
            "Replies accepted and waiting to be judged.",
            [("", admission.queued)],
        )
        metric(
            "attune_in_flight_replies", "gauge", "Replies being judged.", [("", admission.active)]
        )
        metric("attune_draining", "gauge", "1 while shutting down.", [("", admission.draining)])
        return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    """A sample value as Prometheus text (whole numbers without a decimal point).

    >>> _fmt(True), _fmt(3.0), _fmt(0.25)
    ('1', '3', '0.25')
    """
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
