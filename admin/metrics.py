"""``/metrics``: a Prometheus collector over the broker state and the shared telemetry.

Everything is read at scrape time from Redis (queue state via
:class:`admin.queues.QueueInspector`, counters/histograms via
:meth:`workers.telemetry.Telemetry.snapshot`), so any number of ``admin``
instances report the same cluster-wide numbers. The collector lives on a
private ``CollectorRegistry`` (never the global one: no process metrics mixed
in, no duplicate-registration errors when several apps live in one process).

When Redis is unreachable the scrape still succeeds with
``parcelhook_broker_up 0`` / ``parcelhook_telemetry_up 0`` and without the
series that could not be read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from admin.queues import QueueInspector, inspector_for
from workers.telemetry import HistogramData, Telemetry, UnavailableReason

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The per-queue gauges: attribute of :class:`admin.queues.QueueStats` -> (metric name, help).
QUEUE_GAUGES: dict[str, tuple[str, str]] = {
    "ready": ("parcelhook_queue_ready_messages", "Messages waiting to be fetched"),
    "delayed": ("parcelhook_queue_delayed_messages", "Messages scheduled for later (retry backoff, delays)"),
    "dead": ("parcelhook_queue_dead_messages", "Dead-lettered messages"),
    "in_flight": ("parcelhook_queue_in_flight_messages", "Messages fetched by a worker and not acked yet"),
}


def _histogram(
    name: str,
    doc: str,
    data: HistogramData | None,
    labels: dict[str, str] | None = None,
    family: HistogramMetricFamily | None = None,
) -> HistogramMetricFamily:
    fam = family or HistogramMetricFamily(name, doc, labels=list(labels) if labels else None)
    if data is not None:
        fam.add_metric(list(labels.values()) if labels else [], data.cumulative(), sum_value=data.sum)
    return fam


class OpsCollector(Collector):
    def __init__(self, inspector: QueueInspector, telemetry: Telemetry) -> None:
        self.inspector = inspector
        self.telemetry = telemetry

    def describe(self) -> list[Metric]:
        return []  # don't make registration call collect() (a Redis round trip)

    def collect(self) -> Iterator[Metric]:
        yield from self._broker()
        yield from self._telemetry()
        yield from self._shippo()

    def _broker(self) -> Iterator[Metric]:
        read = yield from _up(
            "parcelhook_broker_up",
            "1 when the broker's Redis could be read",
            "the broker",
            lambda: (self.inspector.queues(), self.inspector.workers()),
        )
        if read is None:
            return
        stats, workers = read
        fams = {
            attr: GaugeMetricFamily(name, doc, labels=["queue"]) for attr, (name, doc) in QUEUE_GAUGES.items()
        }
        age = GaugeMetricFamily(
            "parcelhook_queue_oldest_message_age_seconds",
            "Age of the oldest ready message (0 when the queue is empty)",
            labels=["queue"],
        )
        for q in stats:
            for attr, fam in fams.items():
                value = getattr(q, attr)
                if value is not None:
                    fam.add_metric([q.name], value)
            age.add_metric([q.name], q.oldest_age_s or 0.0)
        yield from fams.values()
        yield age
        alive = GaugeMetricFamily(
            "parcelhook_workers_alive", "Broker processes with a heartbeat within the timeout"
        )
        alive.add_metric([], len(workers))
        yield alive

    def _telemetry(self) -> Iterator[Metric]:
        snap = yield from _up(
            "parcelhook_telemetry_up",
            "1 when the shared telemetry could be read",
            "telemetry",
            self.telemetry.snapshot,
        )
        if snap is None:
            return
        yield _counter(
            "parcelhook_webhooks_received",
            "Webhook deliveries by outcome",
            ["merchant", "event", "outcome"],
            snap.webhooks_received.items(),
        )
        # every reason, 0 included: rate() and alerts need the series
        yield _counter(
            "parcelhook_webhooks_unavailable",
            "Webhook deliveries answered 503, by the dependency that was unreachable",
            ["reason"],
            {
                (reason.value,): snap.webhooks_unavailable.get(reason.value, 0)
                for reason in UnavailableReason
            }.items(),
        )
        yield _histogram("parcelhook_webhook_latency_seconds", "Receiver response time", snap.webhook_latency)
        yield _counter(
            "parcelhook_events_processed",
            "Messages processed by actor and outcome",
            ["actor", "outcome"],
            snap.events_processed.items(),
        )
        lat = HistogramMetricFamily(
            "parcelhook_processing_latency_seconds", "Webhook received to state committed", labels=["actor"]
        )
        for actor, data in sorted(snap.processing_latency.items()):
            _histogram("", "", data, {"actor": actor}, family=lat)
        yield lat
        yield _histogram(
            "parcelhook_carrier_lag_seconds", "Carrier scan time to webhook received", snap.carrier_lag
        )
        yield _counter(
            "parcelhook_notifications",
            "Customer notifications by channel, kind, status",
            ["channel", "kind", "status"],
            snap.notifications.items(),
        )

    def _shippo(self) -> Iterator[Metric]:
        """Reconciliation with Shippo (workers/shippo_reconcile.py): every result, 0 included."""
        from workers.shippo_reconcile import read_counts

        try:
            counts = read_counts(self.telemetry.client, self.telemetry.prefix)
        except Exception as exc:  # the telemetry gauge already says Redis is unreadable
            log.warning("metrics: cannot read the Shippo reconciliation counts: %s", exc)
            return
        yield _counter(
            "parcelhook_shippo_reconcile",
            "Shipments looked up at Shippo by reconciliation, by result (polled, changed, failed)",
            ["result"],
            {(result,): n for result, n in counts.items()}.items(),
        )


def _up(name: str, doc: str, source: str, read: Callable[[], T]) -> Generator[Metric, None, T | None]:
    """Yield the ``…_up`` gauge of ``source``; return what ``read`` read, or None when it failed."""
    up = GaugeMetricFamily(name, doc)
    try:
        value = read()
    except Exception as exc:
        log.warning("metrics: cannot read %s: %s", source, exc)
        up.add_metric([], 0)
        yield up
        return None
    up.add_metric([], 1)
    yield up
    return value


def _counter(
    name: str, doc: str, labels: list[str], series: Iterable[tuple[tuple[str, ...], int]]
) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for values, n in sorted(series):
        fam.add_metric(list(values), n)
    return fam


def build_registry(services: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    inspector = inspector_for(services)
    registry.register(OpsCollector(inspector, services.telemetry))
    return registry


def render_metrics(services: Any) -> tuple[bytes, str]:
    """Prometheus text exposition for ``services`` (settings, redis, namespace, queues, telemetry)."""
    return generate_latest(build_registry(services)), CONTENT_TYPE_LATEST
