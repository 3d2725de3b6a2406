"""The rules every policy follows: one root key, and the `id` and `date` the ledger adds.

The id rule: when the user gave none, `id` is the MD5 hex of the policy's canonical JSON (keys
sorted at every level, separators `,` and `:`, UTF-8 without ASCII escaping) computed with
`date`, `ledger` and `id` left out of the attributes.  The same policy inserted twice gets the
same id, on any node, whatever the key order it was written in.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from anylog_tw.base.errors import CommandError

AUTO_FIELDS = ("date", "ledger")  # left out of the id
MEMBER_RANGE = (1, 255)


class PolicyError(CommandError):
    """A policy that is not a one-root-key JSON object, or one the ledger refuses."""

    code = "bad_policy"


class DuplicatePolicy(PolicyError):
    code = "duplicate_policy"
    status = 409


# --- policies as values ---------------------------------------------------------------------


def parse_policy(text: str | dict) -> dict:
    """A policy from JSON text (or a dict), checked: one root key whose value is an object."""
    if isinstance(text, dict):
        policy = text
    else:
        try:
            policy = json.loads(text)
        except (TypeError, ValueError) as e:
            shown = text if len(text) < 60 else text[:57] + "..."
            raise PolicyError(f"the policy is not valid JSON ({e}): {shown!r}") from None
    validate(policy)
    return policy


def validate(policy) -> None:
    if not isinstance(policy, dict):
        raise PolicyError(f"a policy is a JSON object with one root key (its type), not {type(policy).__name__}")
    if len(policy) != 1:
        keys = ", ".join(repr(k) for k in list(policy)[:5]) or "none"
        raise PolicyError(f"a policy has exactly one root key, its type (e.g. {{\"operator\": {{...}}}}); "
                          f"this one has {len(policy)}: {keys}")
    ptype, inner = next(iter(policy.items()))
    if not isinstance(ptype, str) or not ptype.strip():
        raise PolicyError("the policy type (root key) is empty")
    if not isinstance(inner, dict):
        raise PolicyError(f"the value of the root key '{ptype}' must be a JSON object of attributes")


def canonical(policy: dict) -> str:
    return json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def policy_id(policy: dict) -> str:
    """The id rule: MD5 of the canonical JSON of the policy without `date` and `ledger` (nor `id`)."""
    ptype, inner = next(iter(policy.items()))
    stripped = {k: v for k, v in inner.items() if k not in AUTO_FIELDS and k != "id"}
    return hashlib.md5(canonical({ptype: stripped}).encode("utf-8")).hexdigest()


def iso_date(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prepare(policy: dict, now: float) -> dict:
    """A copy of the policy with `id` and `date` added where missing (`blockchain prepare policy`)."""
    validate(policy)
    ptype, inner = next(iter(policy.items()))
    inner = dict(inner)
    if not inner.get("id"):
        inner["id"] = policy_id(policy)
    elif not isinstance(inner["id"], str):
        inner["id"] = str(inner["id"])
    if not inner.get("date"):
        inner["date"] = iso_date(now)
    return {ptype: inner}


def to_line(policy: dict) -> str:
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)
