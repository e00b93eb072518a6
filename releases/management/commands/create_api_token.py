from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from config.errors import SlipwayError
from environments.models import Environment
from releases.models import Scope
from releases.permissions import Actor
from releases.services import do_create_api_token


class Command(BaseCommand):
    help = "Create an API token for a user; prints the token alone as the last line."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True)
        parser.add_argument("--scope", action="append", required=True, choices=Scope.values, dest="scopes")
        parser.add_argument("--environment", help="APP/ENV: the token acts on this environment only.")
        parser.add_argument("--name", default="cli")

    def handle(self, *, user, scopes, environment, name, **options):
        account = get_user_model().objects.filter(username=user).first()
        if account is None:
            raise CommandError(f"No user '{user}'.")
        pinned = None
        if environment:
            app_slug, _, env_name = environment.partition("/")
            pinned = (
                Environment.objects.select_related("application")
                .filter(application__slug=app_slug, name=env_name)
                .first()
            )
            if pinned is None:
                raise CommandError(f"No environment '{environment}' (use APP/ENV, e.g. shop/production).")
        try:
            token, key = do_create_api_token(
                Actor.system(), account, name=name, scopes=scopes, environment=pinned
            )
        except SlipwayError as error:
            raise CommandError(error.detail) from error
        self.stderr.write(
            f"Token '{token.name}' for {user} with {', '.join(token.scopes)}"
            + (f" on {pinned.label}" if pinned else "")
            + ". Store it now; it is not shown again."
        )
        self.stdout.write(key)
