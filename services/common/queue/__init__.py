"""The event queue on PostgreSQL: transactional outbox, at-least-once, idempotent consumers.

Public surface, re-exported here from the package's modules: `publish` (on the caller's session,
in its transaction), `sync_subscriptions` (run by `clinic migrate`) and `refresh_demand` in
`publish`; `Consumer` (a name and a handler) and `QueueWorker` (claims, handles, acks; wakes on
NOTIFY, polls as a fallback) in `worker`; the operator views `dead_deliveries` / `replay_dead` in
`dead` (used by `clinic events` and the admin pages); `run_retention` (with `redact_handled`, which
drops the patient data of handled events, and `prune`) in `upkeep`. The tables are in `tables`,
the metrics in `metrics`, the admin endpoints in `admin`.

How it holds its promises:
- `publish` writes the event, its permanent key and one delivery per subscribed consumer with the
  caller's session, in one statement, so a rollback leaves nothing and a commit leaves everything.
  The same statement sends a `NOTIFY` on each of those consumers' own channels (`channel_for`), so
  a consumer's workers wake for its events only, and only after the commit.
- A claim is one short statement, committed at once: `FOR UPDATE SKIP LOCKED`, `attempts + 1` and
  `available_at = now() + lease` (one column is ready time, backoff and lease at once). A worker
  killed mid-handling therefore loses nothing: the lease runs out and another worker takes it; and
  since attempts count at claim time, an event that keeps killing its worker ends up dead.
- A claimed batch is handled in one transaction: the consumer's inbox rows (event ids), the
  handlers' effects and the acks commit together, so a redelivery of an applied event has no
  second effect. The ack comes first and locks the deliveries, so a slow worker keeps its batch
  past the lease; a hung one loses its transaction once idle for longer than the lease. If a
  handler fails, the batch is rolled back and handled again with a SAVEPOINT per event, so the
  failure costs only its own event a retry (with backoff) and the rest commit.
- Handlers touch only the database (no HTTP while the transaction is open: webhooks have their own
  sender) and never commit: the worker does.
"""

from __future__ import annotations

from services.common.queue.consumer import Consumer, QueueTuning
from services.common.queue.dead import DeadDelivery, dead_deliveries, redeliver, replay_dead
from services.common.queue.listen import LISTENER_NAME, listen
from services.common.queue.publish import channel_for, publish, refresh_demand, sync_subscriptions
from services.common.queue.upkeep import prune, redact_handled, run_retention, vacuum_churn
from services.common.queue.worker import QueueWorker

__all__ = [
    "LISTENER_NAME",
    "Consumer",
    "DeadDelivery",
    "QueueTuning",
    "QueueWorker",
    "channel_for",
    "dead_deliveries",
    "listen",
    "prune",
    "publish",
    "redact_handled",
    "redeliver",
    "refresh_demand",
    "replay_dead",
    "run_retention",
    "sync_subscriptions",
    "vacuum_churn",
]
