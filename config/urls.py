from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from config import health
from environments import agent_api

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path("api/v1/agent/register", agent_api.register, name="agent-register"),
    path("api/v1/agent/heartbeat", agent_api.heartbeat, name="agent-heartbeat"),
    # Ids as text: the views answer a bad one 404 in JSON, after checking it fits a bigint.
    path("api/v1/agent/jobs/<str:pk>/output", agent_api.output, name="agent-output"),
    path("api/v1/webhooks/rollout/<str:pk>/", agent_api.webhook_callback, name="rollout-callback"),
    path("api/v1/", include(("config.api_urls", "api"))),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("flags.urls")),
    path("", include("dashboard.urls")),
]

handler404 = "dashboard.views.not_found"
