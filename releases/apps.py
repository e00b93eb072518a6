from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers slipway.* system checks)
