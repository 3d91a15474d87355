"""The local stack's attribution wiring: what RDS and Lambda would write to CloudWatch.

:func:`start_attribution` (called by the stack once the world is seeded):

- turns on the ``iam-db-auth-error`` log export of every local instance (the world's
  ``log_exports``, default that one type), as an operator would with
  ``modify-db-instance --cloudwatch-logs-export-configuration``;
- wraps the token checker in :class:`~devtools.local.iamdbauth.IamAuthGuard` (IAM auth switch,
  throttling, refusal lines and ``IamDbAuthConnection*`` metrics in each database's account);
- tees the service's audit lines (one JSON line per vend decision on stdout, which Lambda sends
  to the function's log group) to ``/aws/lambda/rdsvend-local`` in the service's account.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from chalicelib.attribution.refusals import log_group_for
from devtools.local.aws import AccountSessions
from devtools.local.cwlogs import CloudWatchSink, LogLine
from devtools.local.iamdbauth import DEFAULT_LOGINS_PER_SECOND, IamAuthGuard, InstanceAuth
from devtools.local.state import AUDIT_LOG_GROUP

__all__ = ["AUDIT_LOG_GROUP", "Attribution", "start_attribution", "AuditTee", "clear_refusal_logs"]

log = logging.getLogger(__name__)

_DEFAULT_EXPORTS = ("iam-db-auth-error",)


#: the audit lines' events: vend decisions, grant events and sessions ended for grants
_AUDITED = frozenset({"vend", "grant", "session_ended"})


class AuditTee:
    """A stand-in for ``sys.stdout`` that writes through and copies each audit line to the sink."""

    def __init__(self, inner: TextIO, sink: CloudWatchSink, account: str) -> None:
        self._inner = inner
        self._sink = sink
        self._account = account

    def write(self, text: str) -> int:
        written = self._inner.write(text)
        if '"event":"' in text:
            for line in text.splitlines():
                self._copy(line)
        return written

    def _copy(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if not isinstance(record, dict) or record.get("event") not in _AUDITED:
            return
        now = time.time()
        stream = time.strftime("%Y/%m/%d/[$LATEST]rdsvend-local", time.gmtime(now))
        self._sink.put(LogLine(self._account, AUDIT_LOG_GROUP, stream, line, int(now * 1000)))

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Attribution:
    guard: IamAuthGuard
    sink: CloudWatchSink
    tee: AuditTee | None

    def stop(self) -> None:
        if self.tee is not None and sys.stdout is self.tee:
            sys.stdout = self.tee._inner
        self.sink.stop()


def start_attribution(world: Any, seeded: Any, sessions: Any, checker: Any, *, tee_audit: bool = True) -> Attribution:
    """Enable the exports, wrap ``checker``, start the sink and the audit tee (see module doc)."""
    sink = CloudWatchSink(sessions.client).start()
    instances = {}
    for _account, spec in world.databases():
        inst = seeded.instances.get(spec.identifier)
        if inst is None:
            continue
        exports = tuple(getattr(spec, "log_exports", _DEFAULT_EXPORTS))
        if exports:
            sessions.client("rds", inst.account).modify_db_instance(
                DBInstanceIdentifier=spec.identifier, ApplyImmediately=True,
                CloudwatchLogsExportConfiguration={"EnableLogTypes": list(exports)})
            for log_type in exports:  # RDS makes the group when the export is turned on
                _make_group(sessions.client("logs", inst.account), f"/aws/rds/instance/{spec.identifier}/{log_type}")
        instances[spec.identifier] = InstanceAuth(
            identifier=spec.identifier, account=inst.account, region=inst.region, host=inst.host, port=inst.port,
            iam_users=frozenset(spec.iam_users()),
            logins_per_second=int(getattr(spec, "iam_auth_logins_per_second", DEFAULT_LOGINS_PER_SECOND)))
    # the audit lines' group is the api_handler function's, which the local stage's deployment makes
    guard = IamAuthGuard(checker, instances, sink=sink)
    tee = None
    if tee_audit:
        tee = AuditTee(sys.stdout, sink, world.service_account)
        sys.stdout = tee
    return Attribution(guard, sink, tee)


def _make_group(client: Any, group: str) -> None:
    try:
        client.create_log_group(logGroupName=group)
    except client.exceptions.ResourceAlreadyExistsException:
        pass


def clear_refusal_logs(info: Any) -> int:
    """Delete what the local instances' ``iam-db-auth-error`` logs hold (the streams; the groups
    stay), so later canary runs do not report refusals a test made on purpose. Returns how many
    streams went."""

    sessions = AccountSessions(info.moto_url, info.region, info.seeded.management_account)
    removed = 0
    for ident, inst in info.seeded.instances.items():
        logs = sessions.client("logs", inst.account)
        group = log_group_for(ident)
        try:
            streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            continue
        for stream in streams:
            logs.delete_log_stream(logGroupName=group, logStreamName=stream["logStreamName"])
            removed += 1
    return removed
