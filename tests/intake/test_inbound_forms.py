"""`POST /v1/inbound/intake-forms`: forms from an external system, signed per Standard Webhooks
(signed here with the `standardwebhooks` library, as a sender would)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from services.common.access.signing import new_secret
from services.common.settings import Settings
from services.intake.app import create_app
from tests.intake.conftest import Counts, events_for, intake_form

URL = "/v1/inbound/intake-forms"
SECRET = new_secret()


@pytest.fixture
async def inbound(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    configured = dataclasses.replace(settings, inbound_webhook_secret=SECRET)
    async with AsyncTestClient(create_app(configured, engine)) as test_client:
        yield test_client


def signed(
    body: bytes,
    *,
    msg_id: str | None = None,
    at: datetime.datetime | None = None,
    secret: str = SECRET,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.datetime.now(datetime.UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def encoded(form: dict[str, Any]) -> bytes:
    return json.dumps(form).encode()


async def test_a_signed_form_becomes_an_intake(inbound: AsyncTestClient[Any], engine: AsyncEngine) -> None:
    body = encoded(intake_form())
    response = await inbound.post(URL, content=body, headers=signed(body))
    assert response.status_code == 201, response.text
    intake = response.json()
    assert intake["submitted_by"] == "inbound:intake-forms"
    assert intake["status"] == "submitted" and intake["patient"] == json.loads(body)["patient"]
    assert [e["type"] for e in await events_for(engine, intake["id"])] == ["intake.submitted"]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: signed(body, secret=new_secret()), id="other_secret"),
        pytest.param(lambda body: signed(body + b" "), id="body_changed_after_signing"),
        pytest.param(
            lambda body: signed(body, at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=6)),
            id="stale_timestamp",
        ),
        pytest.param(
            lambda body: signed(body, at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=6)),
            id="future_timestamp",
        ),
        pytest.param(
            lambda body: {k: v for k, v in signed(body).items() if k != "webhook-signature"},
            id="no_signature",
        ),
        pytest.param(lambda body: {"content-type": "application/json"}, id="no_headers"),
    ],
)
async def test_a_bad_or_old_signature_is_401_and_stores_nothing(
    inbound: AsyncTestClient[Any], row_counts: Counts, tamper: Any
) -> None:
    body = encoded(intake_form())
    before = await row_counts()
    response = await inbound.post(URL, content=body, headers=tamper(body))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await row_counts() == before


async def test_an_unsigned_bad_form_is_401_not_422(inbound: AsyncTestClient[Any]) -> None:
    body = b'{"patient": 1}'
    headers = signed(body, secret=new_secret())
    assert (await inbound.post(URL, content=body, headers=headers)).status_code == 401


async def test_a_replayed_webhook_id_is_accepted_once(
    inbound: AsyncTestClient[Any], row_counts: Counts
) -> None:
    body = encoded(intake_form())
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = await inbound.post(URL, content=body, headers=signed(body, msg_id=msg_id))
    after_first = await row_counts()
    again = await inbound.post(URL, content=body, headers=signed(body, msg_id=msg_id))

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert await row_counts() == after_first


async def test_a_webhook_id_reused_for_another_form_is_409(
    inbound: AsyncTestClient[Any], row_counts: Counts
) -> None:
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = encoded(intake_form())
    assert (await inbound.post(URL, content=first, headers=signed(first, msg_id=msg_id))).status_code == 201
    before = await row_counts()
    other = encoded(intake_form())
    response = await inbound.post(URL, content=other, headers=signed(other, msg_id=msg_id))
    assert response.status_code == 409
    assert await row_counts() == before


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (intake_form(complaint={"regions": ["neck"], "intensity": "7", "trend": "stable",
                                "duration_weeks": 3}), "complaint.intensity"),
        ({k: v for k, v in intake_form().items() if k != "red_flags"}, "red_flags"),
        (intake_form(notes="x" * 4001), "notes"),
    ],
)  # fmt: skip
async def test_a_signed_bad_form_is_validated_like_post_intakes(
    inbound: AsyncTestClient[Any], row_counts: Counts, form: dict[str, Any], field: str
) -> None:
    body = encoded(form)
    before = await row_counts()
    response = await inbound.post(URL, content=body, headers=signed(body))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await row_counts() == before


async def test_a_signed_oversize_form_is_413(inbound: AsyncTestClient[Any], row_counts: Counts) -> None:
    body = encoded(intake_form(notes="x" * 300_000))
    before = await row_counts()
    response = await inbound.post(URL, content=body, headers=signed(body))
    assert response.status_code == 413
    assert await row_counts() == before


async def test_without_a_configured_secret_the_endpoint_is_unavailable(
    settings: Settings, engine: AsyncEngine
) -> None:
    unconfigured = dataclasses.replace(settings, inbound_webhook_secret=None)
    body = encoded(intake_form())
    async with AsyncTestClient(create_app(unconfigured, engine)) as client:
        response = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 503
    assert "CLINIC_INBOUND_WEBHOOK_SECRET" in response.json()["detail"]
