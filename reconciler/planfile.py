"""The plan's JSON form (``plan --format json`` and ``plan --out FILE``).

The only module that knows the file shape (DESIGN section 6). ``changes`` lists what
apply will do, in apply order; unchanged resources are only counted in ``summary``
(``noop``) and kept, in the same shape, under ``unchanged``. Readers ignore keys they
do not know; keys are only ever added. A file with another ``format_version`` is
refused with a sentence naming the supported one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar, cast

from reconciler.diff import FieldDiff
from reconciler.errors import JsopsError
from reconciler.live import ServerIdentity
from reconciler.models import Address, Kind
from reconciler.parse_cache import _dump, _unpickle
from reconciler.plan import Action, Change, Plan, Reason
from reconciler.printable import terminal
from reconciler.refusals import fingerprint, shown_refusals

FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def change_to_json(change: Change) -> dict[str, Any]:
    address = change.address
    reason = change.reason
    return {
        "action": _JSON_VALUE[change.action],
        "kind": address.kind,
        "name": address.name,
        "stream": address.stream,
        "account": address.account,
        "destructive": change.destructive,
        "reason": _JSON_VALUE[reason] if reason else None,
        "drift": change.drift,
        "diff": [d.to_json() for d in change.diff],
        "replace_paths": list(change.replace_paths),
        "replace_reasons": list(change.replace_reasons),
        "loss": change.loss,
        "loss_paths": list(change.loss_paths),
        "location": change.location,
        "prevent_destroy": change.prevent_destroy,
        "depends_on": list(change.depends_on),
        "external_refs": list(change.external_refs),
        "owner": change.owner,
        "refused": [
            {"code": r.code.value, "detail": r.detail or None, "override": r.override}
            for r in shown_refusals(change)
        ],
        "live_digest": change.live_digest,
        "send": change.send,
    }


def plan_to_json(plan: Plan, *, lazy: bool = False) -> dict[str, Any]:
    """The plan file's document; with ``lazy``, its change lists are generators (made as
    :func:`write_document` writes them: a plan of 40,000 never holds them all)."""
    changes = (change_to_json(c) for c in plan.changes if c.action is not Action.NOOP)
    unchanged = (change_to_json(c) for c in plan.changes if c.action is Action.NOOP)
    return {
        "format_version": FORMAT_VERSION,
        "environment": plan.environment,
        "project": plan.project,
        "api_level": plan.api_level,
        "server_version": plan.server_version,
        "created_at": plan.created_at,
        "identity": plan.identity.to_json() if plan.identity else None,
        "prune": plan.prune,
        "targets": list(plan.targets),
        "declared": plan.declared,
        "changes": changes if lazy else list(changes),
        "summary": plan.summary,
        "unchanged": unchanged if lazy else list(unchanged),
        "unmanaged": list(plan.unmanaged),
    }


def dumps(plan: Plan) -> str:
    return document_json(plan_to_json(plan))


def dump(plan: Plan, out: TextIO) -> None:
    """Write the plan's JSON document (what :func:`dumps` gives) to ``out``, a line at a time."""
    write_document(plan_to_json(plan, lazy=True), out)


def document_json(document: dict[str, Any]) -> str:
    """A JSON document as jsops prints it (:func:`write_document`), as one string."""
    out = io.StringIO()
    write_document(document, out)
    return out.getvalue()


