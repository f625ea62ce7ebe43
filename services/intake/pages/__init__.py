"""The front desk's pages (intake service)."""

from pathlib import Path

from services.intake.pages.views import front_desk_pages

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

__all__ = ["TEMPLATES", "front_desk_pages"]
