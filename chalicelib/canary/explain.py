"""The doctor's words: for each check that did not pass, a paragraph naming the cause the
way operators search for it (RDS's "PAM authentication failed for user", the SCP's policy id
and statement, the ARN that uses the instance name), then what to change.

Pure: report in, text out.
"""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from chalicelib.canary.explain_dsql import DSQL_WHY, dsql_words, is_dsql_target
from chalicelib.canary.explain_mysql import MYSQL_WHY, is_mysql_target, mysql_refusal
from chalicelib.canary.explain_password import PASSWORD_WHY
from chalicelib.canary.explain_shape import Why
from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["explain_check", "explain_target", "render_table", "render_checks", "summary_line"]

WIDTH = 92
PAM = "PAM authentication failed for user"
_SYMBOL = {"pass": "ok", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skip": "skip"}


def _pam(user: str) -> str:
    return f'FATAL: {PAM} "{user}"'


def _scp_name(policy: object) -> str:
    text = str(policy)
    return text if text.startswith("SCP") else f"SCP {text}"


def _rds_found(c: CheckResult, t: TargetReport) -> str:
    if c.status == "error":
        return ""
    status = c.details.get("status")
    if status:
        return (f"RDS reports the database as '{status}'. A database that is not available accepts no "
                "connections at all: clients see timeouts or \"Connection refused\", not an "
                "authentication error. The canary did not try to log in.")
    return ("RDS has no resource by the identifier in the access policy, so there is no endpoint to "
            "connect to and no resource id to build the dbuser ARN from. Either the identifier is "
            "misspelled, the resource lives in another account or region, or it was deleted.")


def _iam_auth(c: CheckResult, t: TargetReport) -> str:
    return ("IAM database authentication is off on the instance, cluster or proxy. "
            f"RDS then rejects every token with {_pam(t.db_user)}, however correct the token and "
            "the IAM policies are. Turning it on takes effect without a reboot.")


def _signer(c: CheckResult, t: TargetReport) -> str:
    d = c.details
    findings = d.get("findings") or []
    bad = next((f for f in findings if f.get("kind") == "instance_name_arn"), None)
    if bad is not None:
        value = bad.get("value") or "a dbuser ARN"
        return (f"The signer's policy grants rds-db:connect on {value}, which names the database by "
                f"its instance name. IAM authorizes rds-db:connect against the resource id "
                f"(DbiResourceId 'db-...', DbClusterResourceId 'cluster-...' or 'prx-...'), so that "
                f"statement never matches: the right ARN is {d.get('dbuser_arn')}. RDS reports the "
                f"refusal only as {_pam(t.db_user)}.")
    where = f" ({d.get('policy')}, statement {d.get('statement')})" if d.get("policy") else ""
    if d.get("decision") == "explicitDeny":
        return (f"An explicit Deny in the signer's {d.get('layer')} policies{where} covers "
                f"rds-db:connect on {d.get('dbuser_arn')}. An explicit deny wins over every allow; RDS "
                f"reports it as {_pam(t.db_user)}.")
    return (f"No identity policy of {d.get('principal')} allows rds-db:connect on "
            f"{d.get('dbuser_arn')}{where if d.get('layer') == 'boundary' else ''}. Tokens signed with "
            f"it are well-formed but RDS refuses them with {_pam(t.db_user)}. "
            f"{d.get('explanation') or ''}".strip())


def _scp(c: CheckResult, t: TargetReport) -> str:
    d = c.details
    if c.status == "warn":
        return ("An SCP conditions rds-db:connect on a key the action never carries. Such a condition "
                "never matches: a Deny guarded by it never applies, an Allow guarded by it never "
                "allows. It works today only by accident.")
    level = f", attached at {d['level']}" if d.get("level") else ""
    if d.get("decision") == "explicitDeny":
        text = (f"The service control policy {_scp_name(d.get('policy'))}{level}, statement {d.get('statement')!r}, "
                f"denies rds-db:connect on {d.get('dbuser_arn')}. SCPs bound every principal in the "
                "account, the signer role included, whatever its own policies say; RDS reports the "
                f"refusal only as {_pam(t.db_user)}.")
    else:
        text = (f"At least one level of the organization between the root and the account{level} has "
                "no SCP that allows rds-db:connect (every level must allow it). RDS reports the "
                f"refusal as {_pam(t.db_user)}.")
    missing = [f for f in d.get("findings") or [] if f.get("kind") == "missing_condition_key"]
    if missing:
        text += " Also: " + "; ".join(f["message"] for f in missing) + "."
    return text


def _connect(c: CheckResult, t: TargetReport) -> str:
    kind = c.details.get("error_kind")
    if c.status == "skip":
        return ""
    if kind == "auth":
        return (f"The server answered {_pam(t.db_user)} (or an equivalent refusal). Every IAM-side "
                "check above passed, so look at the database side: the user may not be in rds_iam, "
                "may also be in rds_ad, or the token was signed for another host name than the "
                "one connected to (tokens are bound to host, port, user and region).")
    if kind == "tls":
        return ("The TLS handshake failed under sslmode=verify-full: the server's certificate did not "
                "chain to the CA bundle, or its name did not match the host connected to. Use the "
                "RDS global bundle and the RDS endpoint name.")
    if kind == "refused":
        return ("Nothing accepted the TCP connection: wrong host or port, a security group or NACL "
                "that rejects the canary, or a database that is down.")
    if kind == "timeout":
        return ("The endpoint did not answer in time: packets are probably dropped (security group, "
                "route table, NAT) or the server accepted the connection and then hung.")
    return ""


def _rds_iam(c: CheckResult, t: TargetReport) -> str:
    return (f"RDS logs {_pam(t.db_user)} when the database user is not a member of rds_iam, directly "
            "or through nested roles: the token is then never checked against IAM at all.")


def _conflict(c: CheckResult, t: TargetReport) -> str:
    path = " -> ".join([t.db_user, *c.details.get("path", [])])
    return (f"The user reaches rds_ad ({path}) as well as rds_iam. RDS supports one authentication "
            f"method per user and IAM logins then fail with {_pam(t.db_user)}. Remove the grant that "
            "brings in rds_ad (nested grants count).")


def _tier(c: CheckResult, t: TargetReport) -> str:
    return ("The database user has more privilege than its tier allows. A service-user must not be "
            "superuser, create roles or databases, or own schemas (directly or through a role it "
            "belongs to); a service-admin must not be superuser. Nothing is broken today, but a "
            "leaked token is worth much more than it should be.")


def _domain(c: CheckResult, t: TargetReport) -> str:
    return ("Kerberos logins need the instance joined to its AWS Managed Microsoft AD directory "
            "(DomainMemberships status 'joined'); until then the server cannot validate tickets.")


def _directory_role(c: CheckResult, t: TargetReport) -> str:
    return ("RDS reaches the directory through the domain IAM role, which needs the AWS managed "
            "policy AmazonRDSDirectoryServiceAccess and must trust rds.amazonaws.com; without it "
            "the instance cannot stay joined and Kerberos logins fail.")


def _rds_ad(c: CheckResult, t: TargetReport) -> str:
    return ("A Kerberos user logs in only if it is a member of rds_ad; the role name must match the "
            "Kerberos principal (user@REALM).")


def _proxy_target(c: CheckResult, t: TargetReport) -> str:
    return ("RDS Proxy forwards a login only to a target registered in its target group and healthy "
            "(DescribeDBProxyTargets). Without one, every login through the proxy fails although the "
            "caller's token (leg 1) is fine.")


def _proxy_role(c: CheckResult, t: TargetReport) -> str:
    return ("Through RDS Proxy a login crosses two IAM legs. Leg 1: the caller's token, signed for the "
            "proxy's endpoint, allowed on dbuser:prx-.../USER. Leg 2: the proxy logs in to its target "
            "with its own role: with DefaultAuthScheme IAM_AUTH that role signs a token for the target "
            "and needs rds-db:connect on the target's db-/cluster- resource id for the user; with "
            "secrets it needs to read (and decrypt) the user's secret. The caller then sees the "
            "proxy's refusal although its own token was accepted.")


_WHY: dict[str, Why] = {
    "proxy.target": _proxy_target, "proxy.role_allows": _proxy_role,
    "rds.found": _rds_found, "rds.iam_auth_enabled": _iam_auth, "iam.signer_allows": _signer,
    "org.scp_allows": _scp, "db.connect": _connect, "db.rds_iam": _rds_iam,
    "db.auth_conflict": _conflict, "db.tier": _tier, "rds.domain_joined": _domain,
    "iam.directory_role": _directory_role, "db.rds_ad": _rds_ad,
}
_WHY.update(PASSWORD_WHY)


def _no_reason(check: CheckResult, target: TargetReport) -> str:
    return ""


def _fill(text: str, first: str, rest: str) -> str:
    """Wrap one paragraph; ARNs must not break at hyphens."""
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False,
                         break_long_words=False)


