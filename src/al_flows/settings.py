"""Base class of every settings model: pydantic validation, unknown keys forbidden, and
monty-style ``as_dict``/``from_dict`` so Makers holding settings survive FireWorks'
serialisation of Firework specs (which knows MSONable objects, not pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def check_positive_temperatures(v: list[float]) -> list[float]:
    """Temperatures in Kelvin: every one above 0 (an empty list passes; min_length says otherwise)."""
    if any(t <= 0 for t in v):
        raise ValueError("temperatures must be positive (Kelvin)")
    return v


Temperatures = Annotated[list[float], AfterValidator(check_positive_temperatures)]
"""A list of temperatures (K), each checked to be above 0."""


class Settings(BaseModel):
    """Strict pydantic settings that also serialise like a monty MSONable object."""

    model_config = ConfigDict(extra="forbid")

    def as_dict(self) -> dict:
        """monty-style dict: ``@module``, ``@class`` and the fields in JSON mode."""
        return {"@module": type(self).__module__, "@class": type(self).__name__, **self.model_dump(mode="json")}

    def given(self, names) -> set[str]:
        """Those of ``names`` set to something other than their default: keys a user gave. A stored
        copy of the settings (every field written out, e.g. a work directory's campaign.json) gives
        the defaults back, and those do not count, so it validates again as the original did."""
        fields = type(self).model_fields
        return {
            n
            for n in names
            if n in self.model_fields_set and getattr(self, n) != fields[n].get_default(call_default_factory=True)
        }

    @classmethod
    def from_dict(cls, d: dict):
        """Validated settings from :meth:`as_dict`'s dict (``@`` keys ignored)."""
        return cls.model_validate({k: v for k, v in d.items() if not k.startswith("@")})
