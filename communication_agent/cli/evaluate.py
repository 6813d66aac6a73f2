"""`commagent eval triage|replay`: judge a prompt, model or rules change before it ships."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.cli.runtime import configured, console, load_settings, run_on_engine
from communication_agent.core.db import create_sessionmaker
from communication_agent.core.migrations import ensure_schema
from communication_agent.services import evaluation
from communication_agent.services.assistant import AssistantConfig
from communication_agent.services.errors import InvalidInputError

app = typer.Typer(help="Measure the reasoning backend (COMMAGENT_LLM_PROVIDER).")
stdout = console()
JsonOption = Annotated[bool, typer.Option("--json", help="Print the figures as JSON last.")]


@app.command("triage")
def eval_triage(
    path: Annotated[Path, typer.Argument(help="Labelled JSON Lines (see the README).")],
    as_json: JsonOption = False,
) -> None:
    """Accuracy of category, priority and needs_reply over a labelled set."""
    settings = load_settings()
    model = configured(lambda: reasoning_model(settings))

    async def run(_engine: AsyncEngine) -> evaluation.TriageReport:
        try:
            emails = evaluation.read_labelled(path)
            return await evaluation.evaluate_triage(model, emails, settings.categories)
        finally:
            await model.aclose()

    try:
        report = run_on_engine(settings, run)
    except InvalidInputError as exc:  # pragma: no cover  (run_on_engine reports it)
        raise typer.Exit(1) from exc
    table = Table(title=f"{model.provider}/{model.model} on {report.n} emails")
    table.add_column("field")
    table.add_column("accuracy", justify="right")
    for name in evaluation.FIELDS:
        table.add_row(name, f"{report.accuracy(name):.1%}")
    stdout.print(table)
    if report.failures:
        stdout.print(f"{report.failures} triage call(s) failed (counted as wrong)")
    stdout.print(_confusion(report))
    if as_json:
        print(json.dumps(report.summary()))


def _confusion(report: evaluation.TriageReport) -> Table:
    expected = sorted({e for e, _g in report.confusion})
    got = sorted({g for _e, g in report.confusion})
    table = Table(title="category confusion (rows: expected, columns: got)")
    table.add_column("expected")
    for name in got:
        table.add_column(name, justify="right")
    for row in expected:
        counts = [report.confusion.get((row, column), 0) for column in got]
        table.add_row(row, *(str(c) if c else "." for c in counts))
    return table


@app.command("replay")
def eval_replay(
    limit: Annotated[int, typer.Option(help="Tickets to replay (newest first).", min=1)] = 200,
    as_json: JsonOption = False,
) -> None:
    """Re-draft replies operators already sent; how far are the drafts from them?"""
    settings = load_settings()
    model = configured(lambda: reasoning_model(settings))
    config = configured(lambda: AssistantConfig.from_settings(settings))

    async def run(engine: AsyncEngine) -> evaluation.ReplayReport:
        try:
            await ensure_schema(engine, auto_migrate=settings.should_auto_migrate)
            async with create_sessionmaker(engine)() as session:
                return await evaluation.replay_drafts(session, model, config, limit=limit)
        finally:
            await model.aclose()

    summary = run_on_engine(settings, run).summary()
    table = Table(title=f"{model.provider}/{model.model}: drafts vs. sent replies")
    table.add_column("category")
    table.add_column("tickets", justify="right")
    table.add_column("mean distance", justify="right")
    for category, figures in summary["by_category"].items():
        table.add_row(category, str(figures["n"]), f"{figures['mean_distance']:.3f}")
    stdout.print(table)
    if not summary["n"]:
        stdout.print("no ticket has a reply sent by an operator yet: nothing to compare")
    if as_json:
        print(json.dumps(summary))
