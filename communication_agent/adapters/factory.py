"""Choosing the concrete mail provider for a mailbox: the one place that knows them all."""

from __future__ import annotations

from pathlib import Path

from communication_agent.adapters.local_folder import LocalFolderProvider
from communication_agent.adapters.mail_provider import MailProvider, ProviderError, ProviderOpener
from communication_agent.core.config import Settings
from communication_agent.models import Mailbox
from communication_agent.models.enums import MailProvider as ProviderKind


def provider_opener(settings: Settings) -> ProviderOpener:
    """A `ProviderOpener` bound to this process's settings."""

    async def open_provider(mailbox: Mailbox) -> MailProvider:
        if mailbox.provider == ProviderKind.LOCAL.value:
            path = mailbox.config.get("path")
            if not path:
                raise ProviderError(f"mailbox {mailbox.name} has no folder configured")
            return LocalFolderProvider(Path(path), mailbox.address)
        raise ProviderError(
            f"mailbox {mailbox.name} uses the unsupported provider {mailbox.provider!r}"
        )

    return open_provider
