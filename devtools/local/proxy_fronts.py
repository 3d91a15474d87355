"""The local stack's RDS Proxy fronts: one per proxy in the world, started once seeding is done.

Each front gets its own TLS material (its CA joins the stack's bundle), a token checker that
knows only the proxy's endpoint and ``prx-`` id (leg 1, with the stack's live IAM evaluation
of the signer), a :class:`~devtools.local.proxies.ProxyRoleSigner` for its own logins to the
target (leg 2), and the live state of the proxy in the local RDS.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devtools.local.mysql_proxy import mysql_proxy_front
from devtools.local.pg_proxy import PgProxyFront, ProxyTarget
from devtools.local.postgres import free_port
from devtools.local.proxies import ProxyInfo, ProxyRoleSigner, proxy_problem
from devtools.local.rdsauth import PermissionCheck, RdsInstance, RdsTokenChecker
from devtools.local.sessions import AccountSessions
from devtools.local.sigv4 import SecretLookup
from devtools.local.tls import TlsMaterial, make_tls_material
from devtools.local.world import World

__all__ = ["make_proxy_tls", "prepare_proxies", "start_proxy_fronts", "stop_proxy_fronts"]


def make_proxy_tls(world: World, base: Path) -> dict[str, TlsMaterial]:
    """A CA and server certificate per proxy (``localhost``, ``127.0.0.1``), made before the bundle."""
    return {spec.name: make_tls_material(base / spec.name, owner=None) for _, spec in world.proxies()}


def prepare_proxies(world: World, base: Path, ca_bundle: Path) -> tuple[dict[str, TlsMaterial], dict[str, int]]:
    """Before seeding: each proxy's TLS material (its CA appended to the stack's bundle) and the
    free port its front will listen on."""
    tls = make_proxy_tls(world, base)
    with ca_bundle.open("ab") as bundle:
        for material in tls.values():
            bundle.write(Path(material.ca_cert).read_bytes())
    return tls, {spec.name: free_port() for _, spec in world.proxies()}


def _problem(info: ProxyInfo) -> Callable[[], str | None]:
    return lambda: proxy_problem(info)


def start_proxy_fronts(proxies: Mapping[str, ProxyInfo], instances: Mapping[str, Any],
                       tls: Mapping[str, TlsMaterial], *, ca_bundle: str, sessions: AccountSessions,
                       lookup: SecretLookup, permission_check: PermissionCheck) -> list[Any]:
    """Start a front per proxy on its seeded port; ``instances``: the seeded targets (host, port)."""
    fronts: list[Any] = []
    try:
        for name, info in proxies.items():
            endpoint = RdsInstance(region=info.region, account=info.account, resource_id=info.resource_id,
                                   hosts=frozenset({info.host}), port=info.port, identifier=name)
            checker = RdsTokenChecker(lookup, endpoints=endpoint, permission_check=permission_check)
            target = instances[info.target]
            material = tls[name]
            front = (PgProxyFront if info.engine == "postgres" else mysql_proxy_front)(
                name=name, tls_cert=material.server_cert, tls_key=material.server_key,
                target=ProxyTarget(target.host, target.port, ca_bundle), check=checker.check,
                sign=ProxyRoleSigner(sessions, info).token, problem=_problem(info), port=info.port)
            fronts.append(front.start())
    except BaseException:
        stop_proxy_fronts(fronts)
        raise
    return fronts


def stop_proxy_fronts(fronts: list[Any]) -> None:
    for front in fronts:
        front.stop()
    fronts.clear()
