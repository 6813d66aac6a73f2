"""A folder of mail on disk as a mailbox: a directory of `.eml` files, a Maildir, or an mbox file.

Used for the demo and for importing history. Provider ids are stable paths (`path/to/file.eml`,
`cur/1234.host:2,S`, `archive.mbox#17`), so re-importing finds every message again and dedupe
makes it a no-op. Messages under a `sent/` directory, where `send` writes, count as sent by the
mailbox. The folder is rescanned every time: it has no change feed, so there is no checkpoint.
"""

from __future__ import annotations

import asyncio
import mailbox as mailbox_formats
import re
from datetime import UTC, datetime
from email.utils import make_msgid
from pathlib import Path

from communication_agent.adapters.mail_provider import (
    ChangePage,
    FetchedMessage,
    MailboxProfile,
    MessageFetchError,
    MessageRef,
    ProviderError,
    fetch_each,
)

PAGE_SIZE = 200


def _sent_name(message_id_header: str) -> str:
    """A safe file name for a Message-ID (no path separators, no leading dots)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", message_id_header.strip("<> ")).lstrip(".") + ".eml"


SENT_DIR = "sent"
_MBOX_SEPARATOR = "#"


class LocalFolderProvider:
    def __init__(self, path: Path, address: str) -> None:
        self.path = path
        self.address = address

    async def profile(self) -> MailboxProfile:
        return MailboxProfile(address=self.address, checkpoint=None)

    async def list_changes(self, checkpoint: str | None, page_token: str | None) -> ChangePage:
        ids = await asyncio.to_thread(self._all_ids)
        start = int(page_token or 0)
        end = start + PAGE_SIZE
        refs = [MessageRef(provider_message_id=i) for i in ids[start:end]]
        return ChangePage(
            refs=refs, next_page_token=str(end) if end < len(ids) else None, checkpoint=None
        )

    async def fetch(self, ref: MessageRef) -> FetchedMessage:
        try:
            raw, mtime = await asyncio.to_thread(self._read, ref.provider_message_id)
        except (OSError, KeyError, ValueError) as exc:
            raise MessageFetchError(f"cannot read {ref.provider_message_id}: {exc}") from exc
        sent = ref.provider_message_id.split("/", 1)[0] == SENT_DIR
        return FetchedMessage(ref=ref, raw=raw, received_at=mtime, sent_by_mailbox=sent)

    async def fetch_many(self, refs: list[MessageRef]) -> list[FetchedMessage | MessageFetchError]:
        return await fetch_each(self.fetch, refs)

    async def send(self, raw: bytes, thread_id: str | None) -> MessageRef:
        """Write the message into `sent/`, named after its Message-ID (so `find_sent` finds it,
        and sending the same message twice writes one file)."""
        sent_dir = self._root_dir() / SENT_DIR
        found = re.search(rb"(?im)^message-id:\s*(<[^>\r\n]+>)", raw)
        name = (
            _sent_name(found.group(1).decode("ascii", "replace"))
            if found
            else make_msgid(domain="local").strip("<>").replace("@", "_") + ".eml"
        )
        await asyncio.to_thread(sent_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread((sent_dir / name).write_bytes, raw)
        return MessageRef(provider_message_id=f"{SENT_DIR}/{name}", thread_id=thread_id)

    async def find_sent(self, message_id_header: str) -> MessageRef | None:
        name = _sent_name(message_id_header)
        path = self._root_dir() / SENT_DIR / name
        exists = await asyncio.to_thread(path.exists)
        return MessageRef(provider_message_id=f"{SENT_DIR}/{name}") if exists else None

    async def aclose(self) -> None:
        return None

    def _root_dir(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent

    def _all_ids(self) -> list[str]:
        if not self.path.exists():
            raise ProviderError(f"the mail folder {self.path} does not exist")
        if self.path.is_file():
            return [f"{self.path.name}{_MBOX_SEPARATOR}{key}" for key in self._mbox_keys(self.path)]
        ids: list[str] = []
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            relative = file.relative_to(self.path).as_posix()
            if file.suffix.lower() == ".mbox":
                ids.extend(f"{relative}{_MBOX_SEPARATOR}{key}" for key in self._mbox_keys(file))
            elif file.suffix.lower() == ".eml" or file.parent.name in {"cur", "new"}:
                ids.append(relative)
        return ids

    @staticmethod
    def _mbox_keys(file: Path) -> list[str]:
        box = mailbox_formats.mbox(file, create=False)
        try:
            return [str(key) for key in box.iterkeys()]
        finally:
            box.close()

    def _read(self, provider_id: str) -> tuple[bytes, datetime]:
        if _MBOX_SEPARATOR in provider_id:
            relative, key = provider_id.rsplit(_MBOX_SEPARATOR, 1)
            file = self.path if self.path.is_file() else self._inside(relative)
            box = mailbox_formats.mbox(file, create=False)
            try:
                raw = box.get_bytes(int(key))  # type: ignore[arg-type]  # mbox keys are ints (typeshed says str)
            finally:
                box.close()
            return raw, datetime.fromtimestamp(file.stat().st_mtime, UTC)
        file = self._inside(provider_id)
        return file.read_bytes(), datetime.fromtimestamp(file.stat().st_mtime, UTC)

    def _inside(self, relative: str) -> Path:
        """Resolve an id to a path inside the folder; ids are ours, but never trust a path."""
        candidate = (self.path / relative).resolve()
        if not candidate.is_relative_to(self.path.resolve()):
            raise ValueError("path outside the mail folder")
        return candidate
