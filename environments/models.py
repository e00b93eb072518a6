"""Where things run: each application's pipeline of environments."""

from __future__ import annotations

from django.db import models

from releases.models import slug_validator


class Environment(models.Model):
    application = models.ForeignKey("releases.Application", on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=63, validators=[slug_validator])
    position = models.PositiveIntegerField(help_text="Place in the pipeline: lower ships first.")
    requires_approval = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    current_artifact = models.ForeignKey(
        "releases.Artifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="What runs here now; moved only by deployment services.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="environment_unique_name"),
            models.UniqueConstraint(fields=["application", "position"], name="environment_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.application_id}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.application.slug}/{self.name}"
