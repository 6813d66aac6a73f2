"""Attachment content, extracted on demand from the raw message we keep (never stored twice)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Attachment, MessageSource
from communication_agent.services.errors import NotFoundError


@dataclass(frozen=True)
class AttachmentContent:
    filename: str
    content_type: str
    data: bytes


async def attachment_content(
    session: AsyncSession, message_id: int, attachment_id: int
) -> AttachmentContent:
    attachment = await session.scalar(
        select(Attachment).where(
            Attachment.id == attachment_id, Attachment.message_id == message_id
        )
    )
    source = await session.get(MessageSource, message_id)
    if attachment is None or source is None:
        raise NotFoundError(
            f"Message {message_id} has no attachment {attachment_id}.",
            message_id=message_id,
            attachment_id=attachment_id,
        )
    message = email.message_from_bytes(source.raw, policy=email.policy.default)
    parts = list(message.walk())
    if attachment.part_index >= len(parts):
        raise NotFoundError(f"Attachment {attachment_id} is no longer in the stored message.")
    payload = parts[attachment.part_index].get_payload(decode=True)
    return AttachmentContent(
        filename=attachment.filename,
        content_type=attachment.content_type,
        data=payload if isinstance(payload, bytes) else b"",
    )