def write_document(document: dict[str, Any], out: TextIO) -> None:
    """Write a JSON document as jsops prints it: one top-level key a line, and each item
    of a top-level list (or iterator) on its own line, in compact form.

    ``json.dumps(indent=...)`` runs Python's pure encoder (the C one takes no indent):
    for a plan or status of 40,000 resources it cost seconds and ~170 MB of string
    pieces. Each line here is one C-encoded value, written as it is made; the result is
    still one JSON value, and reads (and diffs) a resource a line.

    Text stays UTF-8 as it is, but a C1, DEL or bidi control inside a string (a name or
    a server's description: ``reconciler.printable``) is written as its ``\\u`` escape,
    the same JSON value, so printing the file cannot drive a terminal or reorder a line
    (JSON escapes C0 itself; an ASCII line is not looked at again)."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode

    def one(value: Any) -> str:
        text = encode(value)
        return text if text.isascii() else terminal(text)

    out.write("{\n")
    last = len(document) - 1
    for i, (key, value) in enumerate(document.items()):
        comma = "," if i < last else ""
        items = iter(value) if isinstance(value, (list, Iterator)) else None
        first = next(items, _NOTHING) if items is not None else _NOTHING
        if first is _NOTHING:
            out.write(f"  {one(key)}: {one([] if items is not None else value)}{comma}\n")
            continue
        assert items is not None
        out.write(f"  {one(key)}: [\n    {one(first)}")
        for item in items:
            out.write(f",\n    {one(item)}")
        out.write(f"\n  ]{comma}\n")
    out.write("}\n")


_NOTHING = object()


E = TypeVar("E", bound=StrEnum)

# A plan file's enum values by their JSON spelling: a dict lookup, not the enum's own
# call (with its error path), for each of the 40,000 changes a large plan file holds.
_BY_VALUE: dict[type[StrEnum], dict[Any, StrEnum]] = {
    enum: {member.value: member for member in enum} for enum in (Kind, Action, Reason)
}
# and the other way, for each change written (an enum's ``.value`` is a slow property)
_JSON_VALUE: dict[StrEnum, str] = {
    member: value for by_value in _BY_VALUE.values() for value, member in by_value.items()
}


def _enum(enum: type[E], value: Any, what: str) -> E:
    member = _BY_VALUE[enum].get(value) if isinstance(value, str) else None
    if member is None:
        raise JsopsError(f"unknown {what} {value!r}")
    return cast(E, member)


def _strings(value: Any) -> tuple[Any, ...]:
    """A list of the plan file as the tuple a Change holds (none: the shared empty one)."""
    return tuple(value) if value else ()


_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_BOOL = (bool, type(None))
_LIST = (list, type(None))
# The shape of each field of a change in a plan file, checked before it is made into one:
# a file is input from anywhere (CI artifacts), and a value of the wrong type must be
# named here, not fail later where it is printed or compared.
_CHANGE_SHAPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("name", _STR),
    ("stream", _OPT_STR),
    ("account", _OPT_STR),
    ("location", _OPT_STR),
    ("live_digest", _OPT_STR),
    ("owner", _OPT_STR),
    ("destructive", _OPT_BOOL),
    ("drift", _OPT_BOOL),
    ("prevent_destroy", _OPT_BOOL),
    ("diff", _LIST),
    ("replace_paths", _LIST),
    ("replace_reasons", _LIST),
    ("loss_paths", _LIST),
    ("depends_on", _LIST),
    ("external_refs", _LIST),
    ("loss", (dict, type(None))),
    ("send", (dict, type(None))),
)
_STRING_LISTS = ("replace_paths", "replace_reasons", "loss_paths", "depends_on", "external_refs")


def _check_change(data: Any) -> None:
    """Raise a JsopsError naming the first field of ``data`` that has the wrong shape."""
    if type(data) is not dict:
        raise JsopsError(f"a change is {_json_type(data)}, not an object")
    get = data.get
    for key, types in _CHANGE_SHAPES:
        if type(get(key)) not in types:
            raise JsopsError(f"{key} is {_json_type(get(key))}")
    for key in _STRING_LISTS:
        if any(type(item) is not str for item in get(key) or ()):
            raise JsopsError(f"{key} holds something other than strings")
    for i, d in enumerate(get("diff") or ()):
        if type(d) is not dict or type(d.get("path")) is not str:
            raise JsopsError(f"diff.{i} has no path string")
    loss = get("loss")
    if loss and any(type(v) is not int or type(k) is not str for k, v in loss.items()):
        raise JsopsError("loss holds something other than counts")


def _json_type(value: Any) -> str:
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string")):
        if isinstance(value, types):
            return name
    return {dict: "an object", list: "a list", type(None): "null"}.get(type(value), "a value")


def change_from_json(data: dict[str, Any]) -> Change:
    _check_change(data)
    get = data.get
    reason = get("reason")
    diff = get("diff")
    return Change(
        address=Address(
            _enum(Kind, data["kind"], "kind"), data["name"], get("stream"), get("account")
        ),
        action=_enum(Action, data["action"], "action"),
        diff=tuple(FieldDiff(d["path"], d.get("before"), d.get("after")) for d in diff)
        if diff
        else (),
        reason=_enum(Reason, reason, "reason") if reason else None,
        replace_paths=_strings(get("replace_paths")),
        replace_reasons=_strings(get("replace_reasons")),
        destructive=bool(get("destructive")),
        loss=get("loss"),
        loss_paths=_strings(get("loss_paths")),
        location=get("location"),
        live_digest=get("live_digest"),
        drift=bool(get("drift")),
        send=get("send"),
        prevent_destroy=bool(get("prevent_destroy")),
        depends_on=_strings(get("depends_on")),
        external_refs=_strings(get("external_refs")),
        owner=get("owner"),
    )


# What plain data of the wrong shape raises when a Plan or Change is made of it.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError)


def plan_from_json(data: dict[str, Any]) -> Plan:
    """The plan a plan file's decoded document holds."""
    return _plan(
        data,
        lambda: tuple(
            change_from_json(c) for c in [*data["changes"], *(data.get("unchanged") or [])]
        ),
    )


