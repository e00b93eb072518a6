"""A rollout's percentage now means its percentage: users outside it get the off variant.

Before, users outside a rollout got the `default_variant`, and the `rollout_percentage` shortcut (API and
panel) built `{"weights": {<default_variant>: 100}}` — so for a new boolean flag, whose default is `on`,
"30 %" served `on` to everyone. The old meaning was never intended (the docs and the slider said 30 %), so
this migration does not preserve it: every state whose served share changes keeps its rollout, which now
means what it says, and gets a `rollout_meaning_changed` entry in its flag's history and the audit trail,
so the change is visible where people look. See "Upgrading" in docs/flags.md.
"""

from django.db import migrations
from django.db.models import F

KIND = "rollout_meaning_changed"
NOTE = ("Upgrade: outside the rollout's percentage users now get the off variant (before: the default "
        "variant, which made a boolean flag's percentage serve everyone).")


def changes_share(state) -> bool:
    rollout = state.rollout or {}
    return (rollout.get("percentage", 100) < 100 and state.default_variant != state.off_variant)


def forwards(apps, schema_editor):
    FlagState = apps.get_model("flags", "FlagState")
    FlagEvent = apps.get_model("flags", "FlagEvent")
    AuditEvent = apps.get_model("releases", "AuditEvent")
    Environment = apps.get_model("environments", "Environment")
    touched = set()
    for state in FlagState.objects.filter(rollout__isnull=False).select_related("flag", "environment"):
        if not changes_share(state):
            continue
        served = {"enabled": state.enabled, "off_variant": state.off_variant,
                  "default_variant": state.default_variant, "rollout": state.rollout}
        FlagEvent.objects.create(flag=state.flag, environment=state.environment, actor=None,
                                 actor_label="Slipway upgrade", kind=KIND,
                                 before={**served, "outside_rollout": state.default_variant},
                                 after={**served, "outside_rollout": state.off_variant})
        AuditEvent.objects.create(actor=None, actor_label="Slipway upgrade", kind=f"flag.{KIND}",
                                  application_id=state.flag.application_id, object_type="flags.flag",
                                  object_id=str(state.flag_id), object_repr=state.flag.key[:200],
                                  before={"outside_rollout": state.default_variant},
                                  after={"outside_rollout": state.off_variant},
                                  note=f"in {state.environment.name}. {NOTE}")
        touched.add(state.environment_id)
    Environment.objects.filter(pk__in=touched).update(flags_version=F("flags_version") + 1)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0002_change_requests_and_schedules"),
        ("releases", "0009_step_pending_index"),
        ("environments", "0009_rollout_gates"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
