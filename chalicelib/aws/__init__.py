"""Thin adapters to AWS APIs. Clients are created lazily and injected, never at import time."""
