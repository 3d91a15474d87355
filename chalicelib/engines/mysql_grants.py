"""What MySQL and MariaDB print about a user, read (pure: ``SHOW CREATE USER`` and ``SHOW GRANTS``
lines in, facts and verdicts out), and the password form their logs do not reveal.

On RDS an IAM user is ``IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'`` (RDS for MariaDB:
``IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'``). Password hashes that ``SHOW GRANTS``
prints (MariaDB's ``IDENTIFIED BY PASSWORD``) are cut before anything else is done with a line.
Used by :mod:`chalicelib.engines.mysql`.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.engines.base import TierVerdict

__all__ = ["IAM_PLUGIN", "MysqlUserFacts", "parse_plugins", "parse_grants", "split_privileges", "facts_from",
           "retarget_grant", "quote_name", "quote_account", "native_password_hash", "judge_tier", "ROLE_GRANT"]

IAM_PLUGIN = "AWSAuthenticationPlugin"
_PLUGIN = re.compile(r"(?:IDENTIFIED\s+(?:WITH|VIA)|\bOR)\s+['`\"]?([A-Za-z0-9_]+)['`\"]?", re.I)
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<on>\S+(?:\s+\S+)?)\s+TO\s+(?P<rest>.*)$", re.I | re.S)
_SECRET_TAIL = re.compile(r"\s+IDENTIFIED\s+(?:BY|WITH|VIA)\b.*$", re.I | re.S)


@dataclass(frozen=True)
class MysqlUserFacts:
    """What the server says about one user (any of its hosts)."""

    user: str
    exists: bool
    plugins: tuple[str, ...] = ()
    global_privileges: tuple[str, ...] = ()  # on *.*, upper case ("ALL PRIVILEGES", "SUPER", ...)
    grant_option_on: tuple[str, ...] = ()  # the levels granted WITH GRANT OPTION ("*.*", "`shop`.*")
    grants: tuple[str, ...] = ()  # SHOW GRANTS lines, without any IDENTIFIED ... part

    @property
    def iam(self) -> bool:
        return IAM_PLUGIN.lower() in (p.lower() for p in self.plugins)


def parse_plugins(create_user: str) -> tuple[str, ...]:
    """The authentication plugins named by a ``SHOW CREATE USER`` line, in order."""
    head = create_user.split(" REQUIRE ", 1)[0]
    return tuple(dict.fromkeys(m.group(1) for m in _PLUGIN.finditer(head)))


def split_privileges(text: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return [p for p in out if p]


def parse_grants(lines: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(global privileges, levels WITH GRANT OPTION, cleaned lines)`` from ``SHOW GRANTS``."""
    global_privs: list[str] = []
    grant_option: list[str] = []
    cleaned: list[str] = []
    for raw in lines:
        line = _SECRET_TAIL.sub("", str(raw).strip())
        m = _GRANT.match(line)
        if m is None:  # a role grant ("GRANT `role` TO ...") or something new: kept, not judged
            cleaned.append(line)
            continue
        on = m.group("on")
        if re.search(r"WITH\s+GRANT\s+OPTION", str(raw), re.I):
            grant_option.append(on)
        if on.replace("`", "") == "*.*":
            global_privs += [re.sub(r"\s*\(.*\)$", "", p).upper() for p in split_privileges(m.group("privs"))]
        cleaned.append(re.sub(r"\s+WITH\s+GRANT\s+OPTION.*$", " WITH GRANT OPTION", line, flags=re.I))
    return tuple(dict.fromkeys(global_privs)), tuple(dict.fromkeys(grant_option)), tuple(cleaned)


def facts_from(user: str, create_user: str | None, grants: list[str]) -> MysqlUserFacts:
    if create_user is None:
        return MysqlUserFacts(user=user, exists=False)
    privs, grant_option, cleaned = parse_grants(grants)
    return MysqlUserFacts(user=user, exists=True, plugins=parse_plugins(create_user), global_privileges=privs,
                          grant_option_on=grant_option, grants=cleaned)


_IDENTIFIED = re.compile(r"\s+IDENTIFIED\s+(BY|VIA|WITH)\b.*?(?=\s+WITH\s+(GRANT|MAX_)|$)", re.I | re.S)
ROLE_GRANT = re.compile(r"^GRANT\s+`(?P<role>[^`]+)`(@`[^`]*`)?\s+TO\s+", re.I)
_GRANTEE = re.compile(r"\s+TO\s+(`[^`]*`|'[^']*')(@(`[^`]*`|'[^']*'))?", re.I)


def quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def retarget_grant(line: str, grantee: str) -> str | None:
    """One ``SHOW GRANTS`` line given to ``grantee`` (already quoted) instead, without any
    IDENTIFIED part; None for lines that grant nothing (USAGE, PROXY)."""
    line = _IDENTIFIED.sub("", line.strip())
    upper = line.upper()
    if upper.startswith("GRANT USAGE ON *.*") or upper.startswith("GRANT PROXY"):
        return None
    replaced, count = _GRANTEE.subn(f" TO {grantee}", line, count=1)
    return replaced if count else None


def quote_account(name: str) -> str:
    """``'name'@'%'`` as the fixes print it."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'@'%'"


def native_password_hash(password: str) -> str:
    """mysql_native_password's stored form, ``*`` and SHA1(SHA1(password)) in upper-case hex: what
    MariaDB accepts as ``IDENTIFIED BY PASSWORD`` and prints in its logs instead of the password."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()  # the server's own scheme
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # the server's own scheme


def _privilege_problems(quoted: str, tier: str, facts: MysqlUserFacts) -> list[tuple[str, str]]:
    privs = set(facts.global_privileges)
    found: list[tuple[str, str]] = []
    if "SUPER" in privs:
        found.append(("has SUPER", f"REVOKE SUPER ON *.* FROM {quoted};"))
    if "ALL PRIVILEGES" in privs or "ALL" in privs:
        found.append(("has ALL PRIVILEGES on *.*",
                      f"REVOKE ALL PRIVILEGES ON *.* FROM {quoted}; then grant only what the service needs"))
    if tier == "service-user":
        if "CREATE USER" in privs:
            found.append(("can CREATE USER", f"REVOKE CREATE USER ON *.* FROM {quoted};"))
        found += [(f"holds GRANT OPTION on {level}", f"REVOKE GRANT OPTION ON {level} FROM {quoted};")
                  for level in facts.grant_option_on]
    return found


def judge_tier(name: str, tier: str | None, facts: MysqlUserFacts) -> TierVerdict:
    """Neither tier has SUPER or ALL PRIVILEGES on *.*; a service-user also has no CREATE USER and no
    GRANT OPTION at any level."""
    if tier is None:
        return TierVerdict("skip", f"no tier declared for {name}")
    if not facts.exists:
        return TierVerdict("skip", f"not checked: user {name} does not exist")
    found = _privilege_problems(quote_account(name), tier, facts)
    details: dict[str, Any] = {"user": name, "tier": tier, "global_privileges": sorted(set(facts.global_privileges)),
                               "grant_option_on": list(facts.grant_option_on), "grants": list(facts.grants),
                               "engine_family": "mysql"}
    if found:
        return TierVerdict("fail", f"{name} ({tier}) " + ", ".join(p for p, _ in found),
                           " ".join(dict.fromkeys(f for _, f in found)), details)
    return TierVerdict("pass", f"{name}'s privileges fit tier {tier}", "", details)
