from __future__ import annotations

import io
import json
import logging

import structlog

from services.common.logging import REDACTED, configure_logging


def _capture(fn) -> list[dict]:
    stream = io.StringIO()
    configure_logging(json=True, level="INFO")
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    fn()
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_patient_data_never_reaches_a_log_line() -> None:
    patient = {
        "mrn": "MRN-0042",
        "given_name": "Ana",
        "family_name": "Silva",
        "birth_date": "1971-04-02",
        "phone": "+1 555 0100",
        "email": "ana@example.org",
    }

    def emit() -> None:
        log = structlog.get_logger("test")
        log.info("intake_received", intake_id="abc-1", patient=patient, notes="lives alone, Ana says")
        log.info("nested", payload={"items": [{"given_name": "Ana", "email": "ana@example.org"}]})
        log.info("flat", mrn="MRN-0042", birth_date="1971-04-02", phone="+1 555 0100")
        logging.getLogger("stdlib").info("stdlib line", extra={"family_name": "Silva"})

    lines = _capture(emit)
    text = json.dumps(lines)
    for secret in ("Ana", "Silva", "1971-04-02", "555 0100", "ana@example.org", "MRN-0042", "lives alone"):
        assert secret not in text, secret
    assert lines[0]["intake_id"] == "abc-1"  # identifiers stay useful
    assert lines[0]["patient"] == REDACTED
    assert lines[2]["mrn"] == REDACTED


def test_database_error_details_are_masked_in_tracebacks() -> None:
    """A unique violation's DETAIL line repeats the row's values (an MRN, say)."""

    def emit() -> None:
        log = structlog.get_logger("test")
        try:
            raise RuntimeError(
                'duplicate key value violates unique constraint "uq_patients_mrn"\n'
                "DETAIL:  Key (mrn)=(MRN-0042) already exists.\n"
                "[SQL: INSERT INTO intake.patients ...]\n[parameters: ('Ana', 'Silva', 'MRN-0042')]"
            )
        except RuntimeError:
            log.exception("unhandled_error")
        log.error("worker_failed", error="IntegrityError: Failing row contains (Ana, Silva, 1971-04-02).")

    lines = _capture(emit)
    text = json.dumps(lines)
    for secret in ("MRN-0042", "Ana", "Silva", "1971-04-02"):
        assert secret not in text, secret
    assert "uq_patients_mrn" in text  # the error stays diagnosable
