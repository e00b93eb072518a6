from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config import health
from flags import ofrep

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("api/v1/", include(("config.api_urls", "api"))),
    path("ofrep/v1/evaluate/flags", ofrep.evaluate_flags, name="ofrep-bulk"),
    path("ofrep/v1/evaluate/flags/<str:key>", ofrep.evaluate_flag, name="ofrep-flag"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("flags.urls")),
    path("", include("dashboard.urls")),
]

handler404 = "dashboard.views.not_found"
