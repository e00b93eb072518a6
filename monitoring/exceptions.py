"""Monitoring errors (metric sources, analysis templates and runs), each with a stable `code`."""

from config.errors import Conflict, NotFound


class MetricSourceExists(Conflict):
    code = "metric_source_exists"


class MetricSourceInUse(Conflict):
    """Templates use the source: it may not be deleted, renamed or given another kind (`extra.templates`)."""

    code = "metric_source_in_use"


class AnalysisTemplateExists(Conflict):
    code = "analysis_template_exists"


class MetricSourceNotFound(NotFound):
    code = "metric_source_not_found"


class AnalysisTemplateNotFound(NotFound):
    code = "analysis_template_not_found"


class AnalysisRunNotFound(NotFound):
    code = "analysis_run_not_found"


class ErrorGroupNotFound(NotFound):
    code = "error_group_not_found"
