"""The rotation event Secrets Manager sends the ``rotate`` function, parsed strictly.

``{"Step": "createSecret|setSecret|testSecret|finishSecret", "SecretId": ARN,
"ClientRequestToken": version id}``; AWS may add ``RotationToken``. Anything else, a wrong
type, an oversized value or an unknown step is a :class:`RotationEventError` with one line
naming the field.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chalicelib.rotation.errors import RotationEventError

__all__ = ["STEPS", "SECRET_ID", "RotationEvent", "parse_event", "MAX_EVENT_BYTES"]

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
MAX_EVENT_BYTES = 8192
_TOKEN = re.compile(r"[A-Za-z0-9-]{32,64}")
SECRET_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,2048}")
_ALLOWED = frozenset({"Step", "SecretId", "ClientRequestToken", "RotationToken"})


@dataclass(frozen=True)
class RotationEvent:
    step: str
    secret_id: str
    token: str  # the ClientRequestToken: the id of the version being rotated in


def _clip(value: Any, limit: int = 60) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_event(event: Any) -> RotationEvent:
    if not isinstance(event, dict):
        raise RotationEventError(f"the event must be a JSON object, not {type(event).__name__}")
    try:
        size = len(json.dumps(event, default=str))
    except (TypeError, ValueError, RecursionError):
        raise RotationEventError("the event is not serialisable JSON") from None
    if size > MAX_EVENT_BYTES:
        raise RotationEventError(f"the event is {size} bytes, more than {MAX_EVENT_BYTES}")
    unknown = sorted(str(k) for k in event if k not in _ALLOWED)
    if unknown:
        raise RotationEventError(f"unknown field '{_clip(unknown[0])}'")
    values = {}
    for key, pattern in (("Step", None), ("SecretId", SECRET_ID), ("ClientRequestToken", _TOKEN)):
        value = event.get(key)
        if value is None:
            raise RotationEventError(f"missing field '{key}'")
        if not isinstance(value, str):
            raise RotationEventError(f"field '{key}' must be a string, not {type(value).__name__}")
        if pattern is not None and not pattern.fullmatch(value):
            raise RotationEventError(f"invalid {key} '{_clip(value)}'")
        values[key] = value
    if values["Step"] not in STEPS:
        raise RotationEventError(f"unknown Step '{_clip(values['Step'])}' (expected one of {', '.join(STEPS)})")
    return RotationEvent(step=values["Step"], secret_id=values["SecretId"], token=values["ClientRequestToken"])
