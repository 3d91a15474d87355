"""One copy of botocore's models per process, for the local stack and the tests.

Every boto3 session loads its own copy of the JSON models it uses (the endpoint rules, each
service's API): about 0.2 s of parsing per session and service. The local stack makes a
session per account it acts in (seeding the world alone makes dozens), moto gives each test
a new default session, and the tests make sessions of their own (one per account, caller or
fault): the same files were parsed thousands of times a test run. :func:`share_loaded_models`
lets every botocore loader in the process answer from one shared cache, keyed by the
loader's kind and search paths as well as by what it was asked for, so a loader with other
paths (moto's own, a custom ``AWS_DATA_PATH``) never gets another's answer. What is cached
is what botocore's loader already caches per session and hands out read-only.

Not for the service: a Lambda function makes its few clients once per container.
"""
from __future__ import annotations

from typing import Any

from botocore import loaders

__all__ = ["share_loaded_models"]

_LOADED: dict[tuple[Any, ...], Any] = {}


class _SharedCache:
    """The mapping ``botocore.loaders.instance_cache`` uses (``in``, get, set), over ``_LOADED``."""

    def __init__(self, loader: loaders.Loader) -> None:
        self._loader = loader

    def _key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        loader = self._loader
        return (type(loader), type(loader.file_loader), tuple(loader.search_paths), tuple(loader.extras_types), key)

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return self._key(key) in _LOADED

    def __getitem__(self, key: tuple[Any, ...]) -> Any:
        return _LOADED[self._key(key)]

    def __setitem__(self, key: tuple[Any, ...], value: Any) -> None:
        _LOADED[self._key(key)] = value


def share_loaded_models() -> None:
    """Make every botocore loader created from now on in this process share one cache."""
    if getattr(loaders.Loader.__init__, "shares_models", False):
        return
    original = loaders.Loader.__init__

    def __init__(self: loaders.Loader, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._cache = _SharedCache(self)  # type: ignore[attr-defined]  # the stubs omit the cache instance_cache reads

    __init__.shares_models = True  # type: ignore[attr-defined]  # a marker: patched once per process
    loaders.Loader.__init__ = __init__  # type: ignore[method-assign]  # the cache, shared across loaders
