"""Base class of every settings model: pydantic validation, unknown keys forbidden, and
monty-style ``as_dict``/``from_dict`` so Makers holding settings survive FireWorks'
serialisation of Firework specs (which knows MSONable objects, not pydantic)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """Strict pydantic settings that also serialise like a monty MSONable object."""

    model_config = ConfigDict(extra="forbid")

    def as_dict(self) -> dict:
        return {"@module": type(self).__module__, "@class": type(self).__name__, **self.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, d: dict):
        return cls.model_validate({k: v for k, v in d.items() if not k.startswith("@")})
