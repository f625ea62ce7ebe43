"""Helpers for the webhook tests: a real receiver on a free local port, the consumer and the
sender running for a test, events to publish, polling with a deadline.

The receiver is a threaded `http.server`: each route answers from a script of status codes, can
hold its answer until released (a hanging subscriber), and verifies every signature with the
`standardwebhooks` library for the secrets it is told, as a subscriber would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.access.secret_box import secret_box
from services.common.contracts.events import IntakeSubmitted, Payload, ReferralCreated, ReferralStatusChanged
from services.common.contracts.intake_body import IntakeBody, RedFlags
from services.common.queue import QueueTuning, QueueWorker, publish
from services.common.settings import Settings
from services.referral.webhooks import consumer
from services.referral.webhooks.sender import WebhookSender
from services.referral.webhooks.ssrf import TargetGuard
from services.referral.webhooks.tuning import SenderTuning
from tests.conftest import eventually

# -- the receiver ----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    #: Which of the route's secrets verified the message (standardwebhooks' own check).
    verified_by: list[str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Route:
    secrets: list[str] = field(default_factory=list)
    #: Status codes answered in turn; `default` once they run out.
    script: list[int] = field(default_factory=list)
    default: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    #: When set, each request waits for it before answering (a hanging subscriber).
    hold: threading.Event | None = None


class Receiver:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._handle(self)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def route(self, **kwargs: Any) -> tuple[str, Route]:
        """A new path with its behaviour; return its URL and the route (to adjust later)."""
        path = f"/hooks/{uuid.uuid4().hex[:10]}"
        route = Route(**kwargs)
        self.routes[path] = route
        return f"http://127.0.0.1:{self.port}{path}", route

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length)
        route = self.routes.get(request.path)
        if route is None:
            request.send_response(404)
            request.end_headers()
            return
        if route.hold is not None:
            route.hold.wait(timeout=60)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for secret in list(route.secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        with self.lock:
            status = route.script.pop(0) if route.script else route.default
            self.received.append(Received(request.path, headers, body, status, verified))
        request.send_response(status)
        for name, value in route.headers.items():
            request.send_header(name, value)
        request.send_header("content-type", "text/plain")
        request.end_headers()
        request.wfile.write(f"answered {status}".encode())

    def requests(self, url: str) -> list[Received]:
        path = "/" + url.split("/", 3)[3]
        with self.lock:
            return [r for r in self.received if r.path == path]

    def release_all(self) -> None:
        for route in self.routes.values():
            if route.hold is not None:
                route.hold.set()


# -- the service, its consumer and its sender ------------------------------------------------


async def drain_backlog(engine: AsyncEngine, database_url: str) -> None:
    """Apply whatever `referral.webhooks` events earlier tests left in the shared queue, before a
    test subscribes endpoints (else they would receive that backlog too)."""
    worker = QueueWorker(engine, database_url, consumer, QueueTuning())
    while await worker.drain_once():
        pass


@asynccontextmanager
async def running(
    engine: AsyncEngine, database_url: str, settings: Settings, guard: TargetGuard | None = None
) -> AsyncIterator[WebhookSender]:
    """The `referral.webhooks` consumer and the sender, as the referral service runs them."""
    stop = asyncio.Event()
    worker = QueueWorker(engine, database_url, consumer, QueueTuning(poll_seconds=0.1))
    sender = WebhookSender(
        engine,
        dataclasses.replace(SenderTuning.from_settings(settings), poll_seconds=0.1),
        guard or TargetGuard.from_allow_list(settings.webhook_allow_hosts),
        box=secret_box(settings),
    )
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(sender.run(stop))]
    try:
        yield sender
    finally:
        stop.set()
        await asyncio.gather(*tasks)


# -- events ----------------------------------------------------------------------------------


async def publish_events(engine: AsyncEngine, *payloads: Payload) -> None:
    async with AsyncSession(engine) as session:
        for payload in payloads:
            subject = getattr(payload, "referral_id", None) or payload.intake_id  # type: ignore[attr-defined]
            await publish(session, payload, subject=subject)
        await session.commit()


def referral_created(destination: str = "pain_management", **changes: Any) -> ReferralCreated:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "referral_id": uuid.uuid4(),
        "intake_id": uuid.uuid4(),
        "intake_version": 1,
        "destination": destination,
        "priority": "routine",
        "status": "requested",
        "due_by": now,
        "created_at": now,
        "reason_codes": ["CHRONIC_PAIN"],
        **changes,
    }
    return ReferralCreated(**fields)


PATIENT_STRINGS = (
    "Zebulon",
    "Quixotica",
    "1953-07-19",
    "MRN-WH-7731",
    "+1 555 0199",
    "zeb.q@example.org",
    "lives alone, afraid of falling",
)


def intake_submitted() -> IntakeSubmitted:
    """An intake whose patient data is easy to spot in anything that leaks it."""
    given, family, birth, mrn, phone, email, notes = PATIENT_STRINGS
    body = {
        "patient": {
            "mrn": mrn,
            "given_name": given,
            "family_name": family,
            "birth_date": birth,
            "sex": "female",
            "phone": phone,
            "email": email,
        },
        "complaint": {"regions": ["lower_back"], "duration_weeks": 20, "intensity": 6, "trend": "stable"},
        "red_flags": dict.fromkeys(RedFlags.__struct_fields__, "no"),
        "notes": notes,
    }
    return IntakeSubmitted(
        intake_id=uuid.uuid4(),
        patient_id=uuid.uuid4(),
        intake_version=1,
        submitted_at=datetime.now(UTC),
        intake=msgspec.convert(body, IntakeBody),
    )


def status_changed(created: ReferralCreated, status: str = "accepted") -> ReferralStatusChanged:
    """The created referral moved from its first status to `status` by `dr-pain`, now."""
    same = {
        field: getattr(created, field) for field in ("referral_id", "intake_id", "destination", "priority")
    }
    return ReferralStatusChanged(
        **same,
        status=status,
        previous_status=created.status,
        changed_at=datetime.now(UTC),
        changed_by="dr-pain",
        due_by=created.due_by,
    )


def about(received: list[Received], *payloads: Payload) -> list[Received]:
    """Only the messages about these events' referrals or intakes."""
    wanted = {str(getattr(p, "referral_id", None) or getattr(p, "intake_id", "")) for p in payloads}
    return [
        r
        for r in received
        if (r.json()["data"].get("referral_id") or r.json()["data"].get("intake_id")) in wanted
    ]


