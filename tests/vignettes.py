"""The public vignettes for tests (the loader lives with `clinic demo`, which uses it too)."""

from services.referral.vignettes import Expectation, Vignette, load_public_vignettes, public_vignettes_path

__all__ = ["Expectation", "Vignette", "load_public_vignettes", "public_vignettes_path"]