def _plan(data: dict[str, Any], changes: Callable[[], tuple[Change, ...]]) -> Plan:
    """The plan of a decoded document whose changes ``changes()`` gives (or raises about):
    the format is checked first, so a file of another version is named as such."""
    if not isinstance(data, dict) or "format_version" not in data or "changes" not in data:
        raise JsopsError("not a jsops plan (no format_version or changes)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise JsopsError(
            f"plan file has format_version {version!r}; this jsops reads format_version "
            f"{FORMAT_VERSION} (make the plan again with this version)"
        )
    _check_plan(data)
    try:
        identity = data.get("identity")
        return Plan(
            environment=data["environment"],
            project=data.get("project", ""),
            changes=changes(),
            api_level=int(data.get("api_level", 0)),
            server_version=data.get("server_version", ""),
            created_at=data.get("created_at", ""),
            unmanaged=tuple(data.get("unmanaged") or ()),
            identity=ServerIdentity(**{k: identity.get(k) for k in ServerIdentity.FIELDS})
            if isinstance(identity, dict)
            else None,
            prune=bool(data.get("prune")),
            targets=tuple(data.get("targets") or ()),
            declared=int(data.get("declared", 0)),
        )
    except _MALFORMED as exc:
        raise JsopsError(f"plan file is malformed: {exc}") from None


_PLAN_SHAPES: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("environment", _STR),
    ("project", _OPT_STR),
    ("server_version", _OPT_STR),
    ("created_at", _OPT_STR),
    ("api_level", (int, type(None))),
    ("declared", (int, type(None))),
    ("prune", _OPT_BOOL),
    ("identity", (dict, type(None))),
    ("unmanaged", _LIST),
    ("targets", _LIST),
)


def _check_plan(data: dict[str, Any]) -> None:
    """Raise a JsopsError naming the first top-level field with the wrong shape."""
    for key, types in _PLAN_SHAPES:
        if type(data.get(key)) not in types:
            raise JsopsError(f"plan file is malformed: {key} is {_json_type(data.get(key))}")
    for key in ("unmanaged", "targets"):
        if any(type(item) is not str for item in data.get(key) or ()):
            raise JsopsError(f"plan file is malformed: {key} holds something other than strings")
    identity = data.get("identity") or {}
    if any(type(identity.get(k)) not in _OPT_STR for k in ServerIdentity.FIELDS):
        raise JsopsError("plan file is malformed: identity holds something other than strings")


