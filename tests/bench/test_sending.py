"""The sending benchmark's check: a run counts only if each approved reply reached Gmail
exactly once, in its question's thread; every other outcome is named."""

from __future__ import annotations

from bench.gmail_mailbox import SentMessage
from bench.sending import Outbox, problems

THREADS = {"<a@x>": "t1", "<b@x>": "t2", "<c@x>": "t3"}
ALL_SENT = Outbox(entries={"sent": 3}, drafts={"sent": 3}, max_attempts=1, threads=THREADS)


def _received(*pairs: tuple[str, str]) -> list[SentMessage]:
    return [SentMessage(message_id, thread) for message_id, thread in pairs]


def test_each_reply_once_in_its_thread_is_no_problem() -> None:
    assert problems(3, ALL_SENT, _received(*THREADS.items())) == []


def test_a_reply_sent_twice_is_named() -> None:
    twice = _received(*THREADS.items(), ("<a@x>", "t1"))
    assert problems(3, ALL_SENT, twice) == [
        "1 replies reached Gmail more than once, e.g. <a@x>",
        "1 threads got more than one reply, e.g. t1",
    ]


def test_lost_misplaced_and_unrecorded_replies_are_named() -> None:
    received = _received(("<a@x>", "t1"), ("<b@x>", "t3"), ("<z@x>", "t9"))
    assert problems(3, ALL_SENT, received) == [
        "1 messages reached Gmail that the outbox did not record",
        "1 replies recorded as sent never reached Gmail",
        "1 replies went to another thread than their question's",
    ]


def test_an_entry_held_or_failed_is_named_even_when_gmail_looks_right() -> None:
    held = Outbox({"sent": 2, "held": 1}, {"sent": 2, "edited": 1}, 1, dict(THREADS))
    assert problems(3, held, _received(*THREADS.items())) == [
        "outbox entries {'sent': 2, 'held': 1}, expected 3 sent",
        "drafts {'sent': 2, 'edited': 1}, expected 3 sent",
    ]
