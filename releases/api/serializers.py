"""Input serializers check shape only; output serializers are read-only."""

from __future__ import annotations

from rest_framework import serializers

from config.api import HttpURLField, OptionalURLOut
from releases.models import SHA_PATTERN, SLUG_PATTERN, VERSION_PATTERN, Application, Artifact, Change
from releases.services import ArtifactIn, ChangeIn

SHA_MESSAGE = "Must be a 40-character lowercase hex commit sha."


class ApplicationIn(serializers.Serializer):
    slug = serializers.RegexField(
        SLUG_PATTERN,
        max_length=63,
        error_messages={
            "invalid": "Use 1–63 lowercase letters, digits and dashes, starting with a letter or digit."
        },
    )
    name = serializers.CharField(max_length=200)
    repository_url = HttpURLField(required=False, default="", allow_blank=True)


class ApplicationOut(serializers.ModelSerializer):
    repository_url = OptionalURLOut()

    class Meta:
        model = Application
        fields = ["slug", "name", "repository_url", "created_at"]
        read_only_fields = fields


class ApplicationDetailOut(ApplicationOut):
    sentry_dsn = serializers.SerializerMethodField(
        help_text="Point sentry-sdk here to report errors to Slipway."
    )

    class Meta(ApplicationOut.Meta):
        fields = [*ApplicationOut.Meta.fields, "sentry_dsn"]
        read_only_fields = fields

    def get_sentry_dsn(self, application: Application) -> str | None:
        from monitoring.selectors import active_ingest_key

        key = active_ingest_key(application)
        return key.dsn if key is not None else None


class ChangeInSerializer(serializers.Serializer):
    sha = serializers.RegexField(SHA_PATTERN, max_length=40, error_messages={"invalid": SHA_MESSAGE})
    author = serializers.CharField(max_length=254)
    title = serializers.CharField(max_length=500)
    url = HttpURLField(required=False, default="", allow_blank=True)
    committed_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class ArtifactInSerializer(serializers.Serializer):
    version = serializers.RegexField(
        VERSION_PATTERN,
        max_length=100,
        error_messages={"invalid": "A version is 1–100 characters without whitespace."},
    )
    commit = serializers.RegexField(SHA_PATTERN, max_length=40, error_messages={"invalid": SHA_MESSAGE})
    image = serializers.CharField(max_length=500)
    build_url = HttpURLField(required=False, default="", allow_blank=True)
    metadata = serializers.DictField(required=False, default=dict)
    changes = ChangeInSerializer(many=True, required=False, default=list, max_length=1000)

    def validate_changes(self, changes: list[dict]) -> list[dict]:
        seen: set[str] = set()
        for change in changes:
            if change["sha"] in seen:
                raise serializers.ValidationError(f"Change {change['sha']} is listed twice.")
            seen.add(change["sha"])
        return changes

    def to_artifact_in(self) -> ArtifactIn:
        data = dict(self.validated_data)
        data["changes"] = tuple(ChangeIn(**c) for c in data["changes"])
        return ArtifactIn(**data)


class ChangeOut(serializers.ModelSerializer):
    url = OptionalURLOut()

    class Meta:
        model = Change
        fields = ["sha", "author", "title", "url", "committed_at"]
        read_only_fields = fields


class AuthorGroupOut(serializers.Serializer):
    author = serializers.CharField()
    user = serializers.CharField(source="username", allow_null=True)
    changes = ChangeOut(many=True)


class ArtifactListOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    build_url = OptionalURLOut()
    change_count = serializers.IntegerField()

    class Meta:
        model = Artifact
        fields = [
            "version",
            "commit",
            "image",
            "build_url",
            "metadata",
            "created_by",
            "created_at",
            "change_count",
        ]
        read_only_fields = fields


class ArtifactOut(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    build_url = OptionalURLOut()
    changes = ChangeOut(many=True)
    changes_by_author = AuthorGroupOut(many=True, source="author_groups")

    class Meta:
        model = Artifact
        fields = [
            "version",
            "commit",
            "image",
            "build_url",
            "metadata",
            "created_by",
            "created_at",
            "changes",
            "changes_by_author",
        ]
        read_only_fields = fields
