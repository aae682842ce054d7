"""The refusal gate (reconciler.refusals), table-driven, no server: which plan is
refused for what, which flag lifts it, and how each refusal reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from reconciler import render
from reconciler.diff import FieldDiff
from reconciler.environments import ProjectConfig
from reconciler.live import ServerIdentity
from reconciler.models import Address
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.refusals import ApplyOptions, Code, fingerprint, refusals, saved_plan_refusals

STREAM = Address("Stream", "S")
DEFAULT = ApplyOptions()
ALL = ApplyOptions(prune=True, allow_replace=True, allow_takeover=True, allow_empty_prune=True)


def change(action: Action, **kwargs: object) -> Change:
    kwargs.setdefault("location", "m.yaml:3:9")
    return Change(STREAM, action, **kwargs)  # type: ignore[arg-type]


CASES = [
    pytest.param(change(Action.UPDATE), DEFAULT, [], id="update: nothing to refuse"),
    pytest.param(
        change(Action.REPLACE, replace_reasons=("storage cannot change",)),
        DEFAULT,
        [Code.REPLACE],
        id="replace needs --allow-replace",
    ),
    pytest.param(
        change(Action.REPLACE), ApplyOptions(allow_replace=True), [], id="replace allowed"
    ),
    pytest.param(change(Action.DELETE), DEFAULT, [Code.DELETE], id="delete needs --prune"),
    pytest.param(change(Action.DELETE), ApplyOptions(prune=True), [], id="delete with prune"),
    pytest.param(
        change(Action.REPLACE, prevent_destroy=True), ALL, [Code.PREVENT_DESTROY], id="protected"
    ),
    pytest.param(
        change(Action.DELETE, prevent_destroy=True), ALL, [Code.PREVENT_DESTROY], id="protected del"
    ),
    pytest.param(change(Action.UPDATE, owner="billing"), DEFAULT, [Code.TAKEOVER], id="takeover"),
    pytest.param(
        change(Action.UPDATE, owner="billing"),
        ApplyOptions(allow_takeover=True),
        [],
        id="takeover allowed",
    ),
    pytest.param(
        change(Action.REPLACE, owner="billing"),
        ApplyOptions(allow_replace=True),
        [Code.TAKEOVER],
        id="a takeover replace needs both flags",
    ),
]


@pytest.mark.parametrize(("the_change", "options", "codes"), CASES)
def test_gate(the_change: Change, options: ApplyOptions, codes: list[Code]) -> None:
    plan = Plan("dev", "p", [the_change], declared=1)
    assert [r.code for r in refusals(plan, None, options)] == codes


def test_environment_without_deletes_refuses_replace_and_delete_whatever_the_flags() -> None:
    cfg = ProjectConfig.model_validate(
        {"project": "p", "environments": {"dev": {}, "prod": {"allow_delete": False}}}
    )
    changes = [
        Change(Address("Stream", "A"), Action.DELETE),
        Change(Address("Stream", "B"), Action.REPLACE, location="m.yaml:3:9"),
        Change(Address("Stream", "C"), Action.UPDATE),
        Change(Address("Consumer", "c", stream="C"), Action.CREATE),
    ]
    found = refusals(Plan("prod", "p", changes, declared=3), cfg, ALL)
    why = 'environment "prod" does not allow deletes or replaces (allow_delete: false in '
    why += "jsops.yaml)"
    assert [render.refusal_text(r) for r in found] == [
        f"Stream A: delete refused: {why}",
        f"m.yaml:3:9: Stream B: replace refused: {why}",
    ]
    assert refusals(Plan("dev", "p", changes, declared=3), cfg, ALL) == []


def test_prune_with_nothing_declared_is_refused_unless_allowed() -> None:
    plan = Plan("dev", "p", [change(Action.DELETE)], prune=True, declared=0)
    found = refusals(plan, None, ApplyOptions(prune=True))
    assert [r.code for r in found] == [Code.EMPTY_PRUNE]
    assert "--allow-empty-prune" in render.refusal_text(found[0])
    assert refusals(plan, None, ApplyOptions(prune=True, allow_empty_prune=True)) == []


def test_wording_names_the_flag_and_the_loss() -> None:
    replace = change(
        Action.REPLACE,
        replace_reasons=("storage cannot change",),
        loss={"messages": 3, "bytes": 1024, "consumers": 0},
    )
    takeover = change(Action.UPDATE, owner="billing")
    lines = [
        render.refusal_text(r)
        for r in refusals(Plan("dev", "p", [replace, takeover], declared=1), None, DEFAULT)
    ]
    assert lines == [
        "m.yaml:3:9: Stream S: replace needs --allow-replace (storage cannot change) "
        "(would lose 3 messages (1KiB))",
        'm.yaml:3:9: Stream S: update refused: owned by project "billing" (jsops.owner); '
        "--allow-takeover takes it over",
    ]


# ------------------------------------------------------------------ saved plans


def _identity(**kwargs: str | None) -> ServerIdentity:
    return ServerIdentity(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("saved", "fresh", "refused"),
    [
        pytest.param({"server_name": "a"}, {"server_name": "a"}, False, id="same server"),
        pytest.param({"server_name": "a"}, {"server_name": "b"}, True, id="another server"),
        pytest.param(
            {"cluster": "c1", "server_name": "n1"},
            {"cluster": "c1", "server_name": "n2"},
            False,
            id="another node of the cluster",
        ),
        pytest.param({"cluster": "c1"}, {"cluster": "c2"}, True, id="another cluster"),
        pytest.param({"domain": "leaf"}, {"domain": "hub"}, True, id="another domain"),
        pytest.param({"account": "A"}, {"account": "B"}, True, id="another account"),
        pytest.param({"account": None}, {"account": "B"}, False, id="account unknown once"),
    ],
)
def test_saved_plan_identity(saved: dict[str, str], fresh: dict[str, str], refused: bool) -> None:
    changes = [change(Action.UPDATE)]
    old = Plan("dev", "p", changes, identity=_identity(**saved), declared=1)
    new = Plan("dev", "p", changes, identity=_identity(**fresh), declared=1)
    codes = [r.code for r in saved_plan_refusals(old, new)]
    assert codes == ([Code.SAVED_IDENTITY] if refused else [])


def test_saved_plan_compares_what_apply_does_not_what_moves_on_its_own() -> None:
    ident = _identity(server_name="s1")
    base = change(Action.UPDATE, send={"max_age": 1}, loss={"messages": 1}, live_digest="d")
    old = Plan("dev", "p", [base], identity=ident, declared=1)
    moved = Plan(
        "dev",
        "p",
        [dataclasses.replace(base, loss={"messages": 9}, location="m.yaml:9:1")],
        identity=ident,
        declared=1,
    )
    assert saved_plan_refusals(old, moved) == []  # loss counts and lines move on their own
    edited = Plan(
        "dev", "p", [dataclasses.replace(base, send={"max_age": 2})], identity=ident, declared=1
    )
    found = saved_plan_refusals(old, edited)
    assert [render.refusal_text(r) for r in found] == [
        "m.yaml:3:9: Stream S: differs from a plan made now (send)"
    ]


def _field_changed(name: str, value: object) -> Change:
    return dataclasses.replace(BASE, **{name: value})


BASE = change(
    Action.UPDATE,
    diff=(FieldDiff("max_age", 1, 2),),
    send={"max_age": 2, "subjects": ["a.>"]},
    loss={"messages": 1},
    live_digest="d",
    depends_on=("Stream T",),
)
EDITS = [
    ("address", Address("Stream", "S", account="A")),
    ("action", Action.REPLACE),
    ("diff", (FieldDiff("max_age", 1, 3),)),
    ("reason", Reason.NEW),
    ("replace_paths", ("storage",)),
    ("replace_reasons", ("storage cannot change",)),
    ("destructive", True),
    ("loss_paths", ("max_msgs",)),
    ("live_digest", "e"),
    ("drift", True),
    ("send", {"max_age": 2, "subjects": ["b.>"]}),
    ("send", {"max_age": 2.0, "subjects": ["a.>"]}),  # equal in Python, not on the wire
    ("prevent_destroy", True),
    ("depends_on", ()),
    ("external_refs", ("Stream X (not declared here)",)),
    ("owner", "other"),
]


@pytest.mark.parametrize(("name", "value"), EDITS, ids=[f"{n}={v!r}" for n, v in EDITS])
def test_a_fingerprint_changes_with_every_compared_field(name: str, value: object) -> None:
    assert fingerprint(_field_changed(name, value)) != fingerprint(BASE)


def test_a_fingerprint_ignores_what_moves_on_its_own_and_the_objects_holding_it() -> None:
    moved = dataclasses.replace(BASE, loss={"messages": 9}, location="m.yaml:9:1")
    assert fingerprint(moved) == fingerprint(BASE)
    # a change as a plan file gives it back: lists, new objects, the enums as strings
    again = Change(
        Address("Stream", "S"),
        Action("update"),
        diff=[FieldDiff("max_age", 1, 2)],  # type: ignore[arg-type]
        send={"max_age": 2, "subjects": ["a.>"]},
        live_digest="d",
        depends_on=["Stream T"],  # type: ignore[arg-type]
    )
    assert fingerprint(again) == fingerprint(BASE)
    assert {f for f in Change.__slots__} - {n for n, _ in EDITS} == {"loss", "location"}


def test_matching_fingerprints_skip_reading_the_saved_changes() -> None:
    ident = _identity(server_name="s1")
    old = Plan("dev", "p", [BASE], identity=ident, declared=1)
    edited = Plan("dev", "p", [_field_changed("owner", "x")], identity=ident, declared=1)

    def unread() -> Iterator[Change]:
        raise AssertionError("the saved changes were read")
        yield BASE

    prints = {BASE.key: fingerprint(BASE)}
    assert saved_plan_refusals(old, old, unread(), prints) == []
    found = saved_plan_refusals(old, edited, iter([BASE]), prints)  # read to say where
    assert [r.detail for r in found] == ["differs from a plan made now (owner)"]
