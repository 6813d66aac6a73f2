"""Reasoning benchmark: triage + draft throughput of the offline adapter.

    .venv/bin/python -m bench.reasoning            # 2,000 tickets
    .venv/bin/python -m bench.reasoning --n 5000
    .venv/bin/python -m bench.reasoning --n 500 --json /tmp/reasoning.json

Two figures: the adapter alone (triage and proposal for a prepared context, validation
included), and the whole background path on SQLite (claim a queued task, read the ticket,
triage, route, draft, write results, model-call records and log entries). The tickets are the
labelled development set's emails, cycled. Target: over 200 tickets/second (adapter).
`--json` also writes both figures and the process's peak RSS (both parts, set-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from communication_agent.adapters.offline_model import OfflineReasoningModel
from communication_agent.core.config import normalise_database_url
from communication_agent.core.db import begin_write, create_engine, create_sessionmaker
from communication_agent.core.migrations import upgrade
from communication_agent.models import Mailbox
from communication_agent.models.schemas.reasoning import DEFAULT_CATEGORIES
from communication_agent.services import evaluation, reasoning_tasks
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.ingestion import IncomingMessage, ingest_batch
from communication_agent.services.knowledge import KnowledgeBase

DEV_SET = Path(__file__).parent.parent / "tests" / "data" / "triage_dev.jsonl"


async def adapter(n: int) -> float:
    model = OfflineReasoningModel()
    knowledge = KnowledgeBase.load(None)
    emails = evaluation.read_labelled(DEV_SET)
    contexts = []
    for i in range(n):
        email = emails[i % len(emails)]
        context = evaluation.email_context(i + 1, email, list(DEFAULT_CATEGORIES))
        picked = knowledge.pick(f"{email.subject}\n{email.body}", None)
        contexts.append(context.model_copy(update={"knowledge": picked}))
    started = time.perf_counter()
    for context in contexts:
        triage = await model.triage(context)
        proposal = await model.propose(context)
        assert triage.value is not None, triage.error
        assert proposal.value is not None, proposal.error
    return n / (time.perf_counter() - started)


async def pipeline(n: int) -> float:
    url = normalise_database_url(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    engine = create_engine(url)
    try:
        await upgrade(engine)
        sessionmaker = create_sessionmaker(engine)
        emails = evaluation.read_labelled(DEV_SET)
        async with sessionmaker() as session:
            mailbox = Mailbox(name="bench", address="support@company.example", provider="local")
            session.add(mailbox)
            await session.commit()
        batch = [
            IncomingMessage(raw=_raw(i, emails[i % len(emails)]), provider_message_id=f"m{i}")
            for i in range(n)
        ]
        for start in range(0, n, 500):
            async with sessionmaker() as session:
                await begin_write(session)
                stored = await session.get_one(Mailbox, mailbox.id)
                await ingest_batch(session, stored, batch[start : start + 500], isolated=False)
                await session.commit()
        config = AssistantConfig(list(DEFAULT_CATEGORIES), 0.9, KnowledgeBase.load(None))
        model = OfflineReasoningModel()
        started = time.perf_counter()
        done = 0
        while True:
            count = await reasoning_tasks.run_due(
                sessionmaker, model, config, owner="bench", lease=timedelta(minutes=5), limit=500
            )
            if not count:
                break
            done += count
        return done / (time.perf_counter() - started)
    finally:
        await engine.dispose()


def _raw(i: int, email: evaluation.LabelledEmail) -> bytes:
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = "support@company.example"
    message["Subject"] = email.subject
    message["Message-ID"] = f"<bench-{i}@example.org>"
    message.set_content(email.body)
    return message.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="tickets (default 2,000)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    alone = asyncio.run(adapter(args.n))
    print(f"offline adapter, triage + draft:         {alone:8.0f} tickets/s  (n={args.n})")
    whole = asyncio.run(pipeline(min(args.n, 1000)))
    print(
        f"background path on SQLite (queue to DB): {whole:8.0f} tickets/s  (n={min(args.n, 1000)})"
    )
    if args.json:
        figures = {
            "adapter": {"n": args.n, "tickets_per_second": round(alone, 1)},
            "pipeline": {"n": min(args.n, 1000), "tickets_per_second": round(whole, 1)},
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
