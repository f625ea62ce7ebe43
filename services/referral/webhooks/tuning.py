"""The sender's tuning: retry schedule, timeout, per-endpoint concurrency, lease length."""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.common.settings import Settings

RETRY_AFTER_MAX_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SenderTuning:
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    timeout_seconds: float = 15.0
    disable_after_days: int = 5
    concurrency_per_endpoint: int = 2
    poll_seconds: float = 2.0
    max_in_flight: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderTuning:
        return cls(
            retry_schedule=tuple(float(s) for s in settings.webhook_retry_schedule),
            timeout_seconds=settings.webhook_timeout_seconds,
            disable_after_days=settings.webhook_disable_after_days,
            concurrency_per_endpoint=max(1, settings.webhook_concurrency_per_endpoint),
            poll_seconds=settings.queue_poll_seconds,
        )

    @property
    def max_attempts(self) -> int:
        """The first attempt and one per step of the schedule."""
        return len(self.retry_schedule) + 1

    @property
    def lease_seconds(self) -> float:
        """Long enough for the slowest send and its recording."""
        return self.timeout_seconds + 60.0

    def retry_delay(self, attempts: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones; None when none is left."""
        if attempts < 1 or attempts > len(self.retry_schedule):
            return None
        delay = self.retry_schedule[attempts - 1] * random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX_SECONDS))
        return delay