def write_plan(plan: Plan, path: str | Path) -> None:
    """Write the plan file, readable by its owner only (0600, also when it existed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            dump(plan, handle)
    except OSError as exc:
        raise JsopsError(f"{path}: cannot write the plan file ({exc.strerror or exc})") from None


def read_plan(path: str | Path) -> Plan:
    """The plan in a plan file (``show``). The file is decoded a few lines at a time and
    each change made as soon as it is decoded (:func:`decode_object`): the plain data of
    40,000 changes is never held at once (``json.loads`` of a 16 MB plan peaked at
    59 MB; its changes hold 15)."""
    return _read_file(path, keep=True)[0]


@dataclass
class SavedPlan:
    """A plan file as ``apply PLANFILE`` reads it: ``plan`` is its plan without its
    changes (what to plan again with: environment, prune, targets, identity), and each
    change kept as its fingerprint (:meth:`fingerprints`, ``refusals.fingerprint``):
    a fresh plan with exactly those is the saved one. Only a fresh plan that differs
    has :meth:`changes` read them again from the file, one at a time, to say where.

    Every change is checked before anything connects (:meth:`verify`); they are not kept
    meanwhile: a saved plan of 40,000 changes held 16 MB beside the fresh plan it is
    compared with, which put ``apply PLANFILE`` at 10,000 streams over 200 MB (their
    fingerprints hold 6). ``digest`` (SHA-256 of the file) makes sure changes read again
    are the ones checked, under this header: a file changed in between is refused."""

    path: Path
    plan: Plan
    digest: bytes
    _prints: dict[str, bytes] | None = None  # key -> fingerprint, once known
    _check: _Check | None = None  # the check of every change, still running elsewhere
    _printing: _Check | None = None  # that check, making the fingerprints after it

    def verify(self) -> None:
        """Wait for the check of the file's changes if it still runs (:func:`open_saved_plan`)
        and raise what it found: the error reading the whole file here would give."""
        check, self._check = self._check, None
        if check is None:
            return
        found = check.result()
        if found is not None and "error" in found:
            raise JsopsError(found["error"])
        if found is None or not found["same"]:  # it failed, or the file is not as begun
            if found is not None:
                check.stop()
                log.info("the plan file's header goes on after its changes: reading it here")
            self._prints = {}
            self.plan, self.digest = _read_file(self.path, keep=False, prints=self._prints)
            return
        self.plan = replace(self.plan, unmanaged=tuple(found["unmanaged"]))
        self.digest = found["digest"]
        self._printing = check

    def fingerprints(self) -> dict[str, bytes] | None:
        """Each change's fingerprint by its key (None: not known, compare the changes)."""
        self.verify()
        printing, self._printing = self._printing, None
        if printing is not None:
            self._prints = printing.fingerprints()
        return self._prints

    def stop(self) -> None:
        """Stop a check still running (the apply ends before it is needed)."""
        for check in (self._check, self._printing):
            if check is not None:
                check.stop()
        self._check = self._printing = None

    @contextmanager
    def named_first(self) -> Iterator[None]:
        """A block run while the check may still run: an error it raises comes after the
        plan file's own, if any (as when the file was read whole first); an interrupt
        stops the check."""
        try:
            yield
        except Exception:
            try:
                self.verify()
            except JsopsError as problem:
                raise problem from None  # the error the file read first gives, alone
            raise
        except BaseException:
            self.stop()
            raise

    def changes(self) -> Iterator[Change]:
        self.verify()
        changed = JsopsError(
            f"{self.path}: the plan file changed while jsops planned again; nothing was applied"
        )
        try:
            with self.path.open("rb") as handle:
                reader = _Reader(handle)
                for kind, _, item in _members(reader, _CHANGE_LISTS):
                    if kind is _Member.ITEM:
                        yield change_from_json(item)
                if reader.digest.digest() != self.digest:
                    raise changed
        except OSError as exc:
            raise JsopsError(f"{self.path}: cannot read the plan file again ({exc})") from None
        except (JsopsError, *_MALFORMED):
            raise changed from None  # (the file as first read held none of these)


