"""Writes to the local AWS's CloudWatch Logs and CloudWatch metrics without slowing anyone down.

:class:`CloudWatchSink` takes log lines and metric counts from any thread (``put`` never blocks:
a bounded queue; when it is full the item is dropped and counted in ``dropped``), and one
background thread sends them in batches (``PutLogEvents`` per log group and stream,
``PutMetricData`` per account, region and namespace), each in the account it belongs to.
``flush()`` waits until what was queued so far is sent; ``stop()`` flushes and ends the thread.
A failed send is logged (the error code only) and the batch is dropped: a database login or a
vend never waits on CloudWatch.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["LogLine", "MetricCount", "Sink", "CloudWatchSink"]

log = logging.getLogger(__name__)

#: (service, account) -> a boto3 client acting in that account
ClientFor = Callable[[str, str], Any]


@dataclass(frozen=True)
class LogLine:
    account: str
    group: str
    stream: str
    message: str
    at_ms: int


@dataclass(frozen=True)
class MetricCount:
    account: str
    region: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    value: float
    at: float


class Sink(Protocol):
    """Where log lines and metric counts go (:class:`CloudWatchSink`, or a list in a test)."""

    def put(self, item: LogLine | MetricCount) -> None:
        """Take one item; never blocks."""


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class CloudWatchSink:
    """Batches log lines and metric counts to CloudWatch in the background (see module doc)."""

    def __init__(self, client_for: ClientFor, *, max_queue: int = 10000, interval: float = 0.2,
                 max_batch: int = 1000) -> None:
        self._client_for = client_for
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._interval = interval
        self._max_batch = max_batch
        self._made: set[tuple[str, str, str]] = set()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.dropped = 0
        self.failed = 0

    def start(self) -> CloudWatchSink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rdsvend-cloudwatch", daemon=True)
            self._thread.start()
        return self

    def put(self, item: LogLine | MetricCount) -> None:
        """Queue one item; never blocks (a full queue drops it)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call is sent (or dropped)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self.flush(timeout)
        self._stopping.set()
        self._thread.join(timeout)
        self._thread = None

    # -- the sending thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._queue.get(timeout=self._interval)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + 0.05  # gather what arrives together
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._send(batch)

    def _send(self, batch: list[Any]) -> None:
        lines: dict[tuple[str, str, str], list[LogLine]] = defaultdict(list)
        counts: dict[tuple[str, str, str], dict[tuple[str, tuple[tuple[str, str], ...]], float]] = \
            defaultdict(lambda: defaultdict(float))
        markers = []
        for item in batch:
            if isinstance(item, LogLine):
                lines[(item.account, item.group, item.stream)].append(item)
            elif isinstance(item, MetricCount):
                counts[(item.account, item.region, item.namespace)][(item.name, item.dimensions)] += item.value
            elif isinstance(item, _Flush):
                markers.append(item)
        for key, items in lines.items():
            self._guarded("PutLogEvents", self._put_lines, key, items)
        for key, values in counts.items():
            self._guarded("PutMetricData", self._put_metrics, key, values)
        for marker in markers:
            marker.done.set()

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - CloudWatch failing must not stop the stack
            self.failed += 1
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
            log.warning("local CloudWatch: %s failed: %s", what, code or type(exc).__name__)

    def _put_lines(self, key: tuple[str, str, str], items: list[LogLine]) -> None:
        client = self._client_for("logs", key[0])
        events: list[dict[str, Any]] = [{"timestamp": i.at_ms, "message": i.message}
                                        for i in sorted(items, key=lambda i: i.at_ms)]
        try:
            self._put_events(client, key, events)
        except client.exceptions.ResourceNotFoundException:  # deleted meanwhile: make it again, once
            self._made.discard(key)
            self._put_events(client, key, events)

    def _put_events(self, client: Any, key: tuple[str, str, str], events: list[dict[str, Any]]) -> None:
        _account, group, stream = key
        if key not in self._made:
            for call, kwargs in ((client.create_log_group, {"logGroupName": group}),
                                 (client.create_log_stream, {"logGroupName": group, "logStreamName": stream})):
                try:
                    call(**kwargs)
                except client.exceptions.ResourceAlreadyExistsException:
                    pass
            self._made.add(key)
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def _put_metrics(self, key: tuple[str, str, str],
                     values: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
        account, region, namespace = key
        client = self._client_for("cloudwatch", account)
        data = [{"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                 "Value": value, "Unit": "Count"} for (name, dims), value in values.items()]
        for start in range(0, len(data), 500):
            client.put_metric_data(Namespace=namespace, MetricData=data[start:start + 500])
