"""The benchmarks' side of `bench/gmail_process.py`: start the Gmail test server in its own
process, point the settings at it, connect a mailbox to it, and read back what it was sent.

Kept apart from the server module so the measuring process never imports the server (its
memory would count in the measured peak).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from communication_agent.core.config import Settings
from communication_agent.services import mailboxes
from communication_agent.services.actors import Actor

ROOT = Path(__file__).parent.parent
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"  # noqa: S105 (a throwaway benchmark key)


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    thread_id: str


class GmailProcess:
    """`with GmailProcess(n, mix) as gmail:`; `gmail.ready` holds the server's URLs and
    credentials; `gmail.stop()` ends it and returns every message it was asked to send."""

    def __init__(self, messages: int, mix: str = "support") -> None:
        command = [sys.executable, "-m", "bench.gmail_process", "--messages", str(messages)]
        self.process = subprocess.Popen(  # noqa: S603
            [*command, "--mix", mix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            raise RuntimeError(f"the Gmail server exited ({self.process.returncode}) on start")
        self.ready: dict[str, str] = json.loads(line)

    def __enter__(self) -> GmailProcess:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self.process.returncode is None:
            self.stop()

    def stop(self) -> list[SentMessage]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        line = self.process.stdout.readline()
        self.process.wait(timeout=30)
        if not line:
            raise RuntimeError(f"the Gmail server exited ({self.process.returncode}) unasked")
        return [SentMessage(message_id, thread) for message_id, thread in json.loads(line)["sent"]]


def gmail_settings(database_url: str, gmail: dict[str, str]) -> Settings:
    """The app's settings for `database_url`, with Gmail and Google's token endpoint on the
    test server; a ten-year sync window, since the mixes' mail is dated in 2026."""
    return Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=SECRET,
        gmail_api_url=gmail["api_url"],
        google_token_url=gmail["token_url"],
        google_client_id=gmail["client_id"],
        google_client_secret=SecretStr(gmail["client_secret"]),
        gmail_sync_window_days=3650,
    )


async def connect_mailbox(
    sessionmaker: async_sessionmaker[AsyncSession], gmail: dict[str, str]
) -> int:
    """Connect the server's mailbox as an operator would (refresh token stored encrypted)."""
    async with sessionmaker() as session:
        mailbox = await mailboxes.connect_gmail(
            session,
            Actor.system("bench"),
            address=gmail["address"],
            refresh_token=gmail["refresh_token"],
            secret_key=SECRET,
        )
    return mailbox.id
