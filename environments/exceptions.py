"""Environment errors, each with a stable `code`."""

from config.errors import Conflict, Invalid, NotFound


class EnvironmentExists(Conflict):
    code = "environment_exists"


class PositionTaken(Conflict):
    code = "position_taken"


class UnknownEnvironmentSetting(Invalid):
    code = "unknown_setting"


class EnvironmentNotFound(NotFound):
    code = "environment_not_found"
