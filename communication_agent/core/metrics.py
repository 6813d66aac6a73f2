"""Prometheus metrics: what this process counts, what the database says, and how both are served.

Two kinds of figures, on purpose:
- *Process counters and histograms* (messages ingested, syncs, model calls, sends, HTTP
  requests) count what this process did. Every process is scraped and Prometheus adds them up,
  so they never need the database.
- *Shared figures* (outbox depth and age, sync lag, mailbox states, the reasoning queue) describe
  state that every process shares. They are read from the database at scrape time
  (`SharedFigures`, filled by `services.health`), so whichever process answers tells the truth.

The metric objects are created once per process and registered in no global registry; each
scrape assembles its own `CollectorRegistry` (`render`). Tests that build many apps in one
process therefore never meet "duplicated timeseries", and compare counters before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from communication_agent.core.config import ConfigurationError
from communication_agent.core.logging import get_logger

log = get_logger(__name__)
# `*_created` series double the series count and no dashboard here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES_INGESTED = Counter(
    "commagent_messages_ingested",
    "Messages stored by mailbox syncs, by mailbox id and direction (inbound, outbound).",
    ["mailbox", "direction"],
    registry=None,
)
SYNC_RUNS = Counter(
    "commagent_sync_runs",
    "Finished sync runs by mailbox id and outcome (ok, failed, needs_reauth, interrupted).",
    ["mailbox", "outcome"],
    registry=None,
)
SYNC_ERRORS = Counter(
    "commagent_sync_errors",
    "Sync errors by mailbox id: kind=run for a failed run, kind=message for one message the "
    "provider would not give.",
    ["mailbox", "kind"],
    registry=None,
)
MODEL_CALLS = Counter(
    "commagent_model_calls",
    "Requests to the reasoning backend by provider, task (triage, proposal) and outcome.",
    ["provider", "task", "outcome"],
    registry=None,
)
MODEL_CALL_SECONDS = Histogram(
    "commagent_model_call_duration_seconds",
    "Latency of one request to the reasoning backend.",
    ["provider", "task", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
    registry=None,
)
SENDS = Counter(
    "commagent_sends",
    "Outbox entries processed by outcome (sent, held, retry, failed, lost, error).",
    ["outcome"],
    registry=None,
)
HTTP_REQUEST_SECONDS = Histogram(
    "commagent_http_request_duration_seconds",
    "HTTP request latency by method, route template (never the raw URL) and status class.",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
PROCESS_METRICS: tuple[Collector, ...] = (
    MESSAGES_INGESTED,
    SYNC_RUNS,
    SYNC_ERRORS,
    MODEL_CALLS,
    MODEL_CALL_SECONDS,
    SENDS,
    HTTP_REQUEST_SECONDS,
)


class ModelCallRecord(Protocol):
    """What `observe_model_calls` reads from a backend's call record (`CallRecord`)."""

    @property
    def provider(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def latency_ms(self) -> int: ...


def observe_model_calls(calls: Iterable[ModelCallRecord]) -> None:
    """Count a task's model requests (each attempt is one) with their latency."""
    for call in calls:
        labels = (call.provider, call.task, call.outcome)
        MODEL_CALLS.labels(*labels).inc()
        MODEL_CALL_SECONDS.labels(*labels).observe(call.latency_ms / 1000)


@dataclass(frozen=True)
class MailboxFigures:
    mailbox_id: int
    name: str
    provider: str
    state: str
    lag_seconds: float
    consecutive_errors: int


@dataclass(frozen=True)
class SharedFigures:
    """What the database says at scrape time; see `services.health.shared_figures`."""

    mailboxes: list[MailboxFigures] = field(default_factory=list)
    mailbox_states: tuple[str, ...] = ()
    outbox: dict[str, int] = field(default_factory=dict)
    outbox_oldest_pending_age_seconds: float = 0.0
    reasoning: dict[str, int] = field(default_factory=dict)


class SharedFiguresCollector(Collector):
    """Turns `SharedFigures` into gauges; without figures (the database did not answer) only
    `commagent_database_up 0` is reported."""

    def __init__(self, figures: Callable[[], SharedFigures | None]) -> None:
        self._figures = figures

    def describe(self) -> Iterable[Metric]:
        return []  # no values are read while registering

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        up = GaugeMetricFamily(
            "commagent_database_up", "1 when this scrape could read the shared figures."
        )
        up.add_metric([], 0 if figures is None else 1)
        yield up
        if figures is not None:
            yield from _mailbox_gauges(figures)
            yield from _queue_gauges(figures)


def _mailbox_gauges(figures: SharedFigures) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "commagent_mailbox_info", "Active mailboxes: id, name and provider (always 1).",
        labels=["mailbox", "name", "provider"],
    )  # fmt: skip
    lag = GaugeMetricFamily(
        "commagent_sync_lag_seconds",
        "Seconds since the mailbox's last successful sync (since it was added, if never).",
        labels=["mailbox"],
    )
    errors = GaugeMetricFamily(
        "commagent_mailbox_consecutive_errors",
        "Failed syncs in a row, as recorded on the mailbox.",
        labels=["mailbox"],
    )
    state = GaugeMetricFamily(
        "commagent_mailbox_state", "1 for the mailbox's current sync state, 0 for the others.",
        labels=["mailbox", "state"],
    )  # fmt: skip
    for mailbox in figures.mailboxes:
        key = str(mailbox.mailbox_id)
        info.add_metric([key, mailbox.name, mailbox.provider], 1)
        lag.add_metric([key], mailbox.lag_seconds)
        errors.add_metric([key], mailbox.consecutive_errors)
        for name in figures.mailbox_states:
            state.add_metric([key, name], 1 if name == mailbox.state else 0)
    yield from (info, lag, errors, state)


