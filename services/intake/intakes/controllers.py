"""HTTP for intakes: `POST/GET /v1/intakes`, `GET /v1/intakes/{id}` (and its versions),
`POST /v1/intakes/{id}/amendments`. The rules live in `submissions.py`, `patients.py`, `reads.py`
and `idempotency.py`."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, PathParameter, RawBody

from services.common.access.auth import Role, require_roles
from services.common.contracts.intake_body import IntakeBody
from services.common.http.pagination import DEFAULT_LIMIT, Limit, decode_cursor, encode_cursor
from services.common.http.problems import AUTH_RESPONSES, problem_spec
from services.common.http.web import DbSession
from services.intake.intakes import deps, idempotency, patients, reads
from services.intake.intakes.deps import IntakesDep
from services.intake.intakes.schemas import Intake, IntakePage, IntakeStatus, PatientPage

#: Who submits intakes (admin always passes the guard).
SUBMITTERS = (Role.front_desk,)
#: Who reads them. Clinicians resolve clinician reviews, which needs the whole form (symptoms,
#: history, notes), not only the referral's summary; specialists see their referrals only.
READERS = (Role.front_desk, Role.clinician)


IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Send the same key to retry safely: the same key and body return the first "
        "response; the same key with another body is a 409. Keys are kept 24 h (CLINIC_IDEMPOTENCY_HOURS).",
    ),
]


NOT_FOUND = {404: problem_spec("No such intake (or version).")}
WRITE_RESPONSES = {
    400: problem_spec("The body is not JSON."),
    409: problem_spec("The idempotency key was used for another request."),
    413: problem_spec("The body is over the size limit (256 KiB)."),
    422: problem_spec("A field is not valid; `errors` names each by its full path."),
}
READ_RESPONSES = {422: problem_spec("A query parameter is not valid."), **AUTH_RESPONSES}


def intake_response(stored: idempotency.StoredResponse) -> Response[Any]:
    """The answer to a submission or amendment (on a replay: the same status and intake version,
    rebuilt from the database)."""
    headers = {"Location": f"/v1/intakes/{stored.intake_id}"}
    if stored.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=stored.content,
        status_code=stored.status_code,
        media_type="application/json",
        headers=headers,
    )


#: A version number as PostgreSQL's integer holds it (a larger one is a 422, not a 500).
VersionNumber = Annotated[int, PathParameter(ge=1, le=2**31 - 1)]


class IntakeController(Controller):
    path = "/v1/intakes"
    tags = ["intakes"]
    dependencies = deps.DEPENDENCIES

    @post(
        "/",
        operation_id="submitIntake",
        guards=[require_roles(*SUBMITTERS)],
        status_code=201,
        responses={**WRITE_RESPONSES, **AUTH_RESPONSES},
        summary="Submit an intake",
    )
    async def submit(
        self,
        intakes: IntakesDep,
        data: JSONBody[IntakeBody],
        body: RawBody,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Intake]:
        """Store the intake (version 1) and publish `intake.submitted` in the same transaction.
        The referral service then triages it; `status` turns `routed` when it has."""
        return intake_response(await intakes.submit(body, idempotency_key))

    @post(
        "/{intake_id:uuid}/amendments",
        operation_id="amendIntake",
        guards=[require_roles(*SUBMITTERS)],
        status_code=201,
        responses={**WRITE_RESPONSES, **AUTH_RESPONSES, **NOT_FOUND},
        summary="Amend an intake (a new version, re-triaged)",
    )
    async def amend(
        self,
        intakes: IntakesDep,
        intake_id: FromPath[uuid.UUID],
        data: JSONBody[IntakeBody],
        body: RawBody,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Intake]:
        """Store the corrected form as the next version and publish `intake.amended`; earlier
        versions stay readable under `/versions`."""
        return intake_response(await intakes.amend(intake_id, body, idempotency_key))

    @get(
        "/{intake_id:uuid}",
        operation_id="getIntake",
        guards=[require_roles(*READERS)],
        responses={**AUTH_RESPONSES, **NOT_FOUND},
        summary="An intake, current version",
    )
    async def read(self, intakes: IntakesDep, intake_id: FromPath[uuid.UUID]) -> Intake:
        """The intake's current version: the patient, the form as submitted, and the status of
        the referral it led to (mirrored from the referral service)."""
        return await intakes.one(intake_id)

    @get(
        "/",
        operation_id="listIntakes",
        guards=[require_roles(*READERS)],
        responses=READ_RESPONSES,
        summary="Intakes, newest first",
    )
    async def list_intakes(
        self,
        db_session: DbSession,
        status: FromQuery[IntakeStatus | None] = None,
        mrn: FromQuery[str | None] = None,
        submitted_after: FromQuery[dt.datetime | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> IntakePage:
        """Filter by `status`, the patient's `mrn`, and `submitted_after` (RFC 3339; a time
        without offset is UTC); page with `limit` and the `next_cursor` of the previous page."""
        if submitted_after is not None and submitted_after.tzinfo is None:
            submitted_after = submitted_after.replace(tzinfo=dt.UTC)
        after = decode_cursor(cursor, tuple[dt.datetime, uuid.UUID])
        items, last = await reads.list_intakes(
            db_session,
            reads.IntakeFilter(status=status, mrn=mrn, submitted_after=submitted_after),
            limit,
            after,
        )
        return IntakePage(items=items, next_cursor=None if last is None else encode_cursor(last))

    @get(
        "/{intake_id:uuid}/versions",
        operation_id="listIntakeVersions",
        guards=[require_roles(*READERS)],
        responses={**READ_RESPONSES, **NOT_FOUND},
        summary="Every version of an intake, oldest first",
    )
    async def versions(
        self,
        intakes: IntakesDep,
        intake_id: FromPath[uuid.UUID],
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> IntakePage:
        """Each version as it was submitted, the first one first; page with `limit` and the
        `next_cursor` of the previous page."""
        return await intakes.versions(intake_id, limit, cursor)

    @get(
        "/{intake_id:uuid}/versions/{version:int}",
        operation_id="getIntakeVersion",
        guards=[require_roles(*READERS)],
        responses={**AUTH_RESPONSES, **NOT_FOUND},
        summary="An intake as it was at one version",
    )
    async def version(
        self, intakes: IntakesDep, intake_id: FromPath[uuid.UUID], version: VersionNumber
    ) -> Intake:
        """The intake exactly as one version had it (versions count from 1; an amendment adds
        one)."""
        return await intakes.one(intake_id, version)


class PatientController(Controller):
    path = "/v1/patients"
    tags = ["patients"]

    @get(
        "/",
        guards=[require_roles(*READERS)],
        responses=READ_RESPONSES,
        operation_id="findPatients",
        summary="Find patients by name, birth date or MRN",
    )
    async def find(
        self,
        db_session: DbSession,
        family_name: FromQuery[str | None] = None,
        given_name: FromQuery[str | None] = None,
        birth_date: FromQuery[dt.date | None] = None,
        mrn: FromQuery[str | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> PatientPage:
        """Names match whole, ignoring case; every filter given must hold. Sorted by family name,
        then given name; page with `limit` and the `next_cursor` of the previous page."""
        items, last = await patients.find_patients(
            db_session,
            patients.PatientFilter(
                family_name=family_name, given_name=given_name, birth_date=birth_date, mrn=mrn
            ),
            limit,
            decode_cursor(cursor, tuple[str, uuid.UUID]),
        )
        return PatientPage(items=items, next_cursor=None if last is None else encode_cursor(last))
