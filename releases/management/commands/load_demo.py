from django.core.management.base import BaseCommand

from releases.demo import load_demo
from releases.models import Application, Membership


class Command(BaseCommand):
    help = "Load the demo application 'shop' when the database has no application yet."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Load even if applications exist.")

    def handle(self, *, force, **options):
        if Application.objects.exists() and not force:
            self.stdout.write("Applications exist already: demo data not loaded.")
            return
        application, passwords = load_demo()
        self.stdout.write(self.style.SUCCESS(f"Loaded demo application '{application.slug}'."))
        if passwords:
            roles = {
                m.user.username: m.get_role_display().lower()
                for m in Membership.objects.filter(application=application).select_related("user")
            }
            self.stdout.write(
                "Demo team (one-time passwords, shown once): "
                + ", ".join(
                    f"{name} ({roles.get(name, 'no role')}) / {password}"
                    for name, password in passwords.items()
                )
            )
