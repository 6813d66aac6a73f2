import mailbox as mailbox_formats
from pathlib import Path

import pytest

from communication_agent.adapters.local_folder import PAGE_SIZE, LocalFolderProvider
from communication_agent.adapters.mail_provider import MessageFetchError, MessageRef, ProviderError
from tests.mail import raw_email


async def _all_ids(provider: LocalFolderProvider) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = await provider.list_changes(None, token)
        ids += [r.provider_message_id for r in page.refs]
        if page.next_page_token is None:
            return ids
        token = page.next_page_token


async def test_eml_files_maildir_and_mbox_in_one_folder(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(raw_email(message_id="<a@x>"))
    maildir = mailbox_formats.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(raw_email(message_id="<m@x>"))
    box = mailbox_formats.mbox(tmp_path / "archive.mbox")
    box.add(raw_email(message_id="<b1@x>"))
    box.add(raw_email(message_id="<b2@x>"))
    box.flush()
    (tmp_path / "notes.txt").write_text("not mail")
    provider = LocalFolderProvider(tmp_path, "support@company.example")
    ids = await _all_ids(provider)
    assert "a.eml" in ids
    assert sorted(i for i in ids if i.startswith("archive.mbox#")) == [
        "archive.mbox#0",
        "archive.mbox#1",
    ]
    assert any(i.startswith("Maildir/new/") for i in ids)
    assert len(ids) == 4
    raws = [(await provider.fetch(MessageRef(i))).raw for i in ids]
    assert any(b"<b2@x>" in raw for raw in raws)
    assert any(b"<m@x>" in raw for raw in raws)


async def test_a_single_mbox_file_is_a_mailbox(tmp_path: Path) -> None:
    box = mailbox_formats.mbox(tmp_path / "one.mbox")
    box.add(raw_email(message_id="<only@x>"))
    box.flush()
    provider = LocalFolderProvider(tmp_path / "one.mbox", "s@x.org")
    [ref] = (await provider.list_changes(None, None)).refs
    assert b"<only@x>" in (await provider.fetch(ref)).raw


async def test_listing_pages_through_large_folders(tmp_path: Path) -> None:
    for i in range(PAGE_SIZE + 5):
        (tmp_path / f"{i:04}.eml").write_bytes(b"From: a@x.org\n\nhi")
    provider = LocalFolderProvider(tmp_path, "s@x.org")
    first = await provider.list_changes(None, None)
    assert len(first.refs) == PAGE_SIZE
    assert first.next_page_token is not None
    assert len(await _all_ids(provider)) == PAGE_SIZE + 5


async def test_send_writes_into_sent_and_such_mail_counts_as_ours(tmp_path: Path) -> None:
    provider = LocalFolderProvider(tmp_path, "s@x.org")
    ref = await provider.send(raw_email(sender="s@x.org"), thread_id=None)
    assert ref.provider_message_id.startswith("sent/")
    fetched = await provider.fetch(ref)
    assert fetched.sent_by_mailbox
    assert ref.provider_message_id in await _all_ids(provider)


async def test_ids_cannot_escape_the_folder_and_missing_folders_are_reported(
    tmp_path: Path,
) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "secret.eml").write_bytes(b"From: a@x.org\n\nsecret")
    provider = LocalFolderProvider(tmp_path / "inbox", "s@x.org")
    with pytest.raises(MessageFetchError, match="outside the mail folder"):
        await provider.fetch(MessageRef("../secret.eml"))
    with pytest.raises(MessageFetchError):
        await provider.fetch(MessageRef("missing.eml"))
    with pytest.raises(ProviderError, match="does not exist"):
        await LocalFolderProvider(tmp_path / "nowhere", "s@x.org").list_changes(None, None)