async def messages(receiver: Receiver, url: str, count: int, *payloads: Payload) -> list[Received]:
    """Wait until `url` has received `count` messages about these events; return them."""

    def got() -> list[Received] | None:
        found = about(receiver.requests(url), *payloads)
        return found if len(found) >= count else None

    result: list[Received] = await eventually(got)
    return result


# -- the harness -----------------------------------------------------------------------------

Api = AsyncTestClient[Any]


@dataclass
class Hooks:
    """What a webhook test works with: the receiver, the admin API, the queue and the sender."""

    receiver: Receiver
    client: Api
    admin: dict[str, str]
    engine: AsyncEngine
    database_url: str
    settings: Settings
    create: Callable[..., Awaitable[dict[str, Any]]]

    def route(self, **behaviour: Any) -> tuple[str, Route]:
        return self.receiver.route(**behaviour)

    async def endpoint(self, url: str, event_types: list[str], **extra: Any) -> dict[str, Any]:
        """A new endpoint (deleted after the test); its receiver route verifies its signatures."""
        created = await self.create(url, event_types, **extra)
        route = self.receiver.routes.get("/" + url.split("/", 3)[3])
        if route is not None and not route.secrets:
            route.secrets = [created["secret"]]
        return created

    async def get(self, path: str, **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    async def deliveries(self, endpoint: dict[str, Any], **params: str) -> list[dict[str, Any]]:
        page = await self.get(f"/v1/webhooks/endpoints/{endpoint['id']}/deliveries", **params)
        items: list[dict[str, Any]] = page["items"]
        return items

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.get(f"/v1/webhooks/deliveries/{delivery_id}")
        return body

    async def endpoint_now(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = await self.get(f"/v1/webhooks/endpoints/{endpoint['id']}")
        return body

    async def until_disabled(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        async def disabled() -> dict[str, Any] | None:
            now = await self.endpoint_now(endpoint)
            return now if not now["enabled"] else None

        result: dict[str, Any] = await eventually(disabled)
        return result

    async def until_deliveries(
        self, endpoint: dict[str, Any], where: Callable[[dict[str, Any]], bool], count: int = 1
    ) -> list[dict[str, Any]]:
        """Wait until `count` of the endpoint's deliveries satisfy `where`; return those."""

        async def found() -> list[dict[str, Any]] | None:
            matching = [d for d in await self.deliveries(endpoint) if where(d)]
            return matching if len(matching) >= count else None

        result: list[dict[str, Any]] = await eventually(found)
        return result

    def running(
        self, guard: TargetGuard | None = None, **setting_changes: Any
    ) -> AbstractAsyncContextManager[WebhookSender]:
        settings = dataclasses.replace(self.settings, **setting_changes)
        return running(self.engine, self.database_url, settings, guard)

    async def publish(self, *payloads: Payload) -> None:
        await publish_events(self.engine, *payloads)

    async def messages(self, url: str, count: int, *payloads: Payload) -> list[Received]:
        return await messages(self.receiver, url, count, *payloads)
