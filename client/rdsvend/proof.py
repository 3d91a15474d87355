"""The caller's half of a direct invoke: a signed, unsent ``sts:GetCallerIdentity`` request.

A Lambda function that invokes rdsvend's ``vend`` function cannot be authenticated by API
Gateway, so it proves who it is the way Vault's AWS IAM login does: it signs (but does not
send) an ``sts:GetCallerIdentity`` request with its own credentials, with the header
``X-Rdsvend-Server-Id`` among the signed headers, and puts that request in the payload.
rdsvend forwards it to its own STS endpoint; only STS can check the signature, and STS's
answer names the caller. Sign for the regional STS endpoint of rdsvend's region: a proof
signed for another host is refused before any connection.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rdsvend.errors import IdentityProofError

__all__ = ["SERVER_ID_HEADER", "GET_CALLER_IDENTITY_BODY", "build_identity_proof", "invoke_payload"]

SERVER_ID_HEADER = "X-Rdsvend-Server-Id"
GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def build_identity_proof(
    server_id: str,
    *,
    session: Any | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """Sign an ``sts:GetCallerIdentity`` request for ``server_id`` with the caller's credentials.

    ``session`` is a ``botocore.session.Session`` or ``boto3.Session`` (default: botocore's
    usual credential chain). The URL is the STS endpoint botocore would call for this
    session and region (so ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_STS`` apply), unless
    ``endpoint_url`` is given. Returns the ``identity`` member of a ``vend`` payload.
    """
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    if not server_id:
        raise IdentityProofError("server_id is empty")
    core = getattr(session, "_session", session) or botocore.session.get_session()
    credentials = core.get_credentials()
    if credentials is None:
        raise IdentityProofError("no AWS credentials found to sign the identity proof")
    region = region or core.get_config_variable("region")
    if not region:
        # the proof is signed for one region's STS, which must be the vend function's
        raise IdentityProofError("no AWS region: set AWS_DEFAULT_REGION (the vend function's "
                                 "region), or pass region=")
    if endpoint_url is None:
        endpoint_url = core.create_client("sts", region_name=region).meta.endpoint_url
    url = endpoint_url.rstrip("/") + "/"
    request = AWSRequest(
        method="POST",
        url=url,
        data=GET_CALLER_IDENTITY_BODY,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": _host_header(url),
            SERVER_ID_HEADER: server_id,
        },
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sts", region).add_auth(request)
    return {
        "url": url,
        "method": "POST",
        "headers": {name: value for name, value in request.headers.items()},
        "body": GET_CALLER_IDENTITY_BODY,
    }


def invoke_payload(database: str, db_user: str, server_id: str, **proof_kwargs: Any) -> dict[str, Any]:
    """The payload for a direct invoke of the ``vend`` function, identity proof included."""
    return {
        "database": database,
        "db_user": db_user,
        "identity": build_identity_proof(server_id, **proof_kwargs),
    }


def _host_header(url: str) -> str:
    """The Host header botocore signs for ``url``: lowercase, default port left out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise IdentityProofError("endpoint_url is not a valid URL") from None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        raise IdentityProofError("endpoint_url must be an http(s) URL with a host and no user info")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
