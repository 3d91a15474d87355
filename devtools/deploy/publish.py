"""Publish an access policy to SSM Parameter Store (`rdsvend policy publish`).

The file is validated with the same loader the functions use; only a policy that loads is
uploaded, byte for byte as written (comments kept), so what runs is what was reviewed.
The functions read it through ``RDSVEND_POLICY=ssm:/NAME``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chalicelib.aws.errors import aws_error
from chalicelib.errors import PolicyLoadError, PolicyPublishError
from chalicelib.policy.loader import MAX_POLICY_BYTES, load_policy_text

__all__ = [
    "publish_policy",
    "parameter_name",
    "STANDARD_TIER_BYTES",
    "ADVANCED_TIER_BYTES",
]

#: SSM Parameter Store value limits: 4 KB for a standard parameter, 8 KB for an advanced one.
STANDARD_TIER_BYTES = 4096
ADVANCED_TIER_BYTES = 8192

# A fully qualified SSM name: /segment/segment..., at most 15 levels and 1011 characters;
# names may not begin with "aws" or "ssm" (any case).
_SEGMENT = r"[A-Za-z0-9_.-]+"
_NAME = re.compile(rf"(/{_SEGMENT}){{1,15}}")
_RESERVED = re.compile(r"/(aws|ssm)", re.IGNORECASE)
_MAX_NAME = 1011


def parameter_name(parameter: str) -> str:
    """The SSM name for ``parameter``, given as ``/a/b`` or as ``ssm:/a/b`` (RDSVEND_POLICY's form)."""
    name = parameter[len("ssm:"):] if parameter.startswith("ssm:") else parameter
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise PolicyPublishError(
            f"invalid parameter name '{parameter}': expected /path/to/name "
            "(letters, digits, _ . -, at most 15 levels)",
            parameter=parameter, input_error=True,
        )
    if _RESERVED.match(name):
        raise PolicyPublishError(
            f"invalid parameter name '{parameter}': names may not begin with 'aws' or 'ssm'",
            parameter=parameter, input_error=True,
        )
    return name


def publish_policy(
    path: str | Path,
    parameter: str,
    ssm_client: Any,
    *,
    secure: bool = False,
    key_id: str | None = None,
) -> int:
    """Validate the access policy at ``path``, then put it in SSM as ``parameter``.

    Returns the parameter's new version. Raises :class:`PolicyLoadError` (nothing uploaded)
    when the file does not load, :class:`PolicyPublishError` for a bad name, a file too big
    for a parameter, or an SSM refusal. ``secure`` stores a ``SecureString`` (encrypted with
    ``key_id``, default ``alias/aws/ssm``); the default is a plain ``String``: the policy
    names principals and databases but holds no secret.
    """
    name = parameter_name(parameter)
    source = str(path)
    text = _validated_policy(path, source)
    request = _put_request(name, text, source, secure=secure, key_id=key_id)
    try:
        response = ssm_client.put_parameter(**request)
    except Exception as exc:
        error = aws_error(exc)
        if error is None:
            raise
        if error.kind == "no_answer":
            raise PolicyPublishError(f"could not reach ssm to publish '{name}': {error.code}", parameter=name) from exc
        raise PolicyPublishError(
            f"ssm refused parameter '{name}': {error.code}: {error.message}".rstrip(": "), parameter=name,
        ) from exc
    return int(response["Version"])


def _validated_policy(path: str | Path, source: str) -> str:
    """The policy file's text once it loads (size, UTF-8, the loader's checks): nothing is
    uploaded otherwise."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)  # the loader refuses anything bigger
    except OSError as exc:
        raise PolicyLoadError(f"cannot read file: {exc.strerror or exc}", source=source) from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyLoadError(f"file is more than {MAX_POLICY_BYTES} bytes", source=source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError("file is not UTF-8", source=source) from exc
    load_policy_text(text, source=source)  # raises PolicyLoadError: nothing is uploaded
    return text


def _put_request(name: str, text: str, source: str, *, secure: bool, key_id: str | None) -> dict[str, Any]:
    """The ``PutParameter`` request for the policy: its tier from its size, encrypted when ``secure``."""
    size = len(text.encode("utf-8"))
    if size > ADVANCED_TIER_BYTES:
        raise PolicyPublishError(
            f"{source}: policy is {size} bytes, an SSM parameter holds at most "
            f"{ADVANCED_TIER_BYTES}; point RDSVEND_POLICY at a file shipped with the functions instead",
            parameter=name, input_error=True,
        )
    request: dict[str, Any] = {
        "Name": name,
        "Value": text,
        "Type": "SecureString" if secure else "String",
        "Overwrite": True,
        "Description": "rdsvend access policy (rdsvend policy publish)",
    }
    if size > STANDARD_TIER_BYTES:
        # Only ever raise the tier: SSM refuses to turn an advanced parameter back into a
        # standard one, so a smaller policy keeps whatever tier the parameter has.
        request["Tier"] = "Advanced"
    if secure and key_id:
        request["KeyId"] = key_id
    elif key_id:
        raise PolicyPublishError("a KMS key id only applies to a secure parameter", parameter=name,
                                 input_error=True)
    return request
