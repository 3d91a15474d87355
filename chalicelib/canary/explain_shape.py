"""The shape of the doctor's words, shared by :mod:`chalicelib.canary.explain` and its tables for
other kinds of target (:mod:`~chalicelib.canary.explain_password`, :mod:`~chalicelib.canary.explain_dsql`,
:mod:`~chalicelib.canary.explain_mysql`): a table from check id to a :data:`Why`, which gives the
paragraph for a check that did not pass ("" when there is nothing to add), built from fixed
text, a choice made on the check's details, or words said only when the database refused the
login itself. Pure: check in, text out.
"""
from __future__ import annotations

from collections.abc import Callable

from chalicelib.canary.model import CheckResult, TargetReport

__all__ = ["Why", "Words", "said", "when", "has_detail", "on_auth_refusal"]

#: the paragraph for a check of a target ("" for nothing to add)
Why = Callable[[CheckResult, TargetReport], str]
#: a paragraph: fixed text, or made from the check and its target
Words = str | Why


def _say(words: Words, check: CheckResult, target: TargetReport) -> str:
    return words if isinstance(words, str) else words(check, target)


def said(text: str) -> Why:
    """The same paragraph whatever the check found."""
    return lambda check, target: text


def when(test: Callable[[CheckResult], bool], then: Words, otherwise: Words = "") -> Why:
    """``then`` for a check that passes ``test``, else ``otherwise``."""
    return lambda check, target: _say(then if test(check) else otherwise, check, target)


def has_detail(key: str) -> Callable[[CheckResult], bool]:
    """Whether the check's details give ``key`` a value (not empty, not false)."""
    return lambda check: bool(check.details.get(key))


def on_auth_refusal(words: Words) -> Why:
    """``words`` when the database refused the login itself (``error_kind`` ``auth``); "" for any
    other failure (TLS, network), which the general explanation covers."""
    return when(lambda check: check.details.get("error_kind") == "auth", words)
