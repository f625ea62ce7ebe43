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
- A claim is one statement, committed before any handler runs: it takes a batch of ready
  deliveries (`FOR UPDATE SKIP LOCKED`) out of `deliveries` into one row of `claims`, which lapses
  after the lease. A worker killed mid-handling therefore loses nothing: its claim lapses, a
  worker puts the deliveries back with the attempt counted, and another takes them; an event that
  keeps killing its worker ends up dead. (While the queue is busy, the claim of the next batch
  rides in the statement that settles the current one, and commits with it.) A delivery is owed
  while it is in `deliveries` or in a claim: the view `owed` is that union, for whatever counts
  or keeps what is owed (the depth metric, retention, redaction).
- A claimed batch is handled in one transaction: the consumer's inbox rows (event ids), the
  handlers' effects and the claim's deletion commit together, so a redelivery of an applied event
  has no second effect. Deleting the claim comes first and locks it, so a slow worker keeps its
  batch past the lease; a hung one loses its transaction once idle for longer than the lease. If a
  handler fails (or an event of the batch is in the inbox already: delivered again), the batch is
  rolled back and handled again with a SAVEPOINT per event, so the failure costs only its own
  event a retry (its delivery put back with a backoff), an event delivered again is only acked,
  and the rest commit. The worker sends its batches' BEGIN and COMMIT itself, so that one batch's
  COMMIT and the next one's BEGIN go in one message.
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
