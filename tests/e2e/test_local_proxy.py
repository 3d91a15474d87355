"""RDS Proxy end to end on the local stack: a vended token logs in through the proxy front
(``verify-full``) for PostgreSQL and MariaDB; the proxy accepts only tokens for its own endpoint
and ``prx-`` id (a token for the target's own endpoint, valid there, is refused here); a
client without TLS is refused; each refusal names its leg and never holds the token."""
from __future__ import annotations

import ssl
from typing import Any

import boto3
import psycopg
import pymysql
import pytest

from devtools.local.stack import LocalStack

pytestmark = pytest.mark.e2e


def _vend(stack: LocalStack, database: str, user: str) -> Any:
    status, body = stack.request("POST", "/v1/tokens", {"database": database, "db_user": user})
    assert status == 200, body
    return body


def _signer(stack: LocalStack) -> Any:
    """The signer role, as the app assumes it (the service's execution role)."""
    keys = stack.info.seeded.execution
    sts = boto3.client("sts", endpoint_url=stack.moto_url, region_name=stack.info.region,
                       aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key,
                       aws_session_token=keys.session_token)
    creds = sts.assume_role(RoleArn=stack.info.seeded.signer_role_arn, RoleSessionName="e2e-proxy")["Credentials"]
    return boto3.client("rds", region_name=stack.info.region, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def _pg(stack: LocalStack, host: str, port: int, user: str, password: str, dbname: str = "orders",
        **extra: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname, sslmode="verify-full",
                           sslrootcert=stack.ca_path, connect_timeout=10, **extra)


def test_postgres_verify_full_login_through_the_proxy(local_stack: LocalStack) -> None:
    proxy = local_stack.info.seeded.proxies["orders-proxy"]
    body = _vend(local_stack, "orders-proxy", "orders_app")
    assert (body["host"], body["port"]) == (proxy.host, proxy.port)
    target = local_stack.info.databases["orders-local"]
    assert body["port"] != target["port"]
    with _pg(local_stack, body["host"], body["port"], "orders_app", body["token"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("orders_app",)
        assert conn.execute("SELECT count(*) FROM shop.orders").fetchone() == (3,)
        # the session is on the target, over TLS
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_mariadb_verify_full_login_through_the_proxy(local_stack: LocalStack) -> None:
    proxy = local_stack.info.seeded.proxies["shop-proxy"]
    body = _vend(local_stack, "shop-proxy", "shop_app")
    assert (body["host"], body["port"]) == (proxy.host, proxy.port)
    ctx = ssl.create_default_context(cafile=local_stack.ca_path)  # host name checked: verify-full
    conn = pymysql.connect(host=body["host"], port=body["port"], user="shop_app", password=body["token"],
                           database="shop", ssl=ctx, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), COUNT(*) FROM items")
            user, count = cur.fetchone()
        assert user.startswith("shop_app@") and count == 3
    finally:
        conn.close()


def test_a_token_for_the_targets_own_endpoint_is_refused_by_the_proxy(local_stack: LocalStack) -> None:
    proxy = local_stack.info.seeded.proxies["orders-proxy"]
    target = local_stack.info.databases["orders-local"]
    rds = _signer(local_stack)
    token = rds.generate_db_auth_token(DBHostname=target["host"], Port=target["port"], DBUsername="orders_app",
                                       Region=local_stack.info.region)
    with _pg(local_stack, target["host"], target["port"], "orders_app", token) as conn:  # valid at the target
        assert conn.execute("SELECT current_user").fetchone() == ("orders_app",)
    with pytest.raises(psycopg.OperationalError) as err:
        _pg(local_stack, proxy.host, proxy.port, "orders_app", token).close()
    message = str(err.value)
    assert 'IAM authentication failed for user "orders_app" at RDS Proxy "orders-proxy"' in message
    assert "leg 1: caller to proxy" in message and token not in message
    # and a token for the proxy works, from the same signer
    good = rds.generate_db_auth_token(DBHostname=proxy.host, Port=proxy.port, DBUsername="orders_app",
                                      Region=local_stack.info.region)
    with _pg(local_stack, proxy.host, proxy.port, "orders_app", good) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("orders_app",)


def test_a_mariadb_token_for_the_target_is_refused_by_the_proxy(local_stack: LocalStack) -> None:
    proxy = local_stack.info.seeded.proxies["shop-proxy"]
    target = local_stack.info.databases["shop-local"]
    token = _signer(local_stack).generate_db_auth_token(DBHostname=target["host"], Port=target["port"],
                                                       DBUsername="shop_app", Region=local_stack.info.region)
    ctx = ssl.create_default_context(cafile=local_stack.ca_path)
    with pytest.raises(pymysql.err.OperationalError) as err:
        pymysql.connect(host=proxy.host, port=proxy.port, user="shop_app", password=token, ssl=ctx,
                        connect_timeout=10).close()
    assert err.value.args[0] == 1045
    assert "leg 1: caller to proxy" in err.value.args[1] and token not in str(err.value)


def test_a_client_without_tls_is_refused(local_stack: LocalStack) -> None:
    proxy = local_stack.info.seeded.proxies["orders-proxy"]
    body = _vend(local_stack, "orders-proxy", "orders_app")
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(host=proxy.host, port=proxy.port, user="orders_app", password=body["token"],
                        dbname="orders", sslmode="disable", connect_timeout=10).close()
    assert "requires TLS" in str(err.value) and body["token"] not in str(err.value)


def test_the_readme_proxy_example_runs_in_the_local_shell(local_stack: LocalStack) -> None:
    """The README's RDS Proxy ``sh local`` block, verbatim, after ``eval "$(rdsvend local env)"``."""
    import re
    import subprocess

    from tests.support.local_shell import REPO, shell_env

    section = (REPO / "README.md").read_text().split("## RDS Proxy: two IAM legs", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh local\n(.*?)```", section, flags=re.S)
    env = shell_env(local_stack, "caller")
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    proxy = local_stack.info.seeded.proxies["orders-proxy"]
    target = local_stack.info.databases["orders-local"]
    assert f'"port": {proxy.port}' in done.stdout
    assert f"orders_app|{target['port']}" in done.stdout  # logged in through the proxy, on the target
    assert "shop_app@" in done.stdout
