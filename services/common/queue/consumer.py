"""What a queue worker runs: a consumer (its name and handlers) and its tuning."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.contracts.events import Envelope
from services.common.settings import Settings

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[Envelope]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named consumer: `handler(session, envelope)` applies one event on the worker's session.
    It must not commit, and must not call out of the database (the transaction is open).

    With a `batch_handler`, a claimed batch's new events (oldest first) are applied by one call
    of it instead (a few statements for the whole batch, not a few per event); it must leave the
    database as `handler` applied to each event in turn would. When it fails, the batch is
    rolled back and applied again event by event with `handler`, as without it."""

    name: str
    handler: Handler
    batch_handler: BatchHandler | None = None


@dataclass(frozen=True, slots=True)
class QueueTuning:
    batch_size: int = 50
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    max_attempts: int = 8
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    #: First wait before the listener reconnects; it doubles up to `reconnect_max_seconds`
    #: (kept short: readiness waits for the listeners after a database restart).
    reconnect_seconds: float = 0.5
    reconnect_max_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueTuning:
        """Each field with a `queue_<field>` setting takes it; the others keep their defaults."""
        return cls(
            **{
                f.name: getattr(settings, f"queue_{f.name}")
                for f in dataclasses.fields(cls)
                if hasattr(settings, f"queue_{f.name}")
            }
        )

    @property
    def hang_limit_ms(self) -> int:
        """How long a batch's transaction may sit idle (a handler hanging outside the database)
        before PostgreSQL ends it: the lease, so the lease holds for a hung handler too."""
        return max(1, round(self.lease_seconds * 1000))

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with jitter: half to all of base * 2^(attempts-1), capped."""
        step = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** max(0, attempts - 1))
        return float(step * random.uniform(0.5, 1.0))
