"""CI API figures on the embedded runtime: registering an artifact and listing artifacts, in-process.

Baseline in the same run: the raw ORM insert of the same rows without the API (serializer, auth, audit),
so the ratio shows what the API layers cost.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["SLIPWAY_DATA_DIR"] = tempfile.mkdtemp(prefix="slipway-bench-")
os.environ.pop("DATABASE_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ["SLIPWAY_FAST_PASSWORD_HASHING"] = "1"
os.environ.setdefault("API_RATE_LIMIT", "off")  # the figures are the API's cost, not its rate limit

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from releases.models import Application, Artifact  # noqa: E402
from releases.permissions import Actor  # noqa: E402
from releases.services import do_create_api_token, do_create_application  # noqa: E402

N = 300


def main() -> None:
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", password="x-bench-password")
    app = do_create_application(Actor(user), slug="shop", name="Shop")
    _, key = do_create_api_token(Actor.system(), user, name="bench", scopes=["releases:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    timings = []
    for n in range(N):
        body = {
            "version": f"1.{n}.0",
            "commit": f"{n:040x}",
            "image": f"registry.example.com/shop:{n}",
            "changes": [
                {"sha": f"{n * 10 + i:040x}", "author": f"dev{i}", "title": f"Change {i}"} for i in range(5)
            ],
        }
        started = time.perf_counter()
        response = client.post("/api/v1/applications/shop/artifacts/", body, format="json")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 201, response.content
    baseline = []
    for n in range(N):
        started = time.perf_counter()
        Artifact.objects.create(application=app, version=f"b{n}", commit=f"{n:040x}", image="x", metadata={})
        baseline.append(time.perf_counter() - started)
    list_timings = []
    for _ in range(50):
        started = time.perf_counter()
        assert client.get("/api/v1/applications/shop/artifacts/").status_code == 200
        list_timings.append(time.perf_counter() - started)
    register = statistics.median(timings) * 1000
    raw = statistics.median(baseline) * 1000
    print(f"bench: api.register_artifact_ms {register:.2f} ms")
    print(f"bench: api.register_artifact_ms.raw_orm_insert {raw:.2f} ms")
    print(f"bench: api.register_artifact_overhead {register / raw:.1f} x")
    print(f"bench: api.artifact_list_ms {statistics.median(list_timings) * 1000:.2f} ms")
    assert Application.objects.count() == 1


if __name__ == "__main__":
    main()
