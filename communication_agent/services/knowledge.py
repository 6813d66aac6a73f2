"""The knowledge base drafts may rely on: snippets from a TOML file, picked per ticket.

Deliberately simple and inspectable: each snippet lists its categories and keywords, and a
ticket gets the best two by matches in its newest message (plus its triaged category). The file
is `COMMAGENT_KNOWLEDGE_PATH`, or a small sample shipped with the package.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from communication_agent.core.text import fold
from communication_agent.models.schemas.reasoning import KnowledgeSnippet

SAMPLE = Path(__file__).parent.parent / "data" / "knowledge.toml"
PER_TICKET = 2


class KnowledgeBase:
    def __init__(self, entries: list[tuple[KnowledgeSnippet, set[str], list[str]]]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path | None) -> KnowledgeBase:
        return _load(path or SAMPLE)

    def pick(self, text: str, category: str | None) -> list[KnowledgeSnippet]:
        folded = fold(text)
        scored = []
        for snippet, categories, keywords in self.entries:
            score = sum(1 for k in keywords if k in folded) + (2 if category in categories else 0)
            if score:
                scored.append((score, snippet.id, snippet))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [snippet for _score, _id, snippet in scored[:PER_TICKET]]


@lru_cache(maxsize=8)
def _load(path: Path) -> KnowledgeBase:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        entries = [
            (
                KnowledgeSnippet(id=item["id"], title=item["title"], text=item["text"]),
                set(item.get("categories", [])),
                [fold(k) for k in item.get("keywords", [])],
            )
            for item in data.get("snippet", [])
        ]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot read the knowledge base {path}: {exc}") from exc
    return KnowledgeBase(entries)
