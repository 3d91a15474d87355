"""How many examples the property tests (hypothesis) try, by profile.

Two profiles, registered by ``tests/conftest.py``:

- ``quick`` (the default, what ``make test`` and ``make test-fast`` run): a quarter of each
  test's count, at least 10;
- ``thorough`` (``pytest --hypothesis-profile=thorough``, or ``HYPOTHESIS_PROFILE=thorough``):
  each test's full count, and 100 for a test that names none (hypothesis' own default).

A test names its thorough count with ``@settings(max_examples=examples(1500))``. Neither
profile has a deadline: how fast things run is measured by ``make bench``, not by tests.
"""
from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["QUICK", "THOROUGH", "examples", "register_profiles"]

QUICK = "quick"
THOROUGH = "thorough"
_FULL = 100  # the thorough profile's max_examples: the scale every count is read against


def register_profiles() -> None:
    """Register both profiles and load ``HYPOTHESIS_PROFILE`` (``quick`` unless set);
    ``--hypothesis-profile`` on the pytest command line loads another one after this."""
    settings.register_profile(THOROUGH, max_examples=_FULL, deadline=None)
    settings.register_profile(QUICK, max_examples=_FULL // 4, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", QUICK))


def examples(thorough: int) -> int:
    """``thorough`` examples under the thorough profile; the same share of it as the loaded
    profile's ``max_examples`` is of 100 otherwise (at least 10)."""
    loaded = settings.default  # the loaded profile (register_profiles ran before any test module)
    share = loaded.max_examples if loaded is not None else _FULL
    return max(10, thorough * share // _FULL)
