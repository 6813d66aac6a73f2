"""`commagent eval`: the figures a prompt, model or rules change is judged by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from communication_agent.core.config import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.live_server import cli_environment, run_cli
from tests.mail import raw_email

DEV_SET = Path(__file__).parent.parent / "data" / "triage_dev.jsonl"


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "cli-data"),
    )


def _line(*fields: str | bool) -> str:
    sender, subject, body, category, priority, reply = fields
    return json.dumps(
        {
            "from": sender,
            "subject": subject,
            "body": body,
            "category": category,
            "priority": priority,
            "needs_reply": reply,
        }
    )


def test_eval_triage_computes_accuracy_per_field(env: dict[str, str], tmp_path: Path) -> None:
    labelled = tmp_path / "set.jsonl"
    labelled.write_text(
        "\n".join(
            [
                _line(
                    "Ann <a@example.org>",
                    "Re: login",
                    "Thanks, that worked!",
                    "other",
                    "low",
                    False,
                ),
                _line(
                    "Bea <b@example.de>",
                    "Rechnung",
                    "Sie haben meine Rechnung doppelt abgebucht, bitte erstatten.",
                    "billing",
                    "high",
                    True,
                ),
                # Deliberately mislabelled: the rules say billing, the label says bug.
                _line(
                    "Cy <c@example.org>", "Refund", "Please refund my invoice.", "bug", "low", True
                ),
            ]
        )
        + "\n"
    )
    result = run_cli("eval", "triage", str(labelled), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "n": 3,
        "category_accuracy": 0.6667,
        "priority_accuracy": 0.6667,
        "needs_reply_accuracy": 1.0,
    }
    assert "category confusion" in result.stdout


def test_the_offline_rules_hold_their_accuracy_on_the_dev_set(env: dict[str, str]) -> None:
    """A floor under the figures reported in the README: a rules edit that breaks the lexicons
    fails here (it is quality, measured on the shipped set, not speed)."""
    result = run_cli("eval", "triage", str(DEV_SET), "--json", env=env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["n"] >= 150
    assert figures["category_accuracy"] >= 0.55
    assert figures["priority_accuracy"] >= 0.55
    assert figures["needs_reply_accuracy"] >= 0.85


def test_a_broken_line_is_reported_with_its_number(env: dict[str, str], tmp_path: Path) -> None:
    labelled = tmp_path / "bad.jsonl"
    labelled.write_text(_line("a@x.org", "s", "b", "other", "low", False) + '\n{"from": "x"}\n')
    result = run_cli("eval", "triage", str(labelled), env=env)
    assert result.returncode == 1
    assert "bad.jsonl:2" in result.stderr
    assert "needs_reply" in result.stderr


def test_eval_replay_compares_new_drafts_with_sent_replies(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    (folder / "sent").mkdir(parents=True)
    (folder / "1.eml").write_bytes(
        raw_email(subject="App crash", body="The app crashes on start.", message_id="<q@x>")
    )
    (folder / "sent" / "2.eml").write_bytes(
        raw_email(
            sender="help@company.example",
            sender_name="Support",
            to="customer@example.org",
            subject="Re: App crash",
            body="Hello Casey,\n\nSorry about the crash. Which device do you use?",
            in_reply_to="<q@x>",
        )
    )
    imported = run_cli(
        "import", str(folder), "--mailbox", "hist", "--address", "help@company.example", env=env
    )
    assert imported.returncode == 0, imported.stderr
    empty = run_cli("eval", "replay", "--json", env={**env, "COMMAGENT_REASONING_ENABLED": "0"})
    assert empty.returncode == 0, empty.stderr
    figures = json.loads(empty.stdout.strip().splitlines()[-1])
    assert figures["n"] == 1
    assert 0 < figures["mean_distance"] < 1
    assert list(figures["by_category"]) == ["uncategorised"]
