"""The steering lever: activation-addition vectors named in an expansion (``Steer``: the name and coefficient a
person gives; the layer, model, norm and numbers filled in from the store when the expansion starts). Every
steered row runs beside an unsteered twin, so each token records KL(steered ‖ unsteered) (``steer_kl``); a node's
steering bits are their sum."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..tree import Node
from .decoding import recorded


class Steer(BaseModel):
    """A steering vector by name with its coefficient. The rest is filled from the stored vector when an expansion
    starts (steering/resolve.py); the vector's numbers never go into the generation record (its name, layer, norm
    and model do)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    coef: float = Field(ge=-1000.0, le=1000.0, allow_inf_nan=False)
    layer: int | None = None
    model: str | None = None
    norm: float | None = None
    vector: tuple[float, ...] | None = Field(None, exclude=True)

    @classmethod
    def parse(cls, spec) -> "Steer":
        """From ``"NAME=COEF"`` (the CLI) or a mapping (the API)."""
        if isinstance(spec, str):
            name, sep, coef = spec.rpartition("=")
            if not sep or not name:
                raise ValueError(f"steering must be NAME=COEF, not {spec!r}")
            try:
                value = float(coef)
            except ValueError:
                raise ValueError(f"the coefficient of {name!r} is not a number: {coef!r}") from None
            return cls(name=name, coef=value)
        return spec if isinstance(spec, cls) else cls(**spec)


def steering_bits(node: Node, gen: dict | None) -> tuple[float | None, str | None]:
    if node.origin != "model" or "alternative_of" in node.meta:
        return 0.0, None
    steer = ((gen or {}).get("params") or {}).get("steer") or node.meta.get("steered") or []
    if not any(s.get("coef") for s in steer):
        return (0.0, None) if gen is not None else (None, "no generation record (imported)")
    total = recorded(node, "steer_kl")
    if total is None:
        return None, "steered, but the tokens lack the unsteered distribution"
    return total, None
