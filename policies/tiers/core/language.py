"""LanguageCommand: an instruction handed between tiers or from a person, with its provenance.

Commands are immutable. A correction does not edit the command it corrects; it names it in
``replaces``, so the chain of what was said, by whom and when is kept for the corrections dataset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle


@dataclass(frozen=True)
class LanguageCommand:
    """One instruction.

    Attributes:
        text: what was said, e.g. "pick up the red cup" or "move arm left".
        style: which tier it addresses (subtask, motion, correction, stop).
        source: who said it (planner, human_live, auto_label, ...).
        timestamp: s on the runtime clock (sim or robot) when it was issued.
        replaces: the command this one supersedes, if any (a correction names what it corrects).
        id: unique id, for logs and for ``replaces`` links across processes.
    """

    text: str
    style: CommandStyle
    source: CommandSource
    timestamp: float
    replaces: LanguageCommand | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        text = " ".join(str(self.text).split())
        if not text:
            raise ContractError("LanguageCommand.text is empty")
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "style", _enum(CommandStyle, self.style, "style"))
        object.__setattr__(self, "source", _enum(CommandSource, self.source, "source"))
        object.__setattr__(self, "timestamp", float(self.timestamp))

    def history(self) -> Iterator[LanguageCommand]:
        """This command, then the one it replaces, and so on back to the first."""
        command: LanguageCommand | None = self
        while command is not None:
            yield command
            command = command.replaces

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``replaces`` is stored by id to keep log lines flat."""
        return {
            "id": self.id,
            "text": self.text,
            "style": self.style.value,
            "source": self.source.value,
            "timestamp": self.timestamp,
            "replaces": self.replaces.id if self.replaces else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], known: Mapping[str, LanguageCommand] | None = None) -> LanguageCommand:
        """Inverse of :meth:`to_dict`; ``known`` maps ids to already-read commands to relink ``replaces``."""
        replaces_id = data.get("replaces")
        replaces = None
        if replaces_id is not None:
            if known is None or replaces_id not in known:
                raise ContractError(f"command {data.get('id')!r} replaces unknown command id {replaces_id!r}")
            replaces = known[replaces_id]
        return cls(
            text=data["text"],
            style=data["style"],
            source=data["source"],
            timestamp=data["timestamp"],
            replaces=replaces,
            id=data["id"],
        )


def _enum[E: (CommandStyle, CommandSource)](kind: type[E], value: object, name: str) -> E:
    try:
        return kind(str(value))
    except ValueError:
        raise ContractError(
            f"LanguageCommand.{name} must be one of {[member.value for member in kind]}, got {value!r}"
        ) from None
