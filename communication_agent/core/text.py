"""Text helpers shared by layers that must not import each other."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Lower case without accents, so "Rückerstattung" matches the keyword "ruckerstattung"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("ß", "ss")
