"""Webhooks out: endpoints admins subscribe, deliveries made from events, a signed sender.

Wired into the referral service as its route handlers, the queue consumer `referral.webhooks`
(events in, delivery rows out) and the sender worker (delivery rows out over HTTP).
"""

from services.referral.webhooks.consumer import consumer
from services.referral.webhooks.controllers import route_handlers
from services.referral.webhooks.sender import sender_worker

__all__ = ["consumer", "route_handlers", "sender_worker"]
