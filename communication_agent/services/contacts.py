"""Customers, identified by their email address."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from communication_agent.models import Contact


async def find_or_create_contact(session: AsyncSession, address: str, name: str) -> Contact:
    """The contact for `address` (lower-cased); a missing display name is filled in."""
    address = address.strip().lower()
    contact = await session.scalar(select(Contact).where(Contact.email == address))
    if contact is None:
        contact = Contact(email=address, name=name)
        session.add(contact)
        await session.flush()
    elif name and not contact.name:
        contact.name = name
    return contact
