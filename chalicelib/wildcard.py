"""``*`` and ``?`` matching in linear time, for every pattern rdsvend reads.

A backtracking regex such as ``.*a.*a.*a.*b`` takes exponential time on a long run of ``a``:
a hostile principal pattern could hold a decision for minutes. Here a pattern is cut at its
stars into fixed-length pieces (literal text and ``?``), and the pieces are placed left to
right, each at its leftmost possible position (``str.find``, or a fixed-length regex search
for pieces holding a ``?``). For ``*``/``?`` globs the leftmost placement of a piece never
loses a match that a later one would find, so nothing is ever retried: the work is
O(len(value) x longest piece) at worst, and a few C-level finds in practice.

Two matching modes:

- plain (access-policy patterns, IAM actions and ``StringLike`` values): ``*`` matches any
  run of characters, ``?`` exactly one;
- ARN (IAM ``Resource`` patterns): ``?`` and a ``*`` stay inside their colon-delimited
  segment, except a ``*`` ending its segment (followed by ``:`` or the end of the pattern),
  which may run across the colons that follow. Pieces joined by segment-bound stars form a
  *block*: a block's first piece is placed at its leftmost position where the rest of the
  block fits (each later piece leftmost again); the last block is placed from the right.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["STAR", "QMARK", "Glob", "compile_glob", "glob"]

# Markers for a wildcard in a token sequence; any ``str`` token is literal text.
STAR = ("*",)
QMARK = ("?",)
GlobToken = str | tuple[Any, ...]  # STAR, QMARK (other tuples: never passed)


class _Piece:
    """Fixed-length text between two stars: literal characters and ``?``."""

    __slots__ = ("chars", "text", "size", "source", "regex")

    def __init__(self, chars: Sequence[str | None], arn: bool) -> None:
        # ``None`` marks a ``?``.
        self.chars = tuple(chars)
        self.size = len(chars)
        one = "[^:]" if arn else "."
        self.source = "".join(one if c is None else re.escape(c) for c in chars)
        if None in chars:
            self.text = ""
            self.regex: re.Pattern[str] | None = re.compile(self.source, re.DOTALL)
        else:
            self.text = "".join(chars)  # type: ignore[arg-type]  # no None in chars (checked above)
            self.regex = None

    def find(self, value: str, start: int, end: int) -> int:
        """Leftmost ``p >= start`` where the piece matches with ``p + size <= end``; -1 if none."""
        if self.regex is None:
            return value.find(self.text, start, end)
        m = self.regex.search(value, start, end)
        return -1 if m is None else m.start()

    def at(self, value: str, pos: int) -> bool:
        if self.regex is None:
            return value.startswith(self.text, pos)
        return self.regex.match(value, pos, pos + self.size) is not None


Block = tuple[_Piece, ...]  # pieces joined by segment-bound stars (ARN mode)


class Glob:
    """A compiled pattern; ``glob.matches(value)`` says whether all of ``value`` matches."""

    __slots__ = ("pattern", "matches")

    def __init__(self, pattern: str, matches: Callable[[str], bool]) -> None:
        self.pattern = pattern
        self.matches = matches

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


@lru_cache(maxsize=65536)
def glob(pattern: str) -> Glob:
    """Compile a plain ``*``/``?`` pattern given as text (every other character literal)."""
    tokens: list[GlobToken] = [STAR if c == "*" else QMARK if c == "?" else c for c in pattern]
    return compile_glob(tuple(tokens))


def compile_glob(tokens: tuple[GlobToken, ...], *, ignore_case: bool = False, arn: bool = False) -> Glob:
    """Compile tokens (literal strings, :data:`STAR`, :data:`QMARK`) into a :class:`Glob`.

    With ``ignore_case`` literals and values compare lowercased. With ``arn`` the segment
    rules of the module docstring apply.
    """
    pattern = "".join(t if isinstance(t, str) else t[0] for t in tokens)
    # Stars: True when the star may cross colons. Pieces: characters, None for '?'.
    pieces: list[list[str | None]] = [[]]
    crossing: list[bool] = []
    for pos, tok in enumerate(tokens):
        if tok == STAR:
            nxt = tokens[pos + 1] if pos + 1 < len(tokens) else None
            crosses = not arn or nxt is None or (isinstance(nxt, str) and nxt.startswith(":"))
            if pieces[-1] or not crossing:
                crossing.append(crosses)
                pieces.append([])
            else:  # two stars in a row: one star, crossing if either crosses
                crossing[-1] = crossing[-1] or crosses
        elif isinstance(tok, str):
            pieces[-1].extend(tok.lower() if ignore_case else tok)
        else:  # QMARK
            pieces[-1].append(None)
    compiled = [_Piece(chars, arn) for chars in pieces]
    matcher = _matcher(compiled, crossing)
    if ignore_case:
        inner = matcher

        def matcher(value: str) -> bool:
            return inner(value.lower())
    return Glob(pattern, matcher)


def _matcher(pieces: list[_Piece], crossing: list[bool]) -> Callable[[str], bool]:
    if not crossing:
        return _fixed(pieces[0])
    if all(crossing) and all(p.regex is None for p in pieces):
        if len(pieces) == 2:
            return _prefix_suffix(pieces[0].text, pieces[1].text)
        return _literal_pieces(tuple(p.text for p in pieces))
    # Blocks: runs of pieces joined by segment-bound stars, split at colon-crossing stars.
    blocks: list[list[_Piece]] = [[pieces[0]]]
    for crosses, piece in zip(crossing, pieces[1:], strict=True):
        if crosses:
            blocks.append([piece])
        else:
            blocks[-1].append(piece)
    if len(blocks) == 1:
        return _one_block(tuple(blocks[0]))
    return _blocks(tuple(tuple(b) for b in blocks))


def _fixed(piece: _Piece) -> Callable[[str], bool]:
    if piece.regex is None:
        text = piece.text
        return text.__eq__
    size = piece.size

    def fixed(value: str) -> bool:
        return len(value) == size and piece.at(value, 0)
    return fixed


def _prefix_suffix(prefix: str, suffix: str) -> Callable[[str], bool]:
    least = len(prefix) + len(suffix)
    if not suffix:
        return lambda value: value.startswith(prefix)
    if not prefix:
        return lambda value: value.endswith(suffix)
    return lambda value: len(value) >= least and value.startswith(prefix) and value.endswith(suffix)


def _literal_pieces(texts: tuple[str, ...]) -> Callable[[str], bool]:
    """Literal pieces between stars that cross anything: the common case, inlined."""
    head, middle, tail = texts[0], texts[1:-1], texts[-1]
    least = sum(len(t) for t in texts)

    def literal_pieces(value: str) -> bool:
        n = len(value)
        if n < least or not value.startswith(head) or not value.endswith(tail):
            return False
        pos, limit = len(head), n - len(tail)
        for text in middle:
            found = value.find(text, pos, limit)
            if found < 0:
                return False
            pos = found + len(text)
        return True
    return literal_pieces


def _chain(value: str, block: Block, start: int, end: int) -> int:
    """Place ``block`` with its first piece at ``start``, each later piece leftmost after a
    colon-free gap, all inside ``value[:end]``; the end of the last piece, or -1."""
    first = block[0]
    pos = start + first.size
    if pos > end or not first.at(value, start):
        return -1
    for piece in block[1:]:
        colon = value.find(":", pos, end)
        hi = end if colon < 0 else min(end, colon + piece.size)
        found = piece.find(value, pos, hi)
        if found < 0:
            return -1
        pos = found + piece.size
    return pos


def _search(value: str, block: Block, regex: re.Pattern[str] | None, start: int, end: int) -> int:
    """The earliest end of ``block`` placed anywhere in ``value[start:end]``, or -1.

    For a block of several pieces, ``regex`` is :func:`_chain` written as a regex whose
    atomic groups commit to each leftmost placement, so only the start is ever retried."""
    if regex is None:
        first = block[0]
        found = first.find(value, start, end)
        return -1 if found < 0 else found + first.size
    m = regex.search(value, start, end)
    return -1 if m is None else m.end()


def _block_regex(block: Block) -> re.Pattern[str] | None:
    if len(block) == 1:
        return None
    later = "".join(f"(?>[^:]*?{p.source})" for p in block[1:])
    return re.compile(block[0].source + later, re.DOTALL)


def _one_block(block: Block) -> Callable[[str], bool]:
    """Segment-bound stars only: anchored at both ends."""
    middle, tail = block[:-1], block[-1]
    least = sum(p.size for p in block)

    def one_block(value: str) -> bool:
        n = len(value)
        if n < least:
            return False
        limit = n - tail.size
        pos = _chain(value, middle, 0, limit)
        return pos >= 0 and value.find(":", pos, limit) < 0 and tail.at(value, limit)
    return one_block


def _blocks(blocks: tuple[Block, ...]) -> Callable[[str], bool]:
    first, last = blocks[0], blocks[-1]
    middle = tuple((b, _block_regex(b)) for b in blocks[1:-1])
    least = sum(p.size for b in blocks for p in b)
    # Blocks exist only in ARN mode, where a '?' never matches a colon.
    last_reversed: Block = tuple(_Piece(p.chars[::-1], True) for p in reversed(last))
    last_piece = last[0] if len(last) == 1 else None

    def blocks_match(value: str) -> bool:
        n = len(value)
        if n < least:
            return False
        pos = _chain(value, first, 0, n)
        if pos < 0:
            return False
        if last_piece is not None:
            limit = n - last_piece.size
            if limit < pos or not last_piece.at(value, limit):
                return False
        else:  # the last block placed from the right: its rightmost fit, found on the reversed value
            done = _chain(value[::-1], last_reversed, 0, n - pos)
            if done < 0:
                return False
            limit = n - done
        for block, regex in middle:
            pos = _search(value, block, regex, pos, limit)
            if pos < 0:
                return False
        return True
    return blocks_match
