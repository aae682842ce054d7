"""normalize: a config as sent and the same config as a server returns it compare equal.

Pure functions, no server; feature tests (test_roundtrip, test_mutability) check the
same against real servers. Each case is a pair of configs that must (or must not)
have the same canonical form.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.models import Kind
from reconciler.normalize import (
    OWNER_KEY,
    canonical_consumer,
    canonical_stream,
    fingerprint,
    live_fingerprint,
    owner_of,
    paused_until,
    protected,
    user_metadata,
)

NS = 10**9


@pytest.mark.parametrize(
    ("sent", "returned"),
    [
        pytest.param(
            {"name": "S"},
            {"name": "S", "subjects": ["S"], "retention": "limits", "max_msgs": -1,
             "max_bytes": -1, "max_age": 0, "storage": "file", "num_replicas": 1,
             "discard": "old", "duplicate_window": 120 * NS},
            id="server defaults filled in equal an empty config",
        ),
        pytest.param(
            {"name": "S", "max_age": 60 * NS},
            {"name": "S", "max_age": 60 * NS, "duplicate_window": 60 * NS},
            id="duplicate_window defaults to max_age when shorter than 2m",
        ),
        pytest.param(
            {"name": "S", "max_msgs": 0},
            {"name": "S", "max_msgs": -1},
            id="a zero limit is unlimited",
        ),
        pytest.param(
            {"name": "S", "metadata": {"team": "a"}},
            {"name": "S", "metadata": {"team": "a", "_nats.level": "1", "_nats.ver": "2.12.0"}},
            id="server-reserved _nats metadata is ignored",
        ),
        pytest.param(
            {"name": "S", "description": ""},
            {"name": "S"},
            id="an empty description is no description",
        ),
        pytest.param(
            {"name": "M", "mirror": {"name": "S", "external": {"api": "$JS.leaf.API"}}},
            {"name": "M", "mirror": {"name": "S", "external": {"api": "$JS.leaf.API",
                                                               "deliver": ""}},
             "duplicate_window": 0},
            id="an empty external deliver prefix and a mirror's zero window",
        ),
    ],
)  # fmt: skip
def test_equal_streams(sent: dict[str, Any], returned: dict[str, Any]) -> None:
    assert canonical_stream(sent) == canonical_stream(returned)
    assert fingerprint(canonical_stream(sent)) == fingerprint(canonical_stream(returned))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param({"name": "S", "max_age": NS}, {"name": "S", "max_age": 2 * NS},
                     id="max_age"),
        pytest.param({"name": "S", "storage": "file"}, {"name": "S", "storage": "memory"},
                     id="storage"),
        pytest.param({"name": "S", "metadata": {"team": "a"}}, {"name": "S"},
                     id="user metadata"),
    ],
)  # fmt: skip
def test_different_streams(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert canonical_stream(a) != canonical_stream(b)


def test_a_stream_without_subjects_listens_on_its_name() -> None:
    assert canonical_stream({"name": "ORDERS"})["subjects"] == ["ORDERS"]
    # a mirror takes its subjects from its origin
    assert canonical_stream({"name": "M", "mirror": {"name": "ORDERS"}})["subjects"] is None


@pytest.mark.parametrize(
    ("sent", "returned", "stream"),
    [
        pytest.param(
            {"durable_name": "c", "ack_policy": "explicit"},
            {"durable_name": "c", "ack_policy": "explicit", "ack_wait": 30 * NS,
             "max_deliver": -1, "max_waiting": 512, "max_ack_pending": 1000,
             "deliver_policy": "all", "replay_policy": "instant"},
            None,
            id="consumer server defaults",
        ),
        pytest.param(
            {"durable_name": "c", "backoff": [NS, 5 * NS]},
            {"durable_name": "c", "backoff": [NS, 5 * NS], "ack_wait": NS},
            None,
            id="ack_wait defaults to the first backoff step",
        ),
        pytest.param(
            {"durable_name": "c"},
            {"durable_name": "c", "max_ack_pending": 50},
            {"consumer_limits": {"max_ack_pending": 50}},
            id="max_ack_pending inherited from the stream's consumer_limits",
        ),
        pytest.param(
            {"durable_name": "c", "pause_until": "2001-01-01T00:00:00Z"},
            {"durable_name": "c"},
            None,
            id="a past pause is no pause",
        ),
    ],
)  # fmt: skip
def test_equal_consumers(
    sent: dict[str, Any], returned: dict[str, Any], stream: dict[str, Any] | None
) -> None:
    assert canonical_consumer(sent, stream) == canonical_consumer(returned, stream)


def test_user_metadata_drops_reserved_keys_and_sorts() -> None:
    assert user_metadata({"b": "2", "_nats.req.level": "1", "a": "1"}) == {"a": "1", "b": "2"}
    assert user_metadata(None) == {}


def test_owner_and_protection_are_read_from_metadata() -> None:
    config = {"metadata": {OWNER_KEY: "shop", "jsops.prevent_destroy": "true"}}
    assert owner_of(config) == "shop" and protected(config)
    assert owner_of({}) is None and not protected({})


def test_paused_until_normalizes_to_utc() -> None:
    assert paused_until("2999-01-01T02:00:00+02:00") == "2999-01-01T00:00:00Z"
    assert paused_until(None) is None


def test_fingerprint_ignores_key_order_and_none_is_none() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint(None) is None
    live = {"name": "S", "max_age": NS}
    assert live_fingerprint(Kind.STREAM, live) == fingerprint(canonical_stream(live))


def _every_field(model: type[Any], depth: int = 0) -> Any:
    """An instance of ``model`` with every field set (nested models too), unvalidated."""
    import enum
    import types
    import typing

    from pydantic import BaseModel

    def value(tp: Any) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            return value(args[0])
        if origin in (typing.Union, types.UnionType):
            return value(next(a for a in args if a is not type(None)))
        if origin is typing.Literal:
            return args[0]
        if origin in (list, tuple, set, frozenset):
            return [value(args[0])] if args else []
        if origin is dict:
            return {"k": value(args[1])} if args else {}
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return _every_field(tp, depth + 1) if depth < 4 else None
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return list(tp)[-1]
        return {bool: True, int: 7, float: 1.5, str: "x"}.get(tp, "x")

    fields = {name: value(info.annotation) for name, info in model.model_fields.items()}
    return model.model_construct(**fields)


@pytest.mark.parametrize("kind", ["StreamSpec", "ConsumerSpec", "KeyValueSpec", "ObjectStoreSpec"])
def test_plain_is_what_pydantic_dumps(kind: str) -> None:
    """normalize.plain (a plan's view of a validated spec, without pydantic's serializer)
    gives what model_dump(exclude_none=True, mode="json") gives, for every field."""
    from reconciler import models
    from reconciler.normalize import plain

    spec = _every_field(getattr(models, kind))
    dumped = spec.model_dump(exclude_none=True, mode="json")
    assert len(dumped) == len(type(spec).model_fields)  # every field was set
    assert repr(plain(spec)) == repr(dumped)  # same values, types (no enum) and order
    sparse = getattr(models, kind).model_construct(**dict.fromkeys(type(spec).model_fields))
    assert plain(sparse) == sparse.model_dump(exclude_none=True, mode="json") == {}
