"""Everything under /api/v1/; each app adds its routes here."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from environments.api import views as environment_views
from flags.api import views as flag_views
from monitoring.api import analysis_views
from monitoring.api import views as monitoring_views
from releases.api import hook_views, member_views, rollout_views
from releases.api import release_views as rv
from releases.api import views as release_views

app_prefix = "applications/<slug:slug>/"
env_prefix = app_prefix + "environments/<slug:name>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("applications/", release_views.ApplicationListView.as_view(), name="applications"),
    path(app_prefix, release_views.ApplicationDetailView.as_view(), name="application"),
    path(app_prefix + "members/", member_views.MemberListView.as_view(), name="members"),
    path(app_prefix + "members/<int:pk>/", member_views.MemberDetailView.as_view(), name="member"),
    path(app_prefix + "environments/", environment_views.EnvironmentListView.as_view(), name="environments"),
    path(
        app_prefix + "environments/<slug:name>/",
        environment_views.EnvironmentDetailView.as_view(),
        name="environment",
    ),
    path(app_prefix + "artifacts/", release_views.ArtifactListView.as_view(), name="artifacts"),
    path(
        app_prefix + "artifacts/<path:version>/", release_views.ArtifactDetailView.as_view(), name="artifact"
    ),
    path("identities/", release_views.IdentityView.as_view(), name="identities"),
    path("identities/requests/", release_views.IdentityRequestListView.as_view(), name="identity-requests"),
    path(
        "identities/requests/<int:pk>/<str:decision>/",
        release_views.IdentityRequestDecisionView.as_view(),
        name="identity-request-decision",
    ),
    path("identities/<str:key>/", release_views.IdentityDetailView.as_view(), name="identity"),
    path(app_prefix + "releases/", rv.ReleaseListView.as_view(), name="releases"),
    path(app_prefix + "releases/<int:pk>/", rv.ReleaseDetailView.as_view(), name="release"),
    path(app_prefix + "releases/<int:pk>/approvals/", rv.ApprovalView.as_view(), name="release-approvals"),
    path(app_prefix + "releases/<int:pk>/force/", rv.ForceView.as_view(), name="release-force"),
    path(app_prefix + "releases/<int:pk>/cancel/", rv.CancelView.as_view(), name="release-cancel"),
    path(env_prefix + "rollback/", rv.RollbackView.as_view(), name="rollback"),
    path(app_prefix + "releases/<int:pk>/rollout/", rollout_views.RolloutView.as_view(), name="rollout"),
    path(
        app_prefix + "releases/<int:pk>/rollout/<str:command>",
        rollout_views.RolloutControlView.as_view(),
        name="rollout-control",
    ),
    path(env_prefix + "targets/", rollout_views.TargetListView.as_view(), name="targets"),
    path(
        env_prefix + "registration-tokens/",
        rollout_views.RegistrationTokenView.as_view(),
        name="registration-tokens",
    ),
    path(env_prefix + "deployments/", rv.DeploymentView.as_view(), name="deployments"),
    path(env_prefix + "locks/", rv.LockListView.as_view(), name="locks"),
    path(env_prefix + "locks/<int:pk>/", rv.LockDetailView.as_view(), name="lock"),
    path(env_prefix + "freezes/", rv.FreezeListView.as_view(), name="freezes"),
    path(env_prefix + "freezes/<int:pk>/", rv.FreezeDetailView.as_view(), name="freeze"),
    path(app_prefix + "blockers/", rv.BlockerListView.as_view(), name="blockers"),
    path(app_prefix + "github/", hook_views.GitHubConfigView.as_view(), name="github"),
    path(
        app_prefix + "notification-hooks/",
        hook_views.NotificationHookListView.as_view(),
        name="notification-hooks",
    ),
    path(app_prefix + "flags/", flag_views.FlagListView.as_view(), name="flags"),
    path(app_prefix + "flags/<str:key>/", flag_views.FlagDetailView.as_view(), name="flag"),
    path(app_prefix + "flags/<str:key>/history/", flag_views.HistoryView.as_view(), name="flag-history"),
    path(
        app_prefix + "flags/<str:key>/history/<int:event_id>/revert/",
        flag_views.RevertView.as_view(),
        name="flag-revert",
    ),
    path(
        app_prefix + "flags/<str:key>/environments/<slug:name>/",
        flag_views.FlagStateView.as_view(),
        name="flag-state",
    ),
    path(
        app_prefix + "flags/<str:key>/environments/<slug:name>/kill/",
        flag_views.KillSwitchView.as_view(),
        name="flag-kill",
    ),
    path(
        app_prefix + "flags/<str:key>/environments/<slug:name>/schedules/",
        flag_views.ScheduleView.as_view(),
        name="flag-schedules",
    ),
    path(
        app_prefix + "flags/<str:key>/change-requests/",
        flag_views.ChangeRequestListView.as_view(),
        name="flag-change-requests",
    ),
    path(
        app_prefix + "flags/<str:key>/change-requests/<int:pk>/<str:decision>/",
        flag_views.ChangeRequestDecisionView.as_view(),
        name="flag-change-request-decision",
    ),
    path(app_prefix + "segments/", flag_views.SegmentListView.as_view(), name="segments"),
    path(app_prefix + "errors/", monitoring_views.ErrorView.as_view(), name="errors"),
    path(app_prefix + "error-groups/", monitoring_views.ErrorGroupListView.as_view(), name="error-groups"),
    path(
        app_prefix + "error-groups/<int:pk>/resolve/",
        monitoring_views.ErrorGroupResolveView.as_view(),
        name="error-group-resolve",
    ),
    path(app_prefix + "metrics/", monitoring_views.MetricsView.as_view(), name="metrics"),
    path(app_prefix + "ingest-key/", monitoring_views.IngestKeyView.as_view(), name="ingest-key"),
    path(
        app_prefix + "metric-sources/", analysis_views.MetricSourceListView.as_view(), name="metric-sources"
    ),
    path(
        app_prefix + "metric-sources/<slug:name>/",
        analysis_views.MetricSourceDetailView.as_view(),
        name="metric-source",
    ),
    path(
        app_prefix + "analysis-templates/",
        analysis_views.AnalysisTemplateListView.as_view(),
        name="analysis-templates",
    ),
    path(
        app_prefix + "analysis-templates/<slug:name>/",
        analysis_views.AnalysisTemplateDetailView.as_view(),
        name="analysis-template",
    ),
    path(app_prefix + "analysis-runs/", analysis_views.AnalysisRunListView.as_view(), name="analysis-runs"),
    path(
        app_prefix + "analysis-runs/<int:pk>/",
        analysis_views.AnalysisRunDetailView.as_view(),
        name="analysis-run",
    ),
    path("webhooks/github/<slug:slug>/", hook_views.GitHubWebhookView.as_view(), name="github-webhook"),
    path(app_prefix + "blockers/<int:pk>/resolve/", rv.BlockerResolveView.as_view(), name="blocker-resolve"),
]
