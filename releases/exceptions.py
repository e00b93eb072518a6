from config.errors import Conflict, Forbidden, Invalid, NotFound


class ArtifactConflict(Conflict):
    code = "artifact_conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class LastAdmin(Conflict):
    code = "last_admin"


class ApplicationExists(Conflict):
    code = "application_exists"


class ReleaseNotFound(NotFound):
    code = "release_not_found"


class AlreadyDeployed(Conflict):
    code = "already_deployed"


class OutOfPipelineOrder(Conflict):
    code = "out_of_pipeline_order"


class NotPending(Conflict):
    code = "release_not_pending"


class AlreadyDecided(Conflict):
    code = "already_decided"


class MayNotDecide(Forbidden):
    code = "may_not_decide"


class NothingToForce(Conflict):
    code = "release_not_forcible"


class NotARollbackCandidate(Conflict):
    code = "not_a_rollback_candidate"


class LockReleased(Conflict):
    code = "lock_released"


class FreezeWindowInvalid(Invalid):
    code = "freeze_window_invalid"


class NoRollout(Conflict):
    code = "no_rollout"


class RolloutFinished(Conflict):
    code = "rollout_finished"


class RollbackNotRevertible(Conflict):
    code = "rollback_not_revertible"


class IdentityTaken(Conflict):
    code = "identity_taken"


class IdentityRequestDecided(Conflict):
    code = "identity_request_decided"


class IdentityNotFound(NotFound):
    code = "identity_not_found"


class TokenNotAllowed(Forbidden):
    code = "token_not_allowed"


class NotPermitted(Forbidden):
    """A missing scope, the token's environment, or a role: the detail names which."""

    code = "not_permitted"


class ArtifactImmutable(Conflict):
    code = "artifact_immutable"


class OwnIdentityRequest(Forbidden):
    code = "own_identity_request"


class TokenNeedsRole(Forbidden):
    """A token pinned to an environment whose application its user has no role on."""

    code = "token_needs_role"


class ApplicationNotFound(NotFound):
    code = "application_not_found"


class ArtifactNotFound(NotFound):
    code = "artifact_not_found"


class UserNotFound(NotFound):
    code = "user_not_found"


class MembershipNotFound(NotFound):
    code = "membership_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class LockNotFound(NotFound):
    code = "lock_not_found"


class FreezeNotFound(NotFound):
    code = "freeze_not_found"


class BlockerNotFound(NotFound):
    code = "blocker_not_found"


class RolloutNotFound(NotFound):
    """The release has no rollout (its environment has no deploy targets)."""

    code = "rollout_not_found"


class UnknownCommand(NotFound):
    code = "unknown_command"


class UnknownDecision(NotFound):
    code = "unknown_decision"
