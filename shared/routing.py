"""Aliases and traffic split of one model: ``<name>/aliases.json`` in the model repository.

``{"aliases": {"production": 2, "candidate": 3}, "weights": {"production": 90, "candidate": 10}}``

An alias names a version (``production``, ``staging``, any name); a job may ask for one instead
of a number and keeps the number it resolved to. Unpinned jobs go by the weights when there are
any, else to ``production`` when it is set, else to the newest version. Weights name aliases, so
moving an alias moves its traffic, and one call (weights back to ``{"production": 100}``, or
``production`` pointed back) rolls a rollout back.
"""

from __future__ import annotations

import random
import re
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, model_validator

ALIAS_MAX = 64
# A letter first, so an alias can never be read as a version number.
ALIAS_PATTERN = rf"^[A-Za-z][A-Za-z0-9_-]{{0,{ALIAS_MAX - 1}}}$"
ALIAS_RE = re.compile(ALIAS_PATTERN)
ROUTING_FILE = "aliases.json"
PRODUCTION = "production"

AliasName = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN, max_length=ALIAS_MAX, strict=True)]
# (unbounded here: an alias can only be set to a version the repository has)
Version = Annotated[int, Field(ge=1, strict=True)]
Weight = Annotated[int, Field(ge=0, le=100, strict=True)]


class AliasSet(BaseModel):
    """The body of ``POST /v1/models/{m}/aliases/{alias}``."""

    model_config = {"extra": "forbid"}
    version: Version = Field(..., description="The version the alias points at.")


class TrafficSplit(BaseModel):
    """The body of ``POST /v1/models/{m}/traffic``: percent of unpinned jobs per alias, summing to
    100; ``{}`` removes the split (unpinned jobs follow ``production`` again)."""

    model_config = {"extra": "forbid"}
    weights: dict[AliasName, Weight] = Field(..., max_length=16)

    @model_validator(mode="after")
    def _sums_to_100(self) -> TrafficSplit:
        if self.weights and sum(self.weights.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(self.weights.values())}")
        return self


class Routing(BaseModel):
    """What ``aliases.json`` holds."""

    aliases: dict[AliasName, Version] = {}
    weights: dict[AliasName, Weight] = {}
    updated_at: str = ""

    @property
    def routes(self) -> bool:
        """Whether unpinned jobs go by these aliases (else: to the newest version)."""
        return bool(self.weights) or PRODUCTION in self.aliases

    def pick(self, servable: set[int] | None = None, rng: random.Random | None = None) -> int | None:
        """The version an unpinned job goes to: drawn by weight among the aliases whose version is
        servable (a canary no worker has loaded yet gets no share), else ``production`` if servable;
        None when nothing these aliases route to can serve."""
        ok = {a: v for a, v in self.aliases.items() if servable is None or v in servable}
        weighted = [(ok[a], w) for a, w in self.weights.items() if w > 0 and a in ok]
        if weighted:
            versions = [v for v, _ in weighted]
            return (rng or random).choices(versions, [w for _, w in weighted])[0]
        return ok.get(PRODUCTION)