def read_saved_plan(path: str | Path) -> SavedPlan:
    """The plan file to apply (:class:`SavedPlan`): read and checked whole, changes kept
    out of memory."""
    prints: dict[str, bytes] = {}
    plan, digest = _read_file(path, keep=False, prints=prints)
    return SavedPlan(Path(path), plan, digest, prints)


def _add_fingerprint(prints: dict[str, bytes], change: Change) -> None:
    key = change.key  # a key listed twice matches no fresh change: compared one by one
    prints[key] = b"" if key in prints else fingerprint(change)


# A plan file of this many bytes (about 1,200 changes) or more is checked in a forked
# process while the manifests are validated: reading 39,700 changes takes 0.5 s, as
# long as loading the manifests of a warm 10,000-stream plan, one after the other.
MIN_BACKGROUND_CHECK = 512 * 1024


def open_saved_plan(path: str | Path) -> SavedPlan:
    """The plan file to apply, as :func:`read_saved_plan` gives it, except that a large
    file's changes are checked in a forked copy of this process (``reconciler.workers``)
    while this one goes on: its header is read here, from the members before the first
    change list, and :meth:`SavedPlan.verify` (which the apply calls before it connects)
    waits for the check. The check also reads the header again from the whole file: a
    file whose members after its changes say otherwise is read whole here instead, as is
    any file where a fork is not safe or is refused."""
    from reconciler.workers import fork, may_fork

    path = Path(path)
    try:
        large = path.stat().st_size >= MIN_BACKGROUND_CHECK
    except OSError:
        large = False
    head = _read_head(path) if large and may_fork() else None
    if head is None:
        return read_saved_plan(path)
    try:
        pid, pipe = fork(lambda out: _check_file(path, head, out))
    except OSError:
        return read_saved_plan(path)
    return SavedPlan(path, head, b"", _check=_Check(pid, pipe, time.perf_counter()))


def _read_head(path: Path) -> Plan | None:
    """The plan (no changes) that the members before the file's first change list make;
    None when they do not make one (the whole file's read says why)."""
    head: dict[str, Any] = {}
    try:
        with path.open("rb") as handle:
            for kind, key, value in _members(_Reader(handle), _CHANGE_LISTS):
                if kind is not _Member.VALUE:
                    break
                head[key] = value
            else:
                return None
        return _plan({**head, "changes": []}, lambda: ())
    except (OSError, ValueError, RecursionError, JsopsError):
        return None


def _check_file(path: Path, head: Plan, out: BinaryIO) -> None:
    """In the checking process: the whole file read as :func:`read_saved_plan` reads it;
    what the parent needs first (its digest, whether its header is ``head``, what comes
    after the changes; or the error), then the changes' fingerprints, which the parent
    reads only once it has planned again (made meanwhile, they keep it waiting less)."""
    try:
        plan, digest = _read_file(path, keep=True)
    except JsopsError as exc:
        _dump({"error": str(exc)}, out)
        return
    same = replace(plan, changes=(), unmanaged=()) == head
    _dump({"same": same, "digest": digest, "unmanaged": list(plan.unmanaged)}, out)
    out.flush()
    prints: dict[str, bytes] = {}
    for change in plan.changes:
        _add_fingerprint(prints, change)
    _dump(prints, out)


