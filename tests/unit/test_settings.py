"""The service's configuration, read from the environment in one place."""
from __future__ import annotations

import ast
from pathlib import Path

from chalicelib import settings as names
from chalicelib.settings import Settings

CHALICELIB = Path(__file__).resolve().parents[2] / "chalicelib"


def test_unset_means_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.policy, s.service_account, s.rate_table, s.region) == (None, None, None, None)
    assert (s.service_name, s.metrics_namespace, s.trace_disabled, s.in_lambda) == ("rdsvend", "rdsvend", False, False)


def test_values_are_read_and_trimmed() -> None:
    s = Settings.from_env({
        names.POLICY: "ssm:/rdsvend/prod/access-policy", names.SERVICE_ACCOUNT: " 111122223333 ",
        names.RATE_LIMIT: "5/20", names.RATE_TABLE: "  ", names.AWS_DEFAULT_REGION: "eu-west-1",
        names.SERVER_ID: "srv-1", names.TRACE_DISABLED: "TRUE", names.AWS_LAMBDA_FUNCTION_NAME: "rdsvend-prod-vend",
        names.SERVICE_NAME: "vend", names.LOCAL_ADMIN_DSN: "postgresql://admin:pw@127.0.0.1/postgres",
    })
    assert s.policy == "ssm:/rdsvend/prod/access-policy"
    assert s.service_account == "111122223333"
    assert s.rate_limit == "5/20" and s.rate_table is None
    assert s.region == "eu-west-1"
    assert s.server_id == "srv-1" and s.trace_disabled and s.in_lambda
    assert s.service_name == "vend" and s.metrics_namespace == "rdsvend"
    assert s.admin_dsn == "postgresql://admin:pw@127.0.0.1/postgres"


def test_aws_region_wins_over_the_default_region() -> None:
    assert Settings.from_env({names.AWS_REGION: "us-west-2", names.AWS_DEFAULT_REGION: "eu-west-1"}).region == "us-west-2"


def test_repr_never_shows_the_admin_dsns() -> None:
    s = Settings.from_env({names.CANARY_ADMIN_DSN: "postgresql://admin:s3cret@db/postgres",
                           names.CANARY_MYSQL_ADMIN_DSN: "mysql://admin:s3cret2@db/"})
    assert "s3cret" not in repr(s)


def test_no_other_module_reads_the_environment() -> None:
    """``os.environ`` / ``os.getenv`` appear in chalicelib/settings.py only."""
    readers = []
    for path in sorted(CHALICELIB.rglob("*.py")):
        if path.name == "settings.py" and path.parent == CHALICELIB:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                    and node.attr in ("environ", "getenv", "environb"):
                readers.append(f"{path.relative_to(CHALICELIB.parent)}:{node.lineno}")
    assert readers == []
