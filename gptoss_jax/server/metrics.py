"""Prometheus metrics of one server (its own registry: two servers in one process never mix their counts)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, num_slots: int):
        r = self.registry = CollectorRegistry()
        self.queue = Gauge("gptoss_queue_depth", "Requests waiting for a slot", registry=r)
        self.busy = Gauge("gptoss_busy_slots", "Engine slots holding a request", registry=r)
        Gauge("gptoss_slots", "Engine slots", registry=r).set(num_slots)
        self.prompt_tokens = Counter("gptoss_prompt_tokens", "Prompt tokens of finished requests", registry=r)
        self.cached_tokens = Counter("gptoss_cached_prompt_tokens", "Prompt tokens reused from the prefix cache",
                                     registry=r)
        self.generated = Counter("gptoss_generated_tokens", "Tokens generated", registry=r)
        self.requests = Counter("gptoss_requests", "Engine requests finished, by finish reason", ["finish_reason"],
                                registry=r)
        self.http_errors = Counter("gptoss_http_errors", "Requests refused with an error status", ["status"],
                                   registry=r)
        self.ttft = Histogram("gptoss_time_to_first_token_seconds", "From submission to the first token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("gptoss_time_per_output_token_seconds", "Time between output tokens (a round's tokens "
                              "share its time)", buckets=TPOT_BUCKETS, registry=r)

    def tokens(self, ticket, n: int, now: float) -> None:
        """n tokens of one request arrived at `now` (called by the engine thread)."""
        self.generated.inc(n)
        if ticket.t_last == 0.0:
            self.ttft.observe(now - ticket.t_submit)
            n -= 1
            if n <= 0:
                return
            gap = 0.0
        else:
            gap = (now - ticket.t_last) / n
        for _ in range(n):
            self.tpot.observe(gap)

    def finished(self, res) -> None:
        self.requests.labels(res.finish_reason).inc()
        self.prompt_tokens.inc(res.prompt_tokens)
        self.cached_tokens.inc(res.cached_tokens)

    def gauges(self, queue_depth: int, busy: int) -> None:
        self.queue.set(queue_depth)
        self.busy.set(busy)

    def error(self, status: int) -> None:
        self.http_errors.labels(str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