@dataclass
class _Check:
    """A forked process checking a plan file (:func:`open_saved_plan`)."""

    pid: int
    pipe: BinaryIO
    started: float

    def result(self) -> dict[str, Any] | None:
        """What the check found, or None when it failed (read the file here instead)."""
        waited = time.perf_counter()
        try:
            found = _unpickle(self.pipe)
        except Exception:  # it died mid-write, or wrote nothing
            found = None
        ok = isinstance(found, dict) and (
            isinstance(found.get("error"), str)
            or (
                isinstance(found.get("same"), bool)
                and isinstance(found.get("digest"), bytes)
                and isinstance(found.get("unmanaged"), list)
            )
        )
        now = time.perf_counter()
        log.info(
            "checked the plan file in another process (%.2f s, %.2f s of it waited for): %s",
            now - self.started,
            now - waited,
            "done" if ok else "it failed, reading it here",
        )
        if not ok or "error" in found:
            self.stop()
        return found if ok else None

    def fingerprints(self) -> dict[str, bytes] | None:
        """The fingerprints it made after its result, or None if it did not finish."""
        from reconciler.workers import reaped

        try:
            prints = _unpickle(self.pipe)
        except Exception:
            prints = None
        finally:
            self.pipe.close()
        if not (reaped(self.pid, kill=False) and isinstance(prints, dict)):
            return None
        if not all(type(k) is str and type(v) is bytes for k, v in prints.items()):
            return None
        return prints

    def stop(self) -> None:
        from reconciler.workers import reaped

        self.pipe.close()
        reaped(self.pid, kill=True)


_CHANGE_LISTS = frozenset({"changes", "unchanged"})


def _read_file(
    path: str | Path, *, keep: bool, prints: dict[str, bytes] | None = None
) -> tuple[Plan, bytes]:
    """The plan a plan file holds (with its changes if ``keep``, else each only made, to
    check it) and the file's SHA-256; one located error for anything wrong. ``prints``
    gets each change's fingerprint (``refusals.fingerprint``) by its key."""
    problem: list[Exception] = []
    count = [0]

    def change(item: Any) -> Change | None:
        if problem:
            return None
        count[0] += 1
        try:
            made = change_from_json(item)
        except (JsopsError, *_MALFORMED) as exc:  # raised once the format is known
            problem.append(JsopsError(f"plan file is malformed: change {count[0]}: {exc}"))
            return None
        if prints is not None:
            _add_fingerprint(prints, made)
        return made if keep else None

    def changes() -> tuple[Change, ...]:
        if problem:
            raise problem[0]
        return (*data["changes"], *(data.get("unchanged") or [])) if keep else ()

    try:
        with Path(path).open("rb") as handle:
            reader = _Reader(handle)
            data = decode_object(reader, each=change, lists=_CHANGE_LISTS)
    except FileNotFoundError:
        raise JsopsError(f"{path}: plan file not found") from None
    except (OSError, ValueError) as exc:
        raise JsopsError(f"{path}: not a jsops plan file ({exc})") from None
    except RecursionError:  # [[[[...: the decoder's own recursion
        raise JsopsError(f"{path}: not a jsops plan file (nested too deeply)") from None
    if not isinstance(data, dict):
        raise JsopsError(f"{path}: not a jsops plan file")
    try:
        return _plan(data, changes), reader.digest.digest()
    except JsopsError as exc:
        raise JsopsError(f"{path}: {exc}") from None


def decode_object(reader: _Reader, *, each: Callable[[Any], Any], lists: Iterable[str]) -> Any:
    """``json.load`` of what ``reader`` reads, except that when it is an object, each item
    of its top-level lists named in ``lists`` is replaced by ``each(item)`` as soon as it
    is decoded.

    Any JSON is read as ``json.loads`` reads it (the same decoder runs on each value),
    except that a key repeated at the top level is an error (:func:`_members`); errors
    are ``ValueError`` naming the position."""
    if reader.next_char() != "{":
        value = reader.value()
        reader.end()
        return value
    document: dict[str, Any] = {}
    for kind, key, value in _members(reader, frozenset(lists)):
        if kind is _Member.VALUE:
            document[key] = value
        elif kind is _Member.LIST:
            document[key] = []
        else:
            document[key].append(each(value))
    return document


