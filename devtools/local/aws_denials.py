"""The error answers the local AWS gives when it refuses a request, in each service's own
shape: query services (IAM, STS, RDS, SNS) an XML ``ErrorResponse``, EC2 its ``Response``,
JSON services (Secrets Manager, SSM, DynamoDB, Logs, Organizations) a ``__type`` body, Lambda
(REST) an ``x-amzn-ErrorType`` header, RPC v2 CBOR services (CloudWatch, Directory Service) a
CBOR body; with the code each service uses (``AccessDenied``, ``AccessDeniedException``,
``AuthorizationError`` for SNS, ``UnauthorizedOperation`` for EC2) and AWS's wording:

    User: arn:aws:iam::333333333333:user/reporting-job is not authorized to perform:
    secretsmanager:GetSecretValue on resource: arn:...:secret:x because no identity-based
    policy allows the secretsmanager:GetSecretValue action
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["Answer", "PHRASES", "denied_message", "access_denied", "auth_failure", "protocol_of"]

#: How AWS names each layer in an access-denied message.
PHRASES: Mapping[str, str] = {
    "identity": "identity-based policy",
    "scp": "service control policy",
    "boundary": "permissions boundary",
    "session": "session policy",
    "resource": "resource-based policy",
}

_QUERY_NAMESPACES = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "rds": "http://rds.amazonaws.com/doc/2014-10-31/",
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
}
_ACCESS_DENIED_CODES = {"sns": "AuthorizationError", "ec2": "UnauthorizedOperation", "monitoring": "AccessDenied",
                        "sqs": "AccessDenied"}
_JSON_TYPE_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status_line(self) -> str:
        return {400: "400 Bad Request", 403: "403 Forbidden"}.get(self.status, f"{self.status} Error")


def protocol_of(signing_name: str) -> str:
    """``query``, ``ec2``, ``json``, ``rest-json`` or ``cbor``: how the service answers errors."""
    if signing_name in _QUERY_NAMESPACES:
        return "query"
    return {"ec2": "ec2", "lambda": "rest-json", "monitoring": "cbor", "ds": "cbor"}.get(signing_name, "json")


def denied_message(principal: str, action: str, resource: str, layer: str, explicit: bool) -> str:
    """AWS's sentence for a refusal by ``layer`` (``trust``: the role's trust policy, which AWS
    does not explain; ``unmapped``: what the local stack cannot name)."""
    head = f"User: {principal} is not authorized to perform: {action} on resource: {resource}"
    if layer == "trust":
        return head
    if layer == "unmapped":
        return f"{head} because the local AWS cannot name the resource this request acts on"
    phrase = PHRASES.get(layer, "identity-based policy")
    if explicit:
        article = "an" if phrase[0] in "aeiou" else "a"
        return f"{head} with an explicit deny in {article} {phrase}"
    return f"{head} because no {phrase} allows the {action} action"


def _cbor_text(value: str) -> bytes:
    data = value.encode()
    return _cbor_head(3, len(data)) + data


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    if length < 0x100:
        return bytes([major << 5 | 24, length])
    if length < 0x10000:
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")
    return bytes([major << 5 | 26]) + length.to_bytes(4, "big")


def _error(signing_name: str, status: int, code: str, message: str) -> Answer:
    request_id = str(uuid.uuid4())
    protocol = protocol_of(signing_name)
    if protocol == "query":
        body = (f'<ErrorResponse xmlns="{_QUERY_NAMESPACES[signing_name]}"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        return Answer(status, (("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)), body)
    if protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{request_id}</RequestID>"
                "</Response>").encode()
        return Answer(status, (("Content-Type", "text/xml"),), body)
    if protocol == "rest-json":
        body = json.dumps({"Type": "User", "Message": message}).encode()
        return Answer(status, (("Content-Type", "application/json"), ("x-amzn-ErrorType", code),
                               ("x-amzn-RequestId", request_id)), body)
    if protocol == "cbor":
        body = (_cbor_head(5, 2) + _cbor_text("__type") + _cbor_text(code) + _cbor_text("message")
                + _cbor_text(message))
        return Answer(status, (("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"),
                               ("x-amzn-RequestId", request_id)), body)
    typed = _JSON_TYPE_PREFIX.get(signing_name, "") + code
    body = json.dumps({"__type": typed, "Message": message}).encode()
    return Answer(status, (("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)), body)


def access_denied(signing_name: str, message: str) -> Answer:
    """The service's AccessDenied answer carrying ``message``."""
    protocol = protocol_of(signing_name)
    code = _ACCESS_DENIED_CODES.get(signing_name, "AccessDenied" if protocol == "query" else "AccessDeniedException")
    if signing_name == "ec2":
        message = f"You are not authorized to perform this operation. {message}"
    status = 400 if protocol in ("json", "cbor") else 403
    return _error(signing_name, status, code, message)


_BAD_SIGNATURE = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                  "Secret Access Key and signing method. Consult the service documentation for details.")
_INVALID_TOKEN = "The security token included in the request is invalid."


def auth_failure(signing_name: str, reason: str) -> Answer:
    """The service's answer to a request whose signature does not verify (``reason`` from
    :class:`chalicelib.errors.SignatureError`): unknown key, bad signature, missing or stale."""
    protocol = protocol_of(signing_name)
    status = 400 if protocol in ("json", "cbor") else 403
    if signing_name == "ec2":
        return _error("ec2", 401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    if reason in ("unknown_key", "bad_session_token"):
        code = "InvalidClientTokenId" if protocol == "query" else "UnrecognizedClientException"
        return _error(signing_name, status, code, _INVALID_TOKEN)
    if reason in ("missing", "malformed"):
        code = "MissingAuthenticationToken" if reason == "missing" else "IncompleteSignature"
        if protocol != "query" and reason == "missing":
            code = "MissingAuthenticationTokenException"
        return _error(signing_name, 400 if reason == "malformed" else 403, code,
                      "Request is missing Authentication Token" if reason == "missing"
                      else "The request signature is incomplete")
    code = "SignatureDoesNotMatch" if protocol == "query" else "InvalidSignatureException"
    return _error(signing_name, status, code, "Signature expired" if reason == "stale" else _BAD_SIGNATURE)
