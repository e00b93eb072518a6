from config.errors import Conflict


class ArtifactConflict(Conflict):
    code = "artifact_conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class LastAdmin(Conflict):
    code = "last_admin"
