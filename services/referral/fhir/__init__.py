"""The referral service's FHIR R4 interface (`router`, mounted at `/fhir/R4`)."""

from services.referral.fhir.routes import router

__all__ = ["router"]
