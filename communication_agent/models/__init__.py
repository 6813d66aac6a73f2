"""SQLAlchemy entities (storage) and, under `schemas/`, Pydantic schemas (the API contract).

Importing this package registers every entity on `Base.metadata`, which Alembic compares against.
"""

from communication_agent.models.activity import ActivityEntry
from communication_agent.models.base import Base
from communication_agent.models.mail import (
    Attachment,
    Contact,
    Mailbox,
    Message,
    MessageSource,
    QuarantinedMessage,
    SyncError,
)
from communication_agent.models.reasoning import ModelCall, ReasoningTask
from communication_agent.models.sending import OutboxEntry
from communication_agent.models.tickets import Draft, DraftVersion, Note, Ticket, TriageResult
from communication_agent.models.users import ApiToken, User
from communication_agent.models.web_sessions import LoginFailure, WebSession
from communication_agent.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ActivityEntry",
    "ApiToken",
    "Attachment",
    "Base",
    "Contact",
    "Draft",
    "DraftVersion",
    "LoginFailure",
    "Mailbox",
    "Message",
    "MessageSource",
    "ModelCall",
    "Note",
    "OutboxEntry",
    "QuarantinedMessage",
    "ReasoningTask",
    "SyncError",
    "Ticket",
    "TriageResult",
    "User",
    "WebSession",
    "WebhookDelivery",
    "WebhookEndpoint",
]
