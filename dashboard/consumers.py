"""Live views: a watcher of a rollout gets the page's own progress partial each time a host changes state."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.template.loader import render_to_string

from dashboard.progress import rollout_progress
from releases import selectors
from releases.models import Rollout
from releases.permissions import Actor, Permission, can


def can_view_rollout(user, rollout_id: int) -> bool:
    rollout = Rollout.objects.select_related("release__application").filter(pk=rollout_id).first()
    return bool(rollout and user.is_authenticated and can(Actor(user), Permission.VIEW, rollout.release.application))


class RolloutConsumer(WebsocketConsumer):
    def connect(self):
        self.rollout_id = int(self.scope["url_route"]["kwargs"]["pk"])
        self.group = f"rollout.{self.rollout_id}"
        if not can_view_rollout(self.scope["user"], self.rollout_id):
            return self.close()
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()

    def disconnect(self, code):
        async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)

    def rollout_changed(self, event):
        rollout = selectors.rollout_page(event["rollout_id"])
        if rollout is None:  # deleted meanwhile
            return
        self.send(text_data=render_to_string("dashboard/release.html#progress",
                                             {"rollout": rollout, "progress": rollout_progress(rollout)}))