def _queue_gauges(figures: SharedFigures) -> Iterator[Metric]:
    outbox = GaugeMetricFamily(
        "commagent_outbox_depth", "Outbox entries waiting (pending) or being sent (sending).",
        labels=["status"],
    )  # fmt: skip
    for status, count in sorted(figures.outbox.items()):
        outbox.add_metric([status], count)
    oldest = GaugeMetricFamily(
        "commagent_outbox_oldest_pending_age_seconds",
        "How long the oldest due, unsent reply has been waiting (0 when none is).",
    )
    oldest.add_metric([], figures.outbox_oldest_pending_age_seconds)
    reasoning = GaugeMetricFamily(
        "commagent_reasoning_queue_depth", "Triage and drafting tasks by status.",
        labels=["status"],
    )  # fmt: skip
    for status, count in sorted(figures.reasoning.items()):
        reasoning.add_metric([status], count)
    yield from (outbox, oldest, reasoning)


def registry(*extra: Collector) -> CollectorRegistry:
    """A registry with this process's metrics, its CPU and memory, and `extra` collectors."""
    assembled = CollectorRegistry(auto_describe=False)
    for collector in (*PROCESS_METRICS, ProcessCollector(registry=None), *extra):
        assembled.register(collector)
    return assembled


def render(figures: SharedFigures | None, accept: str | None = None) -> tuple[bytes, str]:
    """One scrape's body and content type: the Prometheus text format, or OpenMetrics when the
    scraper's `Accept` header asks for it."""
    encode, content_type = choose_encoder(accept or "")
    return encode(registry(SharedFiguresCollector(lambda: figures))), content_type


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@contextlib.contextmanager
def metrics_server(
    host: str,
    port: int,
    figures: Callable[[], Coroutine[Any, Any, SharedFigures | None]],
    *,
    wait: float,
) -> Iterator[None]:
    """Serve the metrics on `host:port` (plain HTTP, no authentication: bind it to a private
    address) while the block runs. The server runs in a thread; the shared figures are read
    on this event loop, waited for at most `wait` seconds per scrape."""
    loop = asyncio.get_running_loop()

    def read_figures() -> SharedFigures | None:
        future = asyncio.run_coroutine_threadsafe(figures(), loop)
        try:
            return future.result(timeout=wait)
        except TimeoutError:  # a slow database: the process metrics still go out
            future.cancel()
            log.warning("metrics_figures_unavailable", error=f"no answer in {wait:g} s")
            return None

    try:
        server, thread = start_http_server(
            port, addr=host, registry=registry(SharedFiguresCollector(read_figures))
        )
    except OSError as exc:
        raise ConfigurationError(
            f"COMMAGENT_METRICS_PORT: cannot serve metrics on {host}:{port} "
            f"({exc.strerror or exc}); give each process a free port"
        ) from exc
    log.info("metrics_server_started", host=host, port=server.server_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