class _Member(Enum):
    VALUE = "a member's value"
    LIST = "a streamed list begins"
    ITEM = "an item of that list"


def _members(reader: _Reader, lists: frozenset[str]) -> Iterator[tuple[_Member, str, Any]]:
    """The members of the JSON object ``reader`` reads, as they are decoded:
    (VALUE, key, value), or for a list named in ``lists``, (LIST, key, None) then
    (ITEM, key, item) for each of its items. The object must be all the text, and no
    key may come twice: ``json.loads`` keeps the last, a reader that stops early (the
    header of :func:`open_saved_plan`) the first, and a plan file must mean one thing."""
    reader.expect("{")
    closed = reader.next_char() == "}"
    reader.pos += closed
    seen: set[str] = set()
    while not closed:
        at = reader.at
        key = reader.value()
        if not isinstance(key, str):
            raise ValueError(f"expected a key (a string) at char {reader.at}")
        if key in seen:
            raise ValueError(f"the key {key!r} comes twice (at char {at})")
        seen.add(key)
        reader.expect(":")
        if key in lists and reader.next_char() == "[":
            yield _Member.LIST, key, None
            reader.pos += 1
            end = reader.next_char() == "]"
            reader.pos += end
            while not end:
                yield _Member.ITEM, key, reader.value()
                end = reader.expect(",]") == "]"
        else:
            yield _Member.VALUE, key, reader.value()
        closed = reader.expect(",}") == "}"
    reader.end()


_SPACE = re.compile(r"[ \t\n\r]*")
_CHUNK = 1 << 16


class _Reader:
    """A JSON text read from a binary file a few whole lines at a time (about ``chunk``
    bytes, more while one value needs it), with the SHA-256 of what it read.

    A JSON token never spans a line (a string holds no raw line break), so a value that
    does not decode from what has been read either ends beyond it (the decoder stops
    at the end of the text: read more, twice as much, and decode again) or is wrong."""

    def __init__(self, handle: BinaryIO, chunk: int = _CHUNK) -> None:
        self.handle, self.chunk = handle, chunk
        self.text = ""
        self.pos = 0
        self.dropped = 0  # characters read before ``text``
        self.digest = hashlib.sha256()
        self._decode = json.JSONDecoder().raw_decode

    @property
    def at(self) -> int:
        return self.dropped + self.pos

    def _more(self) -> bool:
        chunk = b"".join(self.handle.readlines(max(self.chunk, len(self.text))))
        if not chunk:
            return False
        self.digest.update(chunk)
        self.dropped += self.pos
        self.text = self.text[self.pos :] + chunk.decode("utf-8")
        self.pos = 0
        return True

    def next_char(self) -> str:
        """The next character that is not white space (not taken), "" at the end."""
        while True:
            match = _SPACE.match(self.text, self.pos)
            assert match is not None  # the pattern matches the empty string
            self.pos = match.end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self._more():
                return ""

    def expect(self, chars: str) -> str:
        found = self.next_char()
        if not found or found not in chars:
            expected = " or ".join(map(repr, chars))
            raise ValueError(f"expected {expected} at char {self.at}, not {found or 'the end'!r}")
        self.pos += 1
        return found

    def value(self) -> Any:
        self.next_char()
        while True:
            try:
                value, self.pos = self._decode(self.text, self.pos)
                return value
            except json.JSONDecodeError as exc:
                if self.text[exc.pos :].strip(" \t\n\r") or not self._more():
                    raise ValueError(f"{exc.msg} at char {self.dropped + exc.pos}") from None

    def end(self) -> None:
        if self.next_char():
            raise ValueError(f"extra data at char {self.at}")
