"""A word-level diff between the model's proposal and the operator's text, for review.

Words (not characters, not lines) are what a reviewer reads: "refund within 14 days" becoming
"refund within 30 days" shows one changed word, not a changed line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
# Beyond this many tokens a diff is no longer a review aid and costs real time to compute.
MAX_TOKENS = 8000


@dataclass(frozen=True)
class Piece:
    kind: Literal["same", "added", "removed"]
    text: str


def word_diff(before: str, after: str) -> list[Piece]:
    old = _TOKENS.findall(before)[:MAX_TOKENS]
    new = _TOKENS.findall(after)[:MAX_TOKENS]
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(Piece("same", "".join(old[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(Piece("removed", "".join(old[i1:i2])))
        if j2 > j1:
            pieces.append(Piece("added", "".join(new[j1:j2])))
    return pieces


def is_unchanged(pieces: list[Piece]) -> bool:
    return all(piece.kind == "same" for piece in pieces)
