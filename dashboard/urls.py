from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("apps/<slug:slug>/", views.application_detail, name="application"),
    path("apps/<slug:slug>/members/", views.members, name="members"),
    path("apps/<slug:slug>/errors/", views.application_errors, name="errors"),
    path("apps/<slug:slug>/errors/<int:pk>/resolve/", views.resolve_error_group, name="resolve-error-group"),
    path("apps/<slug:slug>/members/<int:pk>/revoke/", views.revoke_member, name="revoke-member"),
    path("audit/", views.audit, name="audit"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", views.revoke_token, name="revoke-token"),
    path("approvals/", views.approvals_inbox, name="inbox"),
    path("releases/<int:pk>/", views.release_detail, name="release"),
    path("releases/<int:pk>/decide/", views.decide, name="decide"),
    path("releases/<int:pk>/force/", views.force_release, name="force"),
    path("apps/<slug:slug>/release/", views.new_release, name="new-release"),
    path("releases/<int:pk>/rollout/", views.rollout_control, name="rollout-control"),
    path("apps/<slug:slug>/env/<slug:name>/", views.environment_detail, name="environment"),
    path("apps/<slug:slug>/env/<slug:name>/rollback/", views.rollback, name="rollback"),
    path("apps/<slug:slug>/env/<slug:name>/lock/", views.lock_environment, name="lock"),
    path("profile/", views.profile, name="profile"),
    path("profile/identities/<int:pk>/unlink/", views.unlink_identity, name="unlink-identity"),
    path("identities/<int:pk>/<str:decision>/", views.decide_identity, name="decide-identity"),
]
