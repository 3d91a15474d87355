"""In a local stack's shell (``RDSVEND_LOCAL_STACK`` set by ``rdsvend local env``), an operator
command run while that stack is down says so, instead of failing on what the stack would have
provided (``cannot read policy file ...``, an unreachable endpoint)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from devtools.local.state import LOCAL_STACK_ENV, running_info

__all__ = ["STACK_DOWN", "local_stack_down"]

STACK_DOWN = "the local stack is not running: rdsvend local up"
#: Commands that need no running stack: the stack's own lifecycle, and checking a policy file.
_WITHOUT_STACK = (("local",), ("policy", "check"))


def local_stack_down(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The one line to print when the shell's local stack is down and the command needs it."""
    directory = environ.get(LOCAL_STACK_ENV)
    if not directory or any(flag in argv for flag in ("--help", "-h", "--version")):
        return None
    words = tuple(arg for arg in argv if not arg.startswith("-"))
    if not words or any(words[:len(prefix)] == prefix for prefix in _WITHOUT_STACK):
        return None
    if running_info(directory) is not None:
        return None
    return f"{STACK_DOWN} ({LOCAL_STACK_ENV}={directory}; 'unset {LOCAL_STACK_ENV}' to use AWS instead)"
