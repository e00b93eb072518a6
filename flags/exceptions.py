"""Flag errors, each with a stable `code` clients can act on (the body is `{"code": …, "detail": …}`, plus
`field` and the field-keyed list for a field's error: `config.jsonbody.error_body`)."""

from config.errors import Conflict, Forbidden, Invalid, NotFound


class FlagConfigInvalid(Invalid):
    """The environment's flags would not compile with this change (the engine's validation)."""

    code = "flag_config_invalid"


class VariantsInvalid(Invalid):
    code = "variants_invalid"


class RolloutInvalid(Invalid):
    code = "rollout_invalid"


class UnknownStateField(Invalid):
    code = "unknown_field"


class ScheduleInPast(Invalid):
    code = "schedule_in_past"


class FlagExists(Conflict):
    code = "flag_exists"


class FlagIsPrerequisite(Conflict):
    code = "flag_is_prerequisite"


class ChangeRequestDecided(Conflict):
    code = "change_request_decided"


class OwnChangeRequest(Forbidden):
    code = "own_change_request"


class FlagNotFound(NotFound):
    code = "flag_not_found"


class FlagEventNotFound(NotFound):
    code = "flag_event_not_found"


class ChangeRequestNotFound(NotFound):
    code = "change_request_not_found"


class UnknownDecision(NotFound):
    code = "unknown_decision"
