"""Environment errors, each with a stable `code`."""

from config.errors import Conflict, Invalid


class EnvironmentExists(Conflict):
    code = "environment_exists"


class PositionTaken(Conflict):
    code = "position_taken"


class UnknownEnvironmentSetting(Invalid):
    code = "unknown_setting"