def explain_check(check: CheckResult, target: TargetReport) -> str:
    """One paragraph (wrapped) for a check that did not pass; "" for pass and skip."""
    if check.status in ("pass", "skip"):
        return ""
    head = f"{_SYMBOL[check.status]} {check.id}: {check.message}"
    if check.status == "error":
        why = ("The check could not run, so nothing is proved either way; the canary never counts "
               "this as a pass.")
    else:
        why = _WHY.get(check.id, _no_reason)(check, target)
        if is_mysql_target(target):  # the MySQL family refuses in its own words
            why = MYSQL_WHY[check.id](check, target) if check.id in MYSQL_WHY else why.replace(
                _pam(target.db_user), mysql_refusal(target.db_user))
        elif is_dsql_target(target):  # so does Aurora DSQL
            why = DSQL_WHY[check.id](check, target) if check.id in DSQL_WHY else dsql_words(
                why, target.db_user, _pam(target.db_user))
    parts = [_fill(head, "", "    ")]
    if why:
        parts.append(_fill(why, "    ", "    "))
    if check.fix:
        parts.append(_fill(f"Fix: {check.fix}", "    ", "         "))
    return "\n".join(parts)


_LEG_NAMES = {1: "leg 1 (caller to proxy)", 2: "leg 2 (proxy to target)"}


