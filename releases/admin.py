"""Django admin for operators: a window on the data, not a second way to change it.

Every write in Slipway goes through a `do_*` service, in one transaction with its audit event. The admin therefore
reads Slipway's models and writes none of them, with one exception: adding an application, which calls the same
service as the API (its creator becomes its admin, it gets its ingest key, the audit says so). Roles are granted on an
application's Members page or its `members/` API; identities are linked on the profile page and confirmed from the
approvals inbox — each audited, each checked against the caller's role.
"""

from django.contrib import admin

from releases.models import (
    ApiToken,
    Application,
    Artifact,
    AuditEvent,
    AuthorIdentity,
    Change,
    Membership,
    Release,
)
from releases.permissions import Actor
from releases.services import do_create_application


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Application)
class ApplicationAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "repository_url", "created_at"]
    search_fields = ["slug", "name"]
    fields = ["slug", "name", "repository_url"]

    def has_add_permission(self, request):
        return request.user.has_perm("releases.add_application")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Not inside the admin's own transaction: the service's is durable, with its audit event in it.
        return self._changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        created = do_create_application(
            Actor(request.user),
            slug=obj.slug,
            name=obj.name,
            repository_url=obj.repository_url,
        )
        obj.pk = created.pk


@admin.register(Artifact)
class ArtifactAdmin(ReadOnlyAdmin):
    list_display = ["version", "application", "commit", "created_by", "created_at"]
    list_filter = ["application"]
    search_fields = ["version", "commit"]


@admin.register(Change)
class ChangeAdmin(ReadOnlyAdmin):
    list_display = ["sha", "author", "title", "application"]
    search_fields = ["sha", "author", "title"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_label", "kind", "object_repr", "application"]
    list_filter = ["kind", "application"]


@admin.register(Release)
class ReleaseAdmin(ReadOnlyAdmin):
    list_display = ["id", "application", "environment", "artifact", "kind", "status", "created_at"]
    list_filter = ["status", "kind", "application"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "application", "role", "environment"]
    list_filter = ["role", "application"]


@admin.register(AuthorIdentity)
class AuthorIdentityAdmin(ReadOnlyAdmin):
    list_display = ["identity", "user", "status", "decided_by", "decided_at"]
    list_filter = ["status"]
    search_fields = ["identity", "user__username"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["name", "user", "hint", "scopes", "environment", "last_used_at", "revoked_at"]


# Failed log-ins (django-axes): unlocking is an audited action (config/logins.py), not a plain delete.
from axes.models import AccessAttempt  # noqa: E402

from config.logins import AccessAttemptAdmin  # noqa: E402

admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, AccessAttemptAdmin)
