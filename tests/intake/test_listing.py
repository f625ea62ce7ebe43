"""`GET /v1/intakes`: filters by status, MRN and submission time; newest first; opaque cursors."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from services.common.clock import FakeClock
from tests.intake.conftest import intake_form, unique_mrn


@dataclass(frozen=True)
class OnePatient:
    """Three intakes for one MRN, a minute apart (by the app's clock), and the front desk's list of them."""

    client: AsyncTestClient[Any]
    headers: dict[str, str]
    mrn: str
    created: list[dict[str, Any]]

    async def listed(self, **params: Any) -> dict[str, Any]:
        """`GET /v1/intakes` for the MRN, with `params` too."""
        response = await self.client.get(
            "/v1/intakes", params={"mrn": self.mrn, **params}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
async def patient(client: AsyncTestClient[Any], front_desk: dict[str, str]) -> OnePatient:
    mrn = unique_mrn()
    clock = FakeClock()
    client.app.state["clinic_clock"] = clock
    created = []
    for _ in range(3):
        created.append((await client.post("/v1/intakes", json=intake_form(mrn), headers=front_desk)).json())
        clock.advance(datetime.timedelta(minutes=1))
    return OnePatient(client, front_desk, mrn, created)


async def test_mrn_filter_lists_the_patients_intakes_newest_first(
    client: AsyncTestClient[Any], front_desk: dict[str, str], patient: OnePatient
) -> None:
    await client.post("/v1/intakes", json=intake_form(), headers=front_desk)  # another patient

    listed = await patient.listed()
    assert [i["id"] for i in listed["items"]] == [c["id"] for c in reversed(patient.created)]
    assert listed["items"][0] == patient.created[-1]
    assert listed["next_cursor"] is None


async def test_pages_follow_the_cursor_without_gaps_or_repeats(patient: OnePatient) -> None:
    first = await patient.listed(limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = await patient.listed(limit=2, cursor=first["next_cursor"])
    seen = [i["id"] for i in first["items"] + second["items"]]
    assert seen == [c["id"] for c in reversed(patient.created)]
    assert second["next_cursor"] is None


async def test_submitted_after_and_status_filters(patient: OnePatient) -> None:
    created = patient.created
    after = await patient.listed(submitted_after=created[0]["submitted_at"])
    assert [i["id"] for i in after["items"]] == [created[2]["id"], created[1]["id"]]
    submitted = await patient.listed(status="submitted")
    routed = await patient.listed(status="routed")
    assert len(submitted["items"]) == 3
    assert routed["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "closed"}, "status"),
        ({"submitted_after": "last week"}, "submitted_after"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_query_is_422_naming_the_parameter(
    client: AsyncTestClient[Any], front_desk: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/intakes", params=params, headers=front_desk)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    if field == "status":
        assert errors[0]["allowed"] == ["submitted", "routed"]


async def test_the_query_string_never_reaches_the_problem(
    client: AsyncTestClient[Any], front_desk: dict[str, str]
) -> None:
    mrn = unique_mrn()
    response = await client.get("/v1/intakes", params={"mrn": mrn, "limit": 0}, headers=front_desk)
    assert response.status_code == 422
    assert mrn not in response.text


@pytest.mark.parametrize("version", ["0", "224752512504519359374369866383360"])
async def test_a_version_number_out_of_range_is_422_not_a_server_error(
    client: AsyncTestClient[Any], front_desk: dict[str, str], version: str
) -> None:
    response = await client.get(f"/v1/intakes/{uuid.uuid4()}/versions/{version}", headers=front_desk)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
