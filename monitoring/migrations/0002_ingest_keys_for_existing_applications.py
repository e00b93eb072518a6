"""An ingest key (the DSN's public key) for every application that has none; re-runnable."""

import secrets

from django.db import migrations
from django.db.models import Exists, OuterRef


def create_keys(apps, schema_editor):
    Application = apps.get_model("releases", "Application")
    IngestKey = apps.get_model("monitoring", "IngestKey")
    while True:
        active = IngestKey.objects.filter(application=OuterRef("pk"), revoked_at__isnull=True)
        batch = list(Application.objects.filter(~Exists(active)).order_by("pk").values_list("pk", flat=True)[:1000])
        if not batch:
            return
        IngestKey.objects.bulk_create([IngestKey(application_id=pk, public_key=secrets.token_hex(16)) for pk in batch])


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_ingestion"), ("releases", "0009_step_pending_index")]

    operations = [migrations.RunPython(create_keys, migrations.RunPython.noop)]
