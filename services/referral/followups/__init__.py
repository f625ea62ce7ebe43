"""Follow-ups after a regenerative procedure: the scheduler that emits them when due, and their
worklist. Wired into the referral service as `FollowUpController` and `follow_up_worker`."""

from services.referral.followups.controllers import FollowUpController
from services.referral.followups.scheduler import follow_up_worker

__all__ = ["FollowUpController", "follow_up_worker"]
