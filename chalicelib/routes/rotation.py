"""The function ``rotate``: Secrets Manager's rotation function for the access policy's
``auth: password`` users. Secrets Manager invokes it four times per rotation
(createSecret, setSecret, testSecret, finishSecret).

Wiring only; the work is in :mod:`chalicelib.rotation`.
"""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.observability import lambda_entry
from chalicelib.rotation.handler import handle_rotation

__all__ = ["rotation_routes", "rotate"]

rotation_routes = Blueprint(__name__)


@rotation_routes.lambda_function(name="rotate")
@lambda_entry
def rotate(event: Any, context: Any) -> dict[str, str]:
    return handle_rotation(event)
