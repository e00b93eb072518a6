"""Django admin for operators. Artifacts and the audit trail are read-only: history is not edited."""

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


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "repository_url", "created_at"]
    search_fields = ["slug", "name"]


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
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "application", "role", "environment"]
    list_filter = ["role", "application"]


@admin.register(AuthorIdentity)
class AuthorIdentityAdmin(admin.ModelAdmin):
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
