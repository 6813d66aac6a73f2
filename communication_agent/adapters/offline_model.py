"""The `offline` reasoning backend: a transparent rules engine, no model, no network.

It is what its name says: keyword and pattern lexicons per category, urgency and sentiment cues,
stop-word language detection, reply templates and plan playbooks, all in the TOML files of
`offline_rules/` (or of `COMMAGENT_OFFLINE_RULES_DIR`, file by file), so an operator can tune it
without touching code. It is deterministic, which makes it the default, the test oracle for the
services, and the baseline every real model must beat on `commagent eval triage`.

Its answers go through the same schema validation as a remote model's (citations and grounding
included), so a template that states a number the conversation does not contain is caught.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from communication_agent.adapters.reasoning import INVALID_OUTPUT, OK, CallMeta, Reasoned
from communication_agent.core.text import fold
from communication_agent.models.enums import Priority, TicketState
from communication_agent.models.schemas.reasoning import (
    ContextMessage,
    PlanStep,
    Proposal,
    TicketContext,
    Triage,
)

PACKAGED_RULES = Path(__file__).parent / "offline_rules"
RULE_FILES = ("categories.toml", "signals.toml", "replies.toml", "playbooks.toml")
PROMPT_VERSION = "offline-rules-1"
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_GREETING = re.compile(
    r"^(hi|hello|hey|dear [^,]{0,40}|hallo|guten tag|bonjour|hola|ciao|buongiorno|goedendag|"
    r"beste [^,]{0,40}|ola|olá|hej|dzien dobry|dzień dobry)\b[^,.!]{0,40}[,.!]\s*",
    re.IGNORECASE,
)
# "Re: login" names the old topic; the new text says what this message is about.
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|vs|fw|fwd|wg|tr|rv|r|antw)\s*:", re.IGNORECASE)
_PRIORITY_ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
_PROBLEM_CATEGORIES = ("bug", "billing", "account", "complaint")


@dataclass(frozen=True)
class _Lexicon:
    """Weighted phrases matched at word starts, compiled into one regex per lexicon."""

    weights: dict[str, float]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, entries: list[str]) -> _Lexicon:
        weights: dict[str, float] = {}
        for entry in entries:
            phrase, _, weight = entry.partition("|")
            key = fold(phrase.strip())
            if key:
                weights[key] = float(weight) if weight.strip() else 1.0
        if not weights:
            return cls({}, None)
        ordered = sorted(weights, key=len, reverse=True)
        alternation = "|".join(re.escape(p) for p in ordered)
        return cls(weights, re.compile(rf"(?<![a-z0-9])(?:{alternation})"))

    def score(self, text: str) -> tuple[float, list[str]]:
        if self.pattern is None:
            return 0.0, []
        hits = self.pattern.findall(text)
        return sum(self.weights[h] for h in hits), hits


class OfflineRules:
    """The rule files, loaded once: packaged defaults, each replaceable by a file in `override`."""

    def __init__(self, override: Path | None = None) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        for name in RULE_FILES:
            chosen = override / name if override and (override / name).exists() else None
            path = chosen or PACKAGED_RULES / name
            try:
                self.data[name] = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"cannot read the offline rules file {path}: {exc}") from exc
        self._check()

    def _check(self) -> None:
        """Compile and look up everything now, so a broken edit stops start-up with its reason
        instead of failing every ticket later."""
        try:
            _ = self.categories, self.languages, self._lexicons, self.base_priority
            _ = self.no_reply_max_words
            for language in self.data["replies.toml"]:
                templates = self.replies(language)
                for key in ("greeting", "greeting_anonymous", "closing", "ask", "snippet"):
                    str(templates[key])
                for key in ("apology", "refund", "body", "needs"):
                    _ = templates[key]
                _ = templates["body"]["other"]
            _ = self.data["playbooks.toml"]["playbooks"]
        except re.error as exc:
            raise ValueError(f"a pattern in the offline rules does not compile: {exc}") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the offline rules lack or mistype an entry: {exc!r}") from exc

    @cached_property
    def categories(self) -> dict[str, tuple[_Lexicon, list[re.Pattern[str]]]]:
        result = {}
        for name, spec in self.data["categories.toml"].items():
            patterns = [re.compile(p) for p in spec.get("patterns", [])]
            result[name] = (_Lexicon.of(list(spec.get("keywords", []))), patterns)
        return result

    @cached_property
    def languages(self) -> dict[str, set[str]]:
        spec = self.data["signals.toml"]["languages"]
        return {lang: {fold(w) for w in words} for lang, words in spec.items()}

    def lexicon(self, section: str, key: str) -> _Lexicon:
        return self._lexicons[(section, key)]

    @cached_property
    def _lexicons(self) -> dict[tuple[str, str], _Lexicon]:
        signals = self.data["signals.toml"]
        return {
            ("priority", "urgent"): _Lexicon.of(signals["priority"]["urgent"]),
            ("priority", "high"): _Lexicon.of(signals["priority"]["high"]),
            ("priority", "low"): _Lexicon.of(signals["priority"]["low"]),
            ("sentiment", "negative"): _Lexicon.of(signals["sentiment"]["negative"]),
            ("sentiment", "positive"): _Lexicon.of(signals["sentiment"]["positive"]),
            ("no_reply", "phrases"): _Lexicon.of(signals["no_reply"]["phrases"]),
        }

    @property
    def base_priority(self) -> dict[str, str]:
        return dict(self.data["signals.toml"]["priority"]["base"])

    @property
    def no_reply_max_words(self) -> int:
        return int(self.data["signals.toml"]["no_reply"].get("max_words", 60))

    def replies(self, language: str) -> dict[str, Any]:
        templates = self.data["replies.toml"]
        return dict(templates.get(language) or templates["en"])

    def playbook(self, category: str) -> list[tuple[str, str]]:
        steps = self.data["playbooks.toml"]["playbooks"]
        chosen = steps.get(category) or steps.get("other", [])
        return [(a.strip(), r.strip()) for a, _, r in (s.partition("|") for s in chosen)]


class _Leave(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # an unknown placeholder stays visible instead of crashing


def _fill(template: str, values: dict[str, str]) -> str:
    """Fill the documented placeholders; anything else in braces is left as written."""
    try:
        return template.format_map(_Leave(values))
    except (ValueError, IndexError, AttributeError):  # stray braces or "{0}": use it as it is
        return template


class OfflineReasoningModel:
    """`ReasoningModel` implemented by the rules (see the module docstring)."""

    provider = "offline"
    model = "rules"
    prompt_version = PROMPT_VERSION

    def __init__(self, rules: OfflineRules | None = None) -> None:
        self.rules = rules or OfflineRules()

    async def aclose(self) -> None:
        return None

    async def triage(self, context: TicketContext) -> Reasoned[Triage]:
        started = time.perf_counter()
        return self._validated("triage", Triage, self.classify(context), context, started)

    async def propose(self, context: TicketContext) -> Reasoned[Proposal]:
        started = time.perf_counter()
        return self._validated("proposal", Proposal, self.compose(context), context, started)

    # --- triage ---------------------------------------------------------------------------

    def classify(self, context: TicketContext) -> dict[str, Any]:
        latest = context.latest_inbound
        subject = fold(latest.subject if latest else context.subject)
        body = fold(latest.text if latest else "")
        text = f"{subject}\n{body}"
        scores = self._category_scores(subject, body, context.categories)
        ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        category, top = ranked[0] if ranked and ranked[0][1] > 0 else ("other", 0.0)
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        # The subject of a reply names the old topic ("Re: login"): judge "nothing to answer"
        # on the new text alone.
        needs_reply = self._needs_reply(
            body, category, self._category_scores("", body, context.categories)
        )
        if not needs_reply and category in _PROBLEM_CATEGORIES:
            category = "other"
        if category not in context.categories:
            category = "other" if "other" in context.categories else context.categories[0]
        language = self.detect_language(f"{subject} {body}")
        evidence = min(1.0, top / 6.0)
        margin = (top - second) / top if top else 0.0
        confidence = round(0.35 + 0.4 * evidence + 0.2 * margin, 2) if top else 0.4
        if not needs_reply and category == "other":
            confidence = max(confidence, 0.9 if len(body.split()) <= 25 else 0.75)
        return {
            "category": category,
            "priority": self._priority(text, category, needs_reply).value,
            "sentiment": self._sentiment(text),
            "language": language,
            "summary": self._summary(category, latest),
            "needs_reply": needs_reply,
            "suggested_state": (
                TicketState.NEEDS_ACTION if needs_reply else TicketState.DONE
            ).value,
            "confidence": min(confidence, 0.99),
        }

    def _category_scores(self, subject: str, body: str, allowed: list[str]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for name, (lexicon, patterns) in self.rules.categories.items():
            if name not in allowed:
                continue
            in_subject, _ = lexicon.score(subject)
            in_body, _ = lexicon.score(body)
            pattern_hits = sum(1 for p in patterns if p.search(f"{subject}\n{body}"))
            subject_weight = 0.5 if _REPLY_SUBJECT.match(subject) else 2.0
            scores[name] = subject_weight * in_subject + in_body + 2 * pattern_hits
        return scores

    def _needs_reply(self, body: str, category: str, scores: dict[str, float]) -> bool:
        if category == "spam":
            return False
        gratitude, _ = self.rules.lexicon("no_reply", "phrases").score(body)
        if not gratitude or "?" in body:
            return True
        if len(body.split()) > self.rules.no_reply_max_words:
            return True
        problems = sum(scores.get(c, 0.0) for c in _PROBLEM_CATEGORIES)
        return problems >= 3

    def _priority(self, text: str, category: str, needs_reply: bool) -> Priority:
        """Spam and mail that needs no reply are low; then an explicit "not urgent" wins over
        the urgency words it contains; then urgent and high cues; else the category's base."""
        base = Priority(self.rules.base_priority.get(category, "normal"))
        if category == "spam" or not needs_reply:
            return Priority.LOW
        if self.rules.lexicon("priority", "low").score(text)[0] >= 2:
            return Priority.LOW
        if self.rules.lexicon("priority", "urgent").score(text)[0] >= 2:
            return Priority.URGENT
        if self.rules.lexicon("priority", "high").score(text)[0] >= 2:
            return max(base, Priority.HIGH, key=_PRIORITY_ORDER.index)
        return base

    def _sentiment(self, text: str) -> str:
        negative, _ = self.rules.lexicon("sentiment", "negative").score(text)
        positive, _ = self.rules.lexicon("sentiment", "positive").score(text)
        if negative > positive:
            return "negative"
        return "positive" if positive > negative + 1 else "neutral"

    def detect_language(self, folded: str) -> str:
        words = _WORD.findall(folded)
        counts = {
            lang: sum(1 for w in words if w in vocabulary)
            for lang, vocabulary in self.rules.languages.items()
        }
        best = max(counts, key=lambda lang: (counts[lang], lang == "en"), default="en")
        return best if counts.get(best) else "en"

    @staticmethod
    def _summary(category: str, latest: ContextMessage | None) -> str:
        text = _GREETING.sub("", " ".join((latest.text if latest else "").split()), count=1)
        first = _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""
        first = first or (latest.subject if latest else "") or "no text"
        label = category.replace("-", " ").capitalize()
        line = f"{label}: {first}"
        return line if len(line) <= 160 else line[:157].rstrip() + "..."

    # --- proposal -------------------------------------------------------------------------

    def compose(self, context: TicketContext) -> dict[str, Any]:
        triage = self.classify(context)
        category = triage["category"]
        language = triage["language"]
        templates = self.rules.replies(language)
        if language not in self.rules.data["replies.toml"]:
            language = "en"
        instruction = fold(context.instruction or "")
        short = any(w in instruction for w in ("short", "brief", "kurz", "court", "breve"))
        first_name = _greetable(context.customer_name)
        values = {"name": first_name, "subject": context.subject, "ticket": str(context.ticket_id)}
        greeting = templates["greeting"] if first_name else templates["greeting_anonymous"]
        lines = [_fill(greeting, values), ""]
        body = _fill(str(templates["body"].get(category) or templates["body"]["other"]), values)
        lines.append(body if language == "de" else body[:1].upper() + body[1:])
        if "apolog" in instruction or "sorry" in instruction or triage["sentiment"] == "negative":
            lines.append(templates["apology"])
        if "refund" in instruction or "erstatt" in instruction or "rembours" in instruction:
            lines.append(templates["refund"])
        needs = str(templates["needs"].get(category, ""))
        needs_info = [needs] if needs and not short and not self._context_answers(context) else []
        if needs_info:
            lines.append(_fill(templates["ask"], {**values, "needs": needs}))
        citations = [context.latest_inbound.ref] if context.latest_inbound else []
        if context.knowledge and not short:
            snippet = context.knowledge[0]
            lines.append(_fill(templates["snippet"], {**values, "snippet": snippet.title}))
            citations.append(snippet.ref)
        lines += ["", templates["closing"]]
        if short:
            lines = [line for line in lines if line != templates.get("apology")]
        plan = [
            {"action": action, "reason": reason, "citations": citations[:1]}
            for action, reason in self.rules.playbook(category)
        ]
        return {
            "language": language,
            "body": "\n".join(lines).strip(),
            "citations": citations,
            "plan": plan or [PlanStep(action="Read the message", reason="Decide").model_dump()],
            "needs_info": needs_info,
        }

    @staticmethod
    def _context_answers(context: TicketContext) -> bool:
        """Whether the customer already gave a reference number (then we do not ask for one)."""
        latest = context.latest_inbound
        return bool(latest and re.search(r"\d{4,}", latest.text))

    def _validated(
        self,
        task: str,
        schema: type[BaseModel],
        answer: dict[str, Any],
        context: TicketContext,
        started: float,
    ) -> Reasoned[Any]:
        meta = CallMeta(task, self.provider, self.model, self.prompt_version)
        try:
            value = schema.model_validate(answer, context={"ticket": context})
        except ValidationError as exc:
            error = f"the offline rules produced an invalid {task}: {exc.errors()[0]['msg']}"
            return Reasoned(
                value=None, calls=[meta.record(started, INVALID_OUTPUT, error)], error=error
            )
        return Reasoned(value=value, calls=[meta.record(started, OK)])


_NAME = re.compile("^[^\\W\\d_](?:[^\\W\\d_]|['\\u2019.-]){0,40}$")


def _greetable(display_name: str) -> str:
    """The first word of the sender's display name when it looks like a name ("Ana", "Zoë",
    "O'Neill", "Jean-Luc"); markup, addresses or numbers get the anonymous greeting instead
    of being echoed into a reply."""
    words = display_name.split()
    first = words[0].strip(",") if words else ""
    return first if _NAME.match(first) else ""
