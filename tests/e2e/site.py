"""The console as an operator installs it: users and mail set up with the real `commagent`
commands, then `commagent serve` with its background loops (triage, drafting, sending)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from communication_agent.models.enums import Role
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.mail_folder import Story, write_mail_folder
from tests.live_server import COMMAGENT, cli_environment, live_server

MAILBOX_ADDRESS = "support@example.com"
READY_SECONDS = 40


@dataclass(frozen=True)
class Person:
    email: str
    password: str
    name: str
    role: Role


OPERATOR = Person("olivia@example.com", "operator-pass-4417", "Olivia Operator", Role.OPERATOR)
VIEWER = Person("victor@example.com", "viewer-pass-2291", "Victor Viewer", Role.VIEWER)


@dataclass(frozen=True)
class ConsoleSite:
    """A running console: where it listens, its mail folder, and its tickets by story key."""

    base_url: str
    mail_folder: Path
    api_token: str  # the viewer's: reading state through the API never changes it
    tickets: dict[str, int]
    log_path: Path

    def api(self, path: str) -> Any:
        response = httpx.get(
            f"{self.base_url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def ticket(self, key: str) -> dict[str, Any]:
        """The ticket of a story as the API shows it (messages, notes, triage, latest draft)."""
        detail: dict[str, Any] = self.api(f"/tickets/{self.tickets[key]}")
        return detail


class _Command:
    """A `commagent` command started now, its output collected by `result()`; several run at
    once (each one's start-up, imports and all, takes a while on a busy machine)."""

    def __init__(self, *args: str, env: dict[str, str], stdin: str = "") -> None:
        self.args = args
        self.process = subprocess.Popen(
            [COMMAGENT, *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdin = stdin

    def result(self) -> str:
        stdout, stderr = self.process.communicate(self.stdin, timeout=120)
        assert self.process.returncode == 0, (
            f"commagent {' '.join(self.args)} failed:\n{stdout}{stderr}"
        )
        return stdout


def _create_user(person: Person, env: dict[str, str]) -> _Command:
    return _Command(
        "users", "create", person.email, "--role", person.role.value, "--name", person.name,
        env=env, stdin=person.password + "\n",
    )  # fmt: skip


def _check_import(output: str, mail: list[Story]) -> None:
    counts = json.loads(output.strip().splitlines()[-1])
    assert counts["new_tickets"] == len(mail), counts


def _ticket_ids(site: ConsoleSite, mail: list[Story]) -> dict[str, int]:
    by_subject = {t["subject"]: t["id"] for t in site.api("/tickets?limit=100")["items"]}
    return {story.key: by_subject[story.subject] for story in mail}


def _reasoned(site: ConsoleSite, mail: list[Story]) -> bool:
    """Every ticket triaged, and those the tests act on drafted."""
    for story in mail:
        detail = site.ticket(story.key)
        if detail["latest_triage"] is None:
            return False
        if story.needs_draft and detail["latest_draft"] is None:
            return False
    return True


def _wait_for_reasoning(site: ConsoleSite, mail: list[Story]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not _reasoned(site, mail):
        if time.monotonic() > deadline:
            states = {s.key: site.ticket(s.key) for s in mail}
            summary = {
                k: (d["state"], bool(d["latest_triage"]), bool(d["latest_draft"]))
                for k, d in states.items()
            }
            raise AssertionError(
                f"the tickets were not triaged and drafted in {READY_SECONDS} s: {summary}\n"
                f"{site.log_path.read_text()[-4000:]}"
            )
        time.sleep(0.2)


@contextmanager
def console_site(workdir: Path, database_url: str, mail: list[Story]) -> Iterator[ConsoleSite]:
    """Set up users and mail with the CLI, serve, and yield once the model has done its work."""
    folder = workdir / "mail"
    write_mail_folder(folder, mail)
    env = cli_environment(
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,
        data_dir=str(workdir / "data"),
        llm_provider="offline",
        reasoning_enabled="true",
        reasoning_interval_seconds="0.2",
        send_delay_seconds="0",
        sender_interval_seconds="0.5",
    )
    imported = _Command(
        "import", str(folder), "--mailbox", "demo", "--address", MAILBOX_ADDRESS, "--json", env=env
    )
    users = [_create_user(OPERATOR, env), _create_user(VIEWER, env)]
    _check_import(imported.result(), mail)
    for created in users:
        created.result()
    issued = _Command("tokens", "create", VIEWER.email, "--name", "e2e checks", env=env)
    log_path = workdir / "serve.log"
    with live_server(env, log_path) as base_url:
        token = issued.result().strip().splitlines()[-1]
        site = ConsoleSite(base_url, folder, token, tickets={}, log_path=log_path)
        site = replace(site, tickets=_ticket_ids(site, mail))
        _wait_for_reasoning(site, mail)
        yield site
