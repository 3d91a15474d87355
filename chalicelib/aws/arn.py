"""AWS names, defined once: the shapes of account ids, regions, partitions, organization ids,
role ARNs and RDS resource ids, the one builder of the dbuser ARN ``rds-db:connect`` is
authorized against, and Aurora DSQL's cluster ids, cluster ARNs and endpoint names.

Every pattern is meant for ``fullmatch``. Pure: no AWS call, no botocore.
"""
from __future__ import annotations

import re

__all__ = [
    "ACCOUNT_ID",
    "ANY_RESOURCE_ID",
    "ORG_ID",
    "PARTITION",
    "RDS_RESOURCE_ID",
    "REGION",
    "RESOURCE_ID",
    "RESOURCE_ID_PREFIX",
    "ROLE_ARN",
    "ROLE_NAME",
    "SECRET_ARN",
    "DSQL_CLUSTER_ARN",
    "DSQL_CLUSTER_ID",
    "dbuser_arn",
    "dsql_cluster_arn",
    "dsql_host",
    "iam_principal_of",
    "partition_of_region",
    "role_arn",
    "secret_arn",
    "secret_arn_parts",
]

#: ``aws``, ``aws-cn``, ``aws-us-gov``, ``aws-iso``, ``aws-iso-b`` ...
PARTITION = re.compile(r"aws(?:-[a-z]+)*", re.ASCII)
ACCOUNT_ID = re.compile(r"[0-9]{12}", re.ASCII)
REGION = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}", re.ASCII)
#: An AWS Organizations organization id.
ORG_ID = re.compile(r"o-[a-z0-9]{10,32}", re.ASCII)
ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
#: ``arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME``
ROLE_ARN = re.compile(
    rf"arn:(?P<partition>{PARTITION.pattern}):iam::(?P<account>[0-9]{{12}}):role/(?P<name>[\w+=,.@/-]{{1,512}})",
    re.ASCII,
)
#: Resource ids as a policy may write them, by the kind of thing the policy names.
RESOURCE_ID = {
    "instance": re.compile(r"db-[A-Za-z0-9]{1,64}", re.ASCII),
    "cluster": re.compile(r"cluster-[A-Za-z0-9]{1,64}", re.ASCII),
    "proxy": re.compile(r"prx-[A-Za-z0-9]{1,64}", re.ASCII),
}
RESOURCE_ID_PREFIX = {"instance": "db-", "cluster": "cluster-", "proxy": "prx-"}
#: Any of the three.
ANY_RESOURCE_ID = re.compile(r"(?:db|cluster|prx)-[A-Za-z0-9]{1,64}", re.ASCII)
#: A resource id as RDS generates it (``DbiResourceId``/``DbClusterResourceId`` upper case, a
#: proxy's lower case). RDS keeps instance names lower case, so ``db-orders`` is a name.
RDS_RESOURCE_ID = re.compile(r"db-[A-Z0-9]+|cluster-[A-Z0-9]+|prx-[a-z0-9]+", re.ASCII)


def partition_of_region(region: str) -> str:
    """``aws-cn`` for cn-*, ``aws-us-gov`` for us-gov-*, ``aws-iso``/``aws-iso-b`` for those, else ``aws``."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def role_arn(account: str, name: str, partition: str = "aws") -> str:
    """``arn:PARTITION:iam::ACCOUNT:role/NAME`` (a reader or signer role by name)."""
    return f"arn:{partition}:iam::{account}:role/{name}"


def dbuser_arn(region: str, account: str, resource_id: str, db_user: str, partition: str | None = None) -> str:
    """``arn:PARTITION:rds-db:REGION:ACCOUNT:dbuser:RESOURCE_ID/DB_USER``, the resource
    ``rds-db:connect`` is authorized against; the partition is the region's unless given."""
    return f"arn:{partition or partition_of_region(region)}:rds-db:{region}:{account}:dbuser:{resource_id}/{db_user}"


#: An Aurora DSQL cluster identifier: 26 lower-case letters and digits, as DSQL generates it.
DSQL_CLUSTER_ID = re.compile(r"[a-z0-9]{26}", re.ASCII)
#: ``arn:PARTITION:dsql:REGION:ACCOUNT:cluster/ID``: what ``dsql:DbConnect`` and
#: ``dsql:DbConnectAdmin`` are authorized against.
DSQL_CLUSTER_ARN = re.compile(
    rf"arn:(?P<partition>{PARTITION.pattern}):dsql:(?P<region>{REGION.pattern}):(?P<account>[0-9]{{12}})"
    r":cluster/(?P<cluster>[a-z0-9]{26})", re.ASCII)


def dsql_cluster_arn(region: str, account: str, cluster: str, partition: str | None = None) -> str:
    """``arn:PARTITION:dsql:REGION:ACCOUNT:cluster/ID``; the partition is the region's unless given."""
    return f"arn:{partition or partition_of_region(region)}:dsql:{region}:{account}:cluster/{cluster}"


def dsql_host(cluster: str, region: str) -> str:
    """The public endpoint of a DSQL cluster: ``ID.dsql.REGION.on.aws``."""
    return f"{cluster}.dsql.{region}.on.aws"


def iam_principal_of(principal_arn: str) -> str:
    """The IAM ARN behind a signer: an assumed role's role (``arn:P:iam::A:role/NAME``), a user
    or role ARN itself. What DSQL's ``AWS IAM GRANT`` maps a database role to."""
    parts = principal_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{parts[5].split('/')[1]}"
    return principal_arn


#: A Secrets Manager secret: ``arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME``, NAME
#: as Secrets Manager allows it, with or without the 6-character suffix it appends
SECRET_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-[a-z]+)*):secretsmanager:(?P<region>[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2})"
    r":(?P<account>[0-9]{12}):secret:(?P<name>[A-Za-z0-9/_+=.@-]{1,512})", re.ASCII)


def secret_arn_parts(arn: str) -> dict[str, str] | None:
    """``partition``, ``region``, ``account`` and ``name`` of a secret ARN; None when it is not one."""
    match = SECRET_ARN.fullmatch(arn) if isinstance(arn, str) else None
    return match.groupdict() if match else None


def secret_arn(region: str, account: str, name: str, partition: str | None = None) -> str:
    """The ARN of the secret ``name`` (without Secrets Manager's suffix)."""
    return f"arn:{partition or partition_of_region(region)}:secretsmanager:{region}:{account}:secret:{name}"
