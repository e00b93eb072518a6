"""Everything under /api/v1/; each app adds its routes here."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from environments.api import views as environment_views
from releases.api import views as release_views

app_prefix = "applications/<slug:slug>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("applications/", release_views.ApplicationListView.as_view(), name="applications"),
    path(app_prefix, release_views.ApplicationDetailView.as_view(), name="application"),
    path(app_prefix + "environments/", environment_views.EnvironmentListView.as_view(), name="environments"),
    path(app_prefix + "environments/<slug:name>/", environment_views.EnvironmentDetailView.as_view(),
         name="environment"),
    path(app_prefix + "artifacts/", release_views.ArtifactListView.as_view(), name="artifacts"),
    path(app_prefix + "artifacts/<path:version>/", release_views.ArtifactDetailView.as_view(), name="artifact"),
    path("identities/", release_views.IdentityView.as_view(), name="identities"),
]
