"""The intake service's FHIR R4 interface (`router`, mounted at `/fhir/R4`)."""

from services.intake.fhir.routes import router

__all__ = ["router"]