def leg_summary(target: TargetReport) -> str:
    """For a target behind RDS Proxy: which leg refused, and by which checks ("" when none did)."""
    legs: dict[int, list[str]] = {}
    for c in target.checks:
        leg = c.details.get("leg")
        if c.status in ("fail", "error") and leg in _LEG_NAMES:
            legs.setdefault(int(leg), []).append(c.id)
    return "\n".join(f"Through RDS Proxy, {_LEG_NAMES[leg]} refused: {', '.join(ids)}."
                     for leg, ids in sorted(legs.items()))


def explain_target(target: TargetReport) -> str:
    paragraphs = [leg_summary(target), *(explain_check(c, target) for c in target.checks)]
    return "\n\n".join(p for p in paragraphs if p)


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def render_table(targets: list[TargetReport] | tuple[TargetReport, ...]) -> str:
    rows = []
    for t in targets:
        problems = ", ".join(f"{c.id} ({c.status})" for c in t.problems) or "-"
        rows.append((t.database, t.db_user, t.status.upper(), problems))
    return _table(rows, ("DATABASE", "DB USER", "STATUS", "PROBLEMS"))


def render_checks(target: TargetReport, width: int = 70) -> str:
    rows = []
    for c in target.checks:
        message = c.message if len(c.message) <= width else c.message[: width - 3] + "..."
        rows.append((c.id, c.status.upper(), message))
    return _table(rows, ("CHECK", "STATUS", "MESSAGE"))


def summary_line(summary: dict[str, Any]) -> str:
    return (f"{summary['targets']} targets: {summary['pass']} pass, {summary['warn']} warn, "
            f"{summary['fail']} fail, {summary['error']} error")
