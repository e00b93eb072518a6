import hashlib

import factory
from django.contrib.auth import get_user_model

from environments.models import Environment
from releases.models import Application, Artifact, Change, Membership


def sha(n) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class ApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Application

    slug = factory.Sequence(lambda n: f"app{n}")
    name = factory.LazyAttribute(lambda a: a.slug.title())
    repository_url = "https://github.com/acme/app"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    application = factory.SubFactory(ApplicationFactory)
    role = "developer"


class EnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Environment

    application = factory.SubFactory(ApplicationFactory)
    name = factory.Sequence(lambda n: f"env{n}")
    position = factory.Sequence(lambda n: n + 1)


class ChangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Change

    application = factory.SubFactory(ApplicationFactory)
    sha = factory.Sequence(sha)
    author = "alice"
    title = factory.Sequence(lambda n: f"Change {n}")


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact
        skip_postgeneration_save = True  # artifacts are immutable: never saved twice

    application = factory.SubFactory(ApplicationFactory)
    version = factory.Sequence(lambda n: f"0.0.{n}")
    commit = factory.Sequence(lambda n: sha(f"c{n}"))
    image = factory.LazyAttribute(
        lambda a: f"registry.example.com/app@sha256:{hashlib.sha256(a.version.encode()).hexdigest()}"
    )
    metadata = factory.LazyFunction(dict)

    @factory.post_generation
    def changes(self, create, extracted, **kwargs):
        if create and extracted:
            self.changes.set(extracted)


def register_builds(application, builds: dict) -> dict:
    """Register builds through the service CI uses: {"1.1.0": (("alice", "Faster checkout"), …)} → artifacts."""
    from releases.permissions import Actor
    from releases.services import ArtifactIn, ChangeIn, do_register_artifact

    artifacts = {}
    for version, changes in builds.items():
        artifacts[version], _ = do_register_artifact(
            Actor.system(),
            application,
            ArtifactIn(
                version=version,
                commit=version.replace(".", "") * 8,
                image=f"registry.example.com/{application.slug}:{version}",
                metadata={},
                changes=tuple(
                    ChangeIn(sha=f"{version}{n}".replace(".", "") * 8, author=author, title=title)
                    for n, (author, title) in enumerate(changes)
                ),
            ),
        )
    return artifacts
