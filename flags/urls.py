from django.urls import path

from flags import views

app_name = "flags"

urlpatterns = [
    path("flags/", views.flags_index, name="index"),
    path("apps/<slug:slug>/flags/", views.flag_list, name="list"),
    path("apps/<slug:slug>/flags/segments/", views.save_segment, name="save-segment"),
    path("apps/<slug:slug>/flags/<str:key>/", views.flag_detail, name="detail"),
    path("apps/<slug:slug>/flags/<str:key>/edit/", views.edit_flag, name="edit"),
    path("apps/<slug:slug>/flags/<str:key>/try/", views.try_context, name="try"),
    path("apps/<slug:slug>/flags/<str:key>/env/<slug:name>/", views.update_state, name="update"),
    path("apps/<slug:slug>/flags/<str:key>/env/<slug:name>/toggle/", views.toggle, name="toggle"),
    path("apps/<slug:slug>/flags/<str:key>/history/<int:event_id>/revert/", views.revert, name="revert"),
    path("apps/<slug:slug>/flags/<str:key>/changes/<int:pk>/", views.decide_change, name="decide-change"),
]
