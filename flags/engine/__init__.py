"""Pure, OpenFeature-style feature-flag evaluation engine (no Django import).

The Django layer serialises one environment's flags into a plain JSON dict, calls
:func:`validate_snapshot_config` before saving, and :func:`compile_snapshot` to get
an immutable :class:`Snapshot`.  :func:`evaluate` / :func:`evaluate_all` resolve
flags against an evaluation context (a flat mapping with ``targetingKey``).

Config format
=============
::

    {
      "segments": {                                   # optional, name -> segment
        "staff": {"conditions": [
          {"attribute": "email", "operator": "ends_with", "values": ["@slipway.dev"]}
        ]}
      },
      "flags": [
        {
          "key": "new-checkout",                      # unique, non-empty
          "type": "boolean",                          # boolean | string | number | object
          "variants": {"on": true, "off": false},     # name -> value of `type`
          "enabled": true,
          "off_variant": "off",                       # served when disabled / prerequisite unmet
          "default_variant": "off",                   # served when on and nothing matched
          "bucket_by": "targetingKey",                # optional, attribute used for bucketing
          "prerequisites": [{"flag": "payments-v2", "variant": "on"}],   # optional
          "rules": [                                  # optional, first match wins
            {"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
             "variant": "on"},
            {"segment": "staff", "split": {"on": 50, "off": 50}, "bucket_by": "companyId"},
            {"targeting_keys": ["user-1", "user-2"], "variant": "on"}
          ],
          "rollout": {"percentage": 50, "weights": {"on": 100}},         # optional
          "metadata": {"owner": "payments"}           # optional, str -> scalar, echoed back
        }
      ]
    }

Rules
-----
A rule has exactly one matcher: ``conditions`` (non-empty list, all must hold),
``segment`` (a name from ``segments``; all its conditions must hold) or
``targeting_keys`` (the context's ``targetingKey`` is one of them); and exactly one
outcome: ``variant`` (a variant name) or ``split`` (variant name -> integer weight,
weights sum to 100).  ``bucket_by`` on a rule overrides the flag's for its split.

Conditions
----------
``{"attribute": str, "operator": str, ...}`` with ``value`` (one operand) or
``values`` (non-empty list; the condition holds if any operand does):

====================  ========  ===================================================
operator              operand   holds when the context value ``v`` ...
====================  ========  ===================================================
equals / not_equals   value     equals the scalar (``not_equals``: negation)
in / not_in           values    equals one of the scalars (``not_in``: negation)
contains              values    is a string containing one of the (string) operands,
                                or a list with an element equal to one of them
starts_with           values    is a string starting with one of the strings
ends_with             values    is a string ending with one of the strings
lt / lte / gt / gte   value     is a number (int/float, not bool) and compares so
semver_lt/_eq/_gt     value     is a valid SemVer 2.0 string and compares by
                                precedence (build metadata ignored)
before / after        value     is an ISO-8601 date-time string (or ``datetime``)
                                strictly before / after the operand; values without
                                an offset are taken as UTC
exists                (none)    is present and not null
====================  ========  ===================================================

Equality is JSON equality: ``1 == 1.0`` but ``true != 1`` and ``"1" != 1``.
A missing (or null) attribute makes every condition false, except ``not_equals`` and
``not_in``, which are the exact negations of ``equals``/``in`` and so hold: "country
not_in [CN]" includes users with no country.  Add ``{"operator": "exists"}`` to the
same rule to exclude them.  A value of the wrong type is treated like a missing one
(``gt`` on a string is false).  There are no regular expressions (no ReDoS).

Evaluation order
----------------
1. ``enabled`` false -> ``off_variant``, reason ``DISABLED``.
2. Each prerequisite flag is evaluated with the same context; unless it serves the
   named variant (and is not in error) -> ``off_variant``, ``DISABLED``, with
   ``metadata["prerequisite"]`` naming it.
3. Rules in order; the first match serves its variant (``TARGETING_MATCH``) or its
   split (``SPLIT``).
4. ``rollout`` (a gradual rollout, as Unleash's and LaunchDarkly's percentage
   rollouts mean it): users whose bucket is within ``percentage`` get a variant by
   ``weights``; the others get ``off_variant``, exactly what they would get with the
   flag off.  Both sides are reason ``SPLIT`` (the hash decided), with
   ``metadata["rollout"]`` true inside and false outside.  A flag with a rollout
   never serves ``default_variant`` to users who fall through the rules.
5. Otherwise ``default_variant``: ``STATIC`` when the flag has no rules and no
   rollout, else ``DEFAULT``.

Bucketing (sticky and Unleash-compatible)
-----------------------------------------
The bucketing value is the context's ``targetingKey`` unless ``bucket_by`` names
another attribute (strings, or ints which are stringified; an empty string counts as
missing).  With ``s = f"{flag_key}:{value}"``:

* percentage: ``mmh3.hash(s, 0, signed=False) % 100 + 1 <= percentage``, exactly
  Unleash's ``normalized_hash`` for a ``flexibleRollout`` whose ``groupId`` is the
  flag key, so users keep their buckets when migrating.  Raising the percentage only
  adds users.
* variant weights (rollout and rule splits): an independent hash with Unleash's
  variant seed, ``mmh3.hash(s, 86028157, signed=False) % 100``, mapped onto the
  cumulative weights of the variants **sorted by name** (so JSONB key reordering
  never moves users).

A split or rollout that needs a missing bucketing value resolves to reason ``ERROR``,
``TARGETING_KEY_MISSING``, with the ``default_variant`` value (a rule's split) or the
``off_variant`` value (the rollout: an unknown user is outside it).

Results are precompiled :class:`Resolution` objects: evaluation allocates nothing on
the common paths.  Object variant values are shared between calls: treat as
read-only.
"""

from flags.engine.compiler import compile_snapshot
from flags.engine.evaluation import evaluate, evaluate_all
from flags.engine.model import (
    TYPES,
    Condition,
    ErrorCode,
    Flag,
    Prerequisite,
    Reason,
    Resolution,
    Rollout,
    Rule,
    Snapshot,
    SnapshotInvalid,
    bucket,
    variant_bucket,
)
from flags.engine.validation import OPERATORS, validate_snapshot_config
from flags.engine.values import type_of_value

__all__ = [
    "OPERATORS",
    "TYPES",
    "Condition",
    "ErrorCode",
    "Flag",
    "Prerequisite",
    "Reason",
    "Resolution",
    "Rollout",
    "Rule",
    "Snapshot",
    "SnapshotInvalid",
    "bucket",
    "compile_snapshot",
    "evaluate",
    "evaluate_all",
    "type_of_value",
    "validate_snapshot_config",
    "variant_bucket",
]
