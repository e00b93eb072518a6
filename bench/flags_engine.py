"""In-process flag evaluation: Slipway's engine against the UnleashClient Python SDK, same flags, same run.

100 flags, each with a country rule and a 50% rollout; a fresh targeting key for every call.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flags.engine import compile_snapshot, evaluate

FLAGS = 100
CALLS = 200_000
COUNTRIES = ["FR", "DE", "US", "GB", "NL"]


def slipway_config() -> dict:
    return {
        "flags": [
            {
                "key": f"flag-{n}",
                "type": "boolean",
                "variants": {"on": True, "off": False},
                "enabled": True,
                "off_variant": "off",
                "default_variant": "off",
                "rules": [
                    {
                        "conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
                        "variant": "on",
                    }
                ],
                "rollout": {"percentage": 50, "weights": {"on": 100}},
            }
            for n in range(FLAGS)
        ]
    }


def unleash_features() -> dict:
    return {
        "version": 2,
        "features": [
            {
                "name": f"flag-{n}",
                "enabled": True,
                "strategies": [
                    {
                        "name": "default",
                        "parameters": {},
                        "constraints": [{"contextName": "country", "operator": "IN", "values": ["FR", "DE"]}],
                    },
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "50", "stickiness": "userId", "groupId": f"flag-{n}"},
                    },
                ],
            }
            for n in range(FLAGS)
        ],
    }


def best_of(repeats, fn) -> float:
    return min(fn() for _ in range(repeats))


def main() -> None:
    keys = [f"user-{i}" for i in range(CALLS)]
    contexts = [{"targetingKey": k, "country": COUNTRIES[i % 5]} for i, k in enumerate(keys)]
    names = [f"flag-{i % FLAGS}" for i in range(CALLS)]
    snapshot = compile_snapshot(slipway_config())

    def run_slipway() -> float:
        start = time.perf_counter_ns()
        for name, ctx in zip(names, contexts, strict=True):
            evaluate(snapshot, name, ctx)
        return (time.perf_counter_ns() - start) / CALLS / 1000

    slipway_us = best_of(5, run_slipway)

    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("slipway-bench", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict(unleash_features())
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="slipway-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
        refresh_interval=3600,
    )
    client.initialize_client(fetch_toggles=False)
    unleash_contexts = [
        {"userId": k, "properties": {"country": COUNTRIES[i % 5]}} for i, k in enumerate(keys)
    ]
    n_unleash = 50_000

    def run_unleash() -> float:
        start = time.perf_counter_ns()
        for name, ctx in zip(names[:n_unleash], unleash_contexts[:n_unleash], strict=True):
            client.is_enabled(name, ctx)
        return (time.perf_counter_ns() - start) / n_unleash / 1000

    # Same users in the same buckets: the engines agree on every one of the first 2,000 calls.
    agree = sum(
        evaluate(snapshot, names[i], contexts[i]).value == client.is_enabled(names[i], unleash_contexts[i])
        for i in range(2000)
    )
    unleash_us = best_of(3, run_unleash)
    client.destroy()
    print(f"bench: flags.eval_us {slipway_us:.2f} us")
    print(f"bench: flags.eval_us.unleashclient {unleash_us:.2f} us")
    print(f"bench: flags.eval_speedup_vs_unleashclient {unleash_us / slipway_us:.1f} x")
    print(f"bench: flags.eval_agreement_with_unleash {agree / 20:.1f} %")


if __name__ == "__main__":
    main()
