"""The local stack's AWS: moto in server mode, seeded from the world file.

moto keeps resources per account and acts in the account of the credentials it is called
with. The parts: :mod:`devtools.local.moto_server` (the server and its write count),
:mod:`devtools.local.sessions` (credentials and clients acting in an account),
:mod:`devtools.local.seed` (the world seeded as an operator would, and what it made); all
their names are importable from here.

:class:`MotoSecretLookup` reads moto's in-process backends (the moto server runs in this
process) to find the secret behind an access key: IAM users' long-term keys and STS
assumed-role session credentials, with the principal ARN and account they sign for.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from chalicelib.clock import SYSTEM_CLOCK
from devtools.local.moto_server import MotoServer
from devtools.local.seed import InstanceInfo, SeededWorld, seed_world
from devtools.local.sessions import ORG_ACCESS_ROLE, AccountSessions, Keys
from devtools.local.sigv4 import Credential

__all__ = [
    "Keys",
    "InstanceInfo",
    "SeededWorld",
    "MotoServer",
    "AccountSessions",
    "MotoSecretLookup",
    "seed_world",
    "ORG_ACCESS_ROLE",
    "org_id_of",
]

class MotoSecretLookup:
    """A :class:`~devtools.local.sigv4.SecretLookup` over moto's in-process backends.

    Knows IAM users' active long-term keys and STS assumed-role session credentials that
    have not expired; anything else is an unknown key.
    """

    def __init__(self, *, partition: str = "aws", clock: Any = None) -> None:
        self._partition = partition
        self._clock = clock or SYSTEM_CLOCK

    def secret_for(self, access_key_id: str) -> Credential | None:
        from moto.iam.models import iam_backends

        for account_id, by_partition in list(iam_backends.items()):
            backend = by_partition[self._partition]
            key = backend.access_keys.get(access_key_id)
            if key is None:
                continue
            if key.status != "Active":
                return None
            if key.user_name is not None:
                user = backend.users.get(key.user_name)
                if user is None:
                    return None
                return Credential(access_key_id, key.secret_access_key, None, user.arn, account_id)
            return self._session_credential(account_id, access_key_id)
        return None

    def _session_credential(self, account_id: str, access_key_id: str) -> Credential | None:
        """The assumed-role session behind ``access_key_id`` in ``account_id``, while it has not expired."""
        from moto.sts.models import sts_backends

        assumed = sts_backends[account_id][self._partition].get_assumed_role_from_access_key(access_key_id)
        if assumed is None or assumed.expiration.replace(tzinfo=UTC) <= self._clock.now():
            return None
        return Credential(access_key_id, assumed.secret_access_key, assumed.session_token,
                          assumed.arn, account_id)

    def session_policy(self, access_key_id: str) -> Mapping[str, Any] | None:
        """The inline session policy given to AssumeRole for these credentials, if any.

        AWS has no API that reads it back; the local stack reads moto's record of it.
        """
        from moto.sts.models import sts_backends

        for _account_id, by_partition in list(sts_backends.items()):
            assumed = by_partition[self._partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return json.loads(assumed.policy) if assumed.policy else None
        return None

    def role_arn(self, access_key_id: str) -> str | None:
        """The IAM role ARN behind assumed-role session credentials."""
        from moto.sts.models import sts_backends

        for _account_id, by_partition in list(sts_backends.items()):
            assumed = by_partition[self._partition].get_assumed_role_from_access_key(access_key_id)
            if assumed is not None:
                return assumed.role_arn
        return None



    def caller_id(self, credential: Credential) -> str:
        """What API Gateway puts in ``identity.caller``: the user id, or ``ROLEID:session``."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        account = credential.account
        assumed = sts_backends[account][self._partition].get_assumed_role_from_access_key(credential.access_key_id)
        if assumed is not None:
            return assumed.user_id
        user = iam_backends[account][self._partition].get_user_from_access_key_id(credential.access_key_id)
        return user.id if user is not None else credential.access_key_id


def org_id_of(account: str, partition: str = "aws") -> str | None:
    """The id of the organization ``account`` belongs to in the moto in this process, if any."""
    from moto.organizations.models import organizations_backends

    own = organizations_backends[account][partition].org
    if own is not None:
        return own.id
    master = organizations_backends.master_accounts.get(account)
    if master is None:
        return None
    org = organizations_backends[master[0]][master[1]].org
    return org.id if org is not None else None
