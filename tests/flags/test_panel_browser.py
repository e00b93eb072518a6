"""In Chromium: a PM adds a rule with the builder and reads it in the history, and switching production off from the
list asks first; a developer sees why a switch is off limits; rejecting a batch asks first."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.dashboard.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def log_in(browser, base, username, password, path):
    page = browser.new_context().new_page()
    page.goto(base + path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login/" not in url)
    return page


def test_builder_rule_history_disabled_switch_and_confirmed_reject(live_slipway):
    from playwright.sync_api import sync_playwright

    call_command("load_demo")
    for name in ("pm", "alice"):
        person = get_user_model().objects.get(username=name)
        person.set_password(f"{name}-password-1")
        person.save()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            pm = log_in(browser, live_slipway.url, "pm", "pm-password-1", "/apps/shop/flags/new-checkout/")
            card = pm.locator("#env-staging")
            card.get_by_label("Rule 1 attribute").fill("country")
            card.get_by_label("Rule 1 operator").select_option("in")
            card.get_by_label("Rule 1 values").fill("FR, DE")
            card.get_by_label("Rule 1 serves").select_option("split")
            card.get_by_label("Rule 1 weight of on (%)").fill("30")
            card.get_by_label("Rule 1 weight of off (%)").fill("60")  # a mistake: 90
            card.get_by_label("the builder").check()
            card.get_by_role("button", name="Save staging").click()
            error = pm.locator("#rule-staging-0-error")
            error.wait_for()
            # Beside the row, its weights marked and described by it; the card's top names the rule.
            assert error.inner_text() == "Rule 1: the split's percentages add up to 90, not 100."
            assert pm.locator('#env-staging tr[data-rule="0"] #rule-staging-0-error').count() == 1
            card = pm.locator("#env-staging")
            for name in ("on", "off"):
                weight = card.get_by_label(f"Rule 1 weight of {name} (%)")
                assert weight.get_attribute("aria-invalid") == "true"
                assert weight.get_attribute("aria-describedby") == "rule-staging-0-error"
            assert card.get_by_label("Rule 1 values").get_attribute("aria-invalid") is None
            assert card.get_by_role("alert").inner_text() == "Rule 1 is not saved: see its row."
            # A colleague's change to this very card is pushed meanwhile: the form showing errors stays as typed.
            from flags.models import Flag
            from flags.services import do_change_flag_state
            from releases.permissions import Actor

            flag = Flag.objects.get(key="new-checkout")
            colleague = get_user_model().objects.filter(is_superuser=False, username="pm").get()
            do_change_flag_state(
                Actor(colleague), flag, flag.application.environments.get(name="staging"), enabled=True
            )
            pm.wait_for_timeout(1500)
            card = pm.locator("#env-staging")
            assert card.get_by_label("Rule 1 values").input_value() == "FR, DE"  # what was typed is kept
            assert pm.get_by_text("Rule 1: the split's percentages add up to 90, not 100.").is_visible()
            assert card.get_by_label("Rule 1 weight of off (%)").input_value() == "60"
            card.get_by_label("Rule 1 weight of off (%)").fill("70")
            card.get_by_role("button", name="Save staging").click()
            # In the history table itself (strict: exactly one such line), not anywhere on the page.
            pm.locator("#flag-history").get_by_text(
                "rule 1 added: country in FR, DE → split off 70 % / on 30 %", exact=True
            ).wait_for()
            card = pm.locator("#env-staging")
            assert card.get_by_label("Rule 1 weight of on (%)").input_value() == "30"  # read back as numbers

            # Switching production off from the list asks first, as the kill switch does: dismissed, it stays on.
            questions = []
            pm.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
            pm.goto(live_slipway.url + "/apps/shop/flags/")
            production = pm.get_by_role("switch", name="new-checkout in production")
            assert production.get_attribute("aria-checked") == "true"
            production.click()
            pm.wait_for_timeout(300)
            assert questions and questions[0].startswith("Turn new-checkout off in production?"), questions
            assert production.get_attribute("aria-checked") == "true"
            assert Flag.objects.get(key="new-checkout").states.get(environment__name="production").enabled

            alice = log_in(browser, live_slipway.url, "alice", "alice-password-1", "/apps/shop/flags/")
            switch = alice.get_by_role("switch", name="new-checkout in production")
            assert switch.is_disabled()
            assert switch.get_attribute("title") == "You need the flag editor role on shop/production."

            from releases.models import Release

            pending = Release.objects.get(status="pending_approval")
            alice.goto(live_slipway.url + "/approvals/")
            dialogs = []
            answer = {"accept": False}

            def on_dialog(dialog):
                dialogs.append(dialog.message)
                dialog.accept() if answer["accept"] else dialog.dismiss()

            alice.on("dialog", on_dialog)
            card = alice.locator(f"#release-{pending.pk}")
            card.get_by_role("button", name="Reject").click()
            assert dialogs and "Reject this release?" in dialogs[0]
            alice.wait_for_timeout(300)
            assert card.get_by_role("button", name="Reject").is_visible()  # dismissed: nothing rejected
            pending.refresh_from_db()
            assert pending.status == "pending_approval" and not pending.approvals.exists()
            answer["accept"] = True
            card.get_by_role("button", name="Reject").click()
            assert len(dialogs) == 2
            for _ in range(
                50
            ):  # the answer swaps the card in place (the inbox may then drop it): read the row
                pending.refresh_from_db()
                if pending.status != "pending_approval":
                    break
                alice.wait_for_timeout(100)
            assert pending.status == "rejected"
            alice.goto(f"{live_slipway.url}/releases/{pending.pk}/")
            badge = alice.locator('#release-head .badge[data-status="rejected"]')
            assert badge.text_content().strip() == "Rejected"  # the status's label
            decision = alice.locator(
                "#approvals .badge.bad:not([data-status])"
            ).first  # the decision: once printed "rejectd"
            assert decision.text_content().strip() == "alice rejected"
        finally:
            browser.close()
