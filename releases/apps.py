from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"

    def ready(self) -> None:
        from config import checks  # noqa: F401  (registers slipway.* system checks)
        from releases import promotions, signals

        signals.release_succeeded.connect(promotions.after_success, dispatch_uid="promotions.after_success")
