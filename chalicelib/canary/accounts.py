"""Which credentials the canary reads each account with: its own, or a database's reader role.

RDS of a database, and the IAM policies of its signer role, are read in the database's
account: through the reader role when the canary's own credentials are elsewhere (see
:meth:`chalicelib.policy.model.Database.reader_role_for`). SCPs keep coming from the
organization reader (``RDSVEND_ORG_ROLE_ARN``). Every read can say where it looked
(:class:`~chalicelib.aws.reader.SearchedAs`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.aws.probe import AwsClients
from chalicelib.aws.reader import CallerVantage, ReaderRoleError, ReaderSessions, SearchedAs, Vantage
from chalicelib.errors import ProbeError
from chalicelib.policy.model import AccessPolicy, Database

__all__ = ["AccountReaders", "CANARY_READER_SESSION"]

CANARY_READER_SESSION = "rdsvend-canary-reader"


class AccountReaders:
    """Clients per database (its account) and per account (a signer role's IAM)."""

    def __init__(self, policy: AccessPolicy, clients: AwsClients, *,
                 make_clients: Callable[[Any], Callable[..., Any]] | None = None) -> None:
        self._clients = clients
        self._caller = CallerVantage(lambda: clients.client("sts"))
        self._sessions = ReaderSessions(lambda: clients.client("sts"), make_clients or _plain_clients,
                                        session_name=CANARY_READER_SESSION, caller=self._caller)
        #: the database whose reader role reads each account (for IAM reads by account)
        self._by_account: dict[str, Database] = {}
        for db in policy.databases.values():
            if db.account and db.reader_role:
                self._by_account.setdefault(db.account, db)

    def own(self) -> Vantage | None:
        """Who the canary's own credentials are; None when STS cannot say."""
        try:
            return self._caller.get()
        except Exception:  # noqa: BLE001 - who we are only names the searcher; never a verdict
            return None

    def role_for(self, database: Database) -> str | None:
        if database.reader_role is None or database.reader_role_explicit:
            return database.reader_role
        own = self.own()
        return database.reader_role_for(own.account if own else None)

    def client(self, database: Database, service: str, region: str | None = None) -> Any:
        """A client for ``service`` in ``database``'s account; :class:`ProbeError` when its
        reader role cannot be assumed (naming the role and who tried)."""
        role = self.role_for(database)
        region = region or database.region
        if role is None:
            return self._clients.client(service, region)
        try:
            return self._sessions.clients(role)(service, region)
        except ReaderRoleError as exc:
            raise ProbeError(str(exc), service="sts", code=exc.code) from None

    def searched(self, database: Database) -> SearchedAs:
        """Where a read for ``database`` looked."""
        role = self.role_for(database)
        if role is not None:
            try:
                return SearchedAs(self._sessions.vantage(role), database.account)
            except ReaderRoleError:
                return SearchedAs(self.own(), database.account, unassumable_role=role)
        return SearchedAs(self.own(), database.account)

    def iam_for(self, principal_account: str) -> tuple[Any, SearchedAs]:
        """An IAM client that reads ``principal_account`` (a signer role's account) and where it
        looks: through the reader role of a database in that account when one applies (see
        :meth:`role_for`), else with the canary's own credentials."""
        db = self._by_account.get(principal_account)
        role = self.role_for(db) if db is not None else None
        if role is None:
            return self._clients.client("iam"), SearchedAs(self.own(), principal_account, "the signer role")
        try:
            client = self._sessions.clients(role)("iam", None)
            return client, SearchedAs(self._sessions.vantage(role), principal_account, "the signer role")
        except ReaderRoleError as exc:
            raise ProbeError(str(exc), service="sts", code=exc.code) from None


def _plain_clients(session: Any) -> Callable[..., Any]:
    return AwsClients(session=session).client
