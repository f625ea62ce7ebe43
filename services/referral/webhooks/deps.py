"""What the webhook handlers (the API's and the admin pages') are given by name: the guard that
checks a target URL against the allow list, and the box that seals new signing secrets."""

from __future__ import annotations

from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from services.common.access.secret_box import SecretBox, secret_box
from services.common.http.deps import ClinicSettings
from services.referral.webhooks.ssrf import TargetGuard


def provide_target_guard(settings: ClinicSettings) -> TargetGuard:
    return TargetGuard.from_allow_list(settings.webhook_allow_hosts)


def provide_sealing_box(settings: ClinicSettings) -> SecretBox | None:
    """The box that seals new signing secrets (None: no key configured, create and rotate 503)."""
    return secret_box(settings)


#: How a handler asks for them: `target_guard: TargetGuardDep`, `sealing_box: SealingBoxDep`
#: (handed over as built: the handler's signature model does not convert them).
TargetGuardDep = NamedDependency[SkipValidation[TargetGuard]]
SealingBoxDep = NamedDependency[SkipValidation[SecretBox | None]]
DEPENDENCIES = {
    "target_guard": Provide(provide_target_guard, sync_to_thread=False),
    "sealing_box": Provide(provide_sealing_box, sync_to_thread=False),
}
