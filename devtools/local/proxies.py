"""RDS Proxies in the local AWS: seeded from the world file, read live, and their own role.

:func:`create_proxies` makes each world proxy in moto as an operator would
(``CreateDBProxy`` with ``IAMAuth: REQUIRED`` and the proxy's role, then
``RegisterDBProxyTargets`` for its target) and patches two things moto cannot know: the
endpoint's address is the local host (where the proxy front listens) and
``DefaultAuthScheme`` is ``IAM_AUTH`` (the proxy logs in to its target with IAM; moto 5.2.5
does not keep that setting).

:func:`proxy_problem` reads the proxy and its target registration live from moto's
in-process backend (so deregistering a target, or deleting the proxy, is seen at once), and
:class:`ProxyRoleSigner` signs the proxy's own tokens for its target with its role's session
credentials from the local STS, as RDS Proxy does with ``IAM_AUTH``.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.aws.arn import dbuser_arn
from devtools.local.sessions import AccountSessions, Keys
from devtools.local.world import World

__all__ = ["ProxyInfo", "ProxyRoleSigner", "create_proxies", "proxy_problem", "PROXY_SESSION"]

#: the session name the proxy's role is assumed under (the principal its target sees)
PROXY_SESSION = "rds-proxy"
_FAMILY = {"postgres": "POSTGRESQL", "mariadb": "MYSQL"}


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    account: str
    region: str
    resource_id: str  # prx-...
    arn: str
    host: str
    port: int  # where the proxy front listens (RDS does not report a proxy's port)
    role_arn: str
    target: str  # the target instance's identifier
    engine: str  # postgres | mariadb (the target's)
    dbname: str

    def dbuser_arn(self, user: str) -> str:
        return dbuser_arn(self.region, self.account, self.resource_id, user)


def _subnets(sessions: AccountSessions, account: str, region: str) -> list[str]:
    ec2 = sessions.client("ec2", account)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    return [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{region}{zone}")
            ["Subnet"]["SubnetId"] for i, zone in ((1, "a"), (2, "b"))]


def _patch_proxy(account: str, region: str, name: str, host: str) -> None:
    from moto.rds.models import rds_backends

    proxy = rds_backends[account][region].db_proxies[name]
    proxy.endpoint = host
    setattr(proxy, "default_auth_scheme", "IAM_AUTH")  # noqa: B010 - moto has no such attribute; its serializer reads it


def create_proxies(world: World, sessions: AccountSessions, *, host: str, ports: Mapping[str, int],
                   dbnames: Mapping[str, str]) -> dict[str, ProxyInfo]:
    """Every proxy of the world, registered in front of its target; ``ports``: proxy name ->
    the port its front will listen on; ``dbnames``: target identifier -> its database name."""
    out: dict[str, ProxyInfo] = {}
    subnets: dict[str, list[str]] = {}
    for account, spec in world.proxies():
        rds = sessions.client("rds", account.id)
        if account.id not in subnets:
            subnets[account.id] = _subnets(sessions, account.id, world.region)
        role_arn = f"arn:aws:iam::{account.id}:role/{spec.role}"
        target = account.databases[spec.target]
        created = rds.create_db_proxy(
            DBProxyName=spec.name, EngineFamily=_FAMILY[target.engine], RoleArn=role_arn, RequireTLS=True,
            VpcSubnetIds=subnets[account.id],
            Auth=[{"Description": "callers sign IAM tokens for the proxy", "IAMAuth": "REQUIRED"}])["DBProxy"]
        _patch_proxy(account.id, world.region, spec.name, host)
        rds.register_db_proxy_targets(DBProxyName=spec.name, DBInstanceIdentifiers=[spec.target])
        rds.describe_db_proxy_targets(DBProxyName=spec.name)  # moto: the first read says REGISTERING
        out[spec.name] = ProxyInfo(
            name=spec.name, account=account.id, region=world.region,
            resource_id=created["DBProxyArn"].rsplit(":", 1)[-1], arn=created["DBProxyArn"], host=host,
            port=ports.get(spec.name, 0), role_arn=role_arn, target=spec.target, engine=target.engine,
            dbname=dbnames.get(spec.target, target.dbname))
    return out


def proxy_problem(info: ProxyInfo) -> str | None:
    """Why the proxy cannot reach its target right now (None: it can), read live from moto:
    ``proxy_gone``, ``proxy_unavailable``, ``target_not_registered`` or ``target_unavailable``."""
    from moto.rds.models import rds_backends

    backend = rds_backends[info.account][info.region]
    proxy = backend.db_proxies.get(info.name)
    if proxy is None:
        return "proxy_gone"
    if str(getattr(proxy, "status", "available")) != "available":
        return "proxy_unavailable"
    targets = [t for group in proxy.proxy_target_groups.values() for t in group.targets]
    if not any(t.rds_resource_id == info.target for t in targets):
        return "target_not_registered"
    if info.target not in backend.databases:
        return "target_unavailable"
    return None


class ProxyRoleSigner:
    """The proxy's own IAM tokens for its target, signed with its role's session credentials
    (assumed through the local STS, renewed before they run out)."""

    def __init__(self, sessions: AccountSessions, info: ProxyInfo, *, lifetime: int = 3600) -> None:
        self._sessions = sessions
        self._info = info
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._keys: Keys | None = None
        self._client: Any = None
        self._renew_at = 0.0

    def _rds(self) -> Any:
        with self._lock:
            if self._client is None or time.monotonic() >= self._renew_at:
                keys = self._sessions.assume(self._info.role_arn, PROXY_SESSION, via=self._info.account,
                                             duration=self._lifetime)
                self._keys = keys
                self._client = keys.session(self._info.region).client("rds")
                self._renew_at = time.monotonic() + self._lifetime / 2
            return self._client

    @property
    def principal(self) -> str | None:
        """The assumed-role ARN the proxy signs as (once it has signed)."""
        return self._keys.arn if self._keys is not None else None

    def token(self, host: str, port: int, user: str) -> str:
        """A token for ``user`` at the target's ``host:port``, signed as the proxy's role."""
        return str(self._rds().generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user,
                                                      Region=self._info.region))


