"""Who submitted an intake version, when, and through what."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Author:
    """Who submitted, when, and through what (`api` or `inbound`)."""

    name: str
    at: dt.datetime
    source: str = "api"
    #: The key's (or staff account's) id; None for inbound forms, which no key sends.
    id: uuid.UUID | None = None
