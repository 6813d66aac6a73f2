"""Who is acting: a signed-in user, an API token, or a named system component."""

from __future__ import annotations

from dataclasses import dataclass

from communication_agent.models.enums import ActorType, Role


@dataclass(frozen=True)
class Actor:
    type: ActorType
    name: str
    user_id: int | None = None
    token_id: int | None = None
    role: Role | None = None

    @classmethod
    def system(cls, component: str) -> Actor:
        """A background component, recorded in the log as `system:<component>`."""
        return cls(type=ActorType.SYSTEM, name=f"system:{component}", role=Role.ADMIN)

    @property
    def label(self) -> str:
        return self.name if self.type is ActorType.SYSTEM else f"{self.type.value}:{self.name}"
