"""`POST /v1/intakes`, the front desk's busiest call, on a fast lane (`services/common/http/fast_lane.py`).

The lane runs the route's own rules: the same strict decoding and checks (`Intakes.accept`), the
same transaction (`Intakes.submit_accepted`) and the same answer (`intake_response`). A body or
idempotency key the rules refuse is left to the route, which refuses it as it always has.
"""

from __future__ import annotations

from typing import Any

from litestar import Response
from litestar.types import Scope

from services.common.access.audit import record_write
from services.common.access.auth import Principal, admitted_roles
from services.common.db.driver import driver_of
from services.common.http.fast_lane import Answer, FastLane
from services.common.http.web import sessionmaker_from
from services.intake.intakes.controllers import SUBMITTERS, intake_response
from services.intake.intakes.deps import intakes_for
from services.intake.intakes.submissions import submit_new_patient


class SubmitIntakeLane(FastLane):
    method = "POST"
    path = "/v1/intakes"
    roles = admitted_roles(*SUBMITTERS)

    async def prepare(self, scope: Scope, caller: Principal, body: bytes) -> Answer | None:
        keys = [value for name, value in scope["headers"] if name == b"idempotency-key"]
        if len(keys) > 1:
            return None
        key = bytes(keys[0]).decode("latin-1") if keys else None
        state = self.app.state
        # Used only on the route's way below; until then it holds no connection, so a lane that
        # does not use it need not close it (a close costs more than the session).
        session = sessionmaker_from(state)()
        intakes = intakes_for(session, caller, state, self.method, self.path)
        try:
            accepted = intakes.accept(body, key)
        except Exception:  # refused: the route answers it with its own problem
            return None

        async def answer() -> Response[Any]:
            form, author, claim = accepted
            if claim is None:  # the usual case, on the driver: no ORM session (a tenth of the CPU)
                async with state["clinic_engine"].begin() as conn:
                    driver = await driver_of(conn)
                    if (stored := await submit_new_patient(driver, form, author)) is not None:
                        recorded = await record_write(driver)
                if stored is not None:
                    recorded()
                    return intake_response(stored)
            async with session:  # a known MRN or an idempotency key: the route's own way
                return intake_response(await intakes.submit_accepted(accepted))

        return answer
