"""The parse cache: a manifest file's parsed documents, keyed by its rendered text.

Parsing YAML (libyaml's compose, the bounds check, building plain data) is most of
what a plan of an unchanged repository spends before it reads the server. Like
ruff's and mypy's caches, this one keeps the result per file, keyed by a hash of the
file's rendered text, its shown path and the parser's own fingerprint (the source of
``reconciler.load``, ruamel.yaml's version and its C extension's file), so any change
to the text, to a template's values or to the parser misses.

What is kept is only what ``parse()`` returns for a file without problems: the plain
data of each document and where it starts. The second kind of entry (the end of this
module) keeps an environment's validated resources, for a repository whose every input
to validation is unchanged.

Trust: the cache lives outside the repository (``$JSOPS_CACHE_DIR``, else
``$XDG_CACHE_HOME/jsops``, else ``~/.cache/jsops``), in a directory only its owner may
use: a pull request cannot plant entries in a CI runner's cache, and a directory or
file that another user could write is ignored. A corrupt or foreign file is a miss,
never an error. ``JSOPS_NO_CACHE=1`` (or ``--no-cache``) turns it off.

One file per project directory holds every entry; it is rewritten atomically only
when an entry was added, keeping the entries used by this run and the most recently
used others (up to :data:`MAX_ENTRIES`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

FORMAT = 2  # 2: each file's documents kept as their own JSON text
MAX_ENTRIES = 50_000  # files; entries unused longest go first

# One cached document: [index, start_line, name_line, name_col, name_rendered, data]
Entry = list[Any]


def enabled() -> bool:
    return os.environ.get("JSOPS_NO_CACHE", "") in ("", "0")


def cache_dir() -> Path:
    explicit = os.environ.get("JSOPS_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "jsops"


@cache
def fingerprint() -> str:
    """What the parse depends on besides the text: jsops's loader and its YAML parser
    (importlib.metadata would cost more to import than the whole lookup it saves)."""
    import _ruamel_yaml  # type: ignore[import-not-found]  # the C parser load.py uses
    import ruamel.yaml

    loader = hashlib.sha256(Path(__file__).with_name("load.py").read_bytes()).hexdigest()
    clib = Path(_ruamel_yaml.__file__)
    return f"{FORMAT}|{ruamel.yaml.__version__}|{clib.name}:{clib.stat().st_size}|{loader}"


def key_of(shown: str, rendered: str) -> str:
    digest = hashlib.sha256(f"{fingerprint()}\0{shown}\0".encode())
    digest.update(rendered.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _private(path: Path, *, directory: bool) -> bool:
    """True when ``path`` is ours and nobody else may write it."""
    try:
        info = path.lstat()
    except OSError:
        return False
    kind_ok = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return kind_ok and owner_ok and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@dataclass
class ParseCache:
    """The entries of one project directory; ``get`` and ``put`` by key, ``save`` once."""

    path: Path | None
    # key -> [used_at, the JSON text of the file's documents]: text, not data, so that a
    # cache does not keep every file's data while a large repository is validated file
    # by file (about 95 MB at 40,000 documents), and parsing one entry costs only its own
    entries: dict[str, list[Any]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    added: bool = False

    @classmethod
    def open(cls, project_dir: Path) -> ParseCache:
        if not enabled():
            return cls(None)
        try:
            directory = cache_dir()
        except (RuntimeError, KeyError):  # no HOME and no passwd entry: no cache
            return cls(None)
        name = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:24]
        path = directory / f"parse-{name}.json"
        cached = cls(path)
        if _private(directory, directory=True) and _private(path, directory=False):
            try:
                loaded = json.loads(path.read_bytes())
            except (OSError, ValueError, RecursionError):
                loaded = None
            if (
                isinstance(loaded, dict)
                and loaded.get("format") == FORMAT
                and loaded.get("fingerprint") == fingerprint()
                and isinstance(loaded.get("entries"), dict)
            ):
                cached.entries = loaded["entries"]
        return cached

    def get(self, key: str) -> list[Entry] | None:
        if self.path is None:
            return None
        found = self.entries.get(key)
        if not (isinstance(found, list) and len(found) == 2 and isinstance(found[1], str)):
            return None
        try:
            docs = json.loads(found[1])
        except (ValueError, RecursionError):
            return None
        if not (isinstance(docs, list) and all(_valid_entry(e) for e in docs)):
            return None
        self.used.add(key)
        return docs

    def put(self, key: str, docs: list[Entry]) -> None:
        if self.path is None:
            return
        self.entries[key] = [0, json.dumps(docs, separators=(",", ":"))]
        self.used.add(key)
        self.added = True

    def texts_added(self, before: set[str]) -> dict[str, str]:
        """The JSON text of each entry put since the keys were ``before`` (a worker's)."""
        return {key: entry[1] for key, entry in self.entries.items() if key not in before}

    def take(self, used: list[str], added: dict[str, str]) -> None:
        """Record what a worker process used and added (:meth:`texts_added`)."""
        self.used.update(used)
        for key, text in added.items():
            self.entries[key] = [0, text]
            self.added = True

    def save(self) -> None:
        """Write the entries back if any was added (best effort: a failure is a miss later)."""
        if self.path is None or not self.added:
            return
        now = int(time.time())
        for key in self.used:
            self.entries[key][0] = now
        entries = self.entries
        if len(entries) > MAX_ENTRIES:
            newest = sorted(entries, key=lambda k: entries[k][0], reverse=True)[:MAX_ENTRIES]
            entries = {k: entries[k] for k in newest}
        body = {"format": FORMAT, "fingerprint": fingerprint(), "entries": entries}
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(directory, directory=True):
                return
            import tempfile  # only when writing

            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".parse-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:  # dumps: json.dump is slow
                    out.write(json.dumps(body, separators=(",", ":")))
                os.replace(tmp, self.path)  # mkstemp made it 0600
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, list)
        and len(entry) == 6
        and type(entry[0]) is int
        and type(entry[1]) is int
        and isinstance(entry[5], dict)
    )


# ------------------------------------------------------------ validated resources
#
# A plan of an unchanged repository validates the same documents to the same
# resources every time: validation is a pure function of the parsed documents, the
# environment, the project's configuration (tenants, policy) and jsops's own code.
# The second kind of entry keeps that result, one file per project directory and
# environment, keyed by all of those: the parse keys of every file in order (their
# rendered text and shown path), the environment, the known environments, the
# project configuration, and a hash of jsops's whole source and its pydantic. Only a
# result without any problem is kept, so an error is always found by validating.
#
# The resources are pickled, which is what makes a hit cheap (about a third of
# validating them). A pickle can name any callable, so the file is read with an
# unpickler that resolves nothing but jsops's own model classes, Location, a few
# standard value types and ``_model`` (which only fills in a jsops model): a file that
# names anything else is a miss, like a corrupt one.
# With the owner-only directory above, this keeps the cache from being a way in.

VALIDATED_FORMAT = 4  # 2: models pickled through _model; 3: flat rows; 4: in chunks
_VALIDATED_MAGIC = b"jsops-validated\n"


@cache
def code_fingerprint() -> str:
    """A hash of every module of jsops and the versions of what validation runs on."""
    import sys

    import pydantic_core

    package = Path(__file__).parent
    digest = hashlib.sha256(f"{sys.version}|{pydantic_core.__version__}".encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def validated_key(file_keys: list[str], scope: list[Any]) -> str:
    """The key of a validation of files (their parse keys) within ``scope`` (the
    environment, the known ones and the project configuration, as JSON-able data)."""
    digest = hashlib.sha256(f"{VALIDATED_FORMAT}|{code_fingerprint()}\0".encode())
    digest.update(json.dumps(scope, sort_keys=True, default=str).encode())
    for key in file_keys:
        digest.update(b"\0" + key.encode())
    return digest.hexdigest()


_MODEL_CLASSES: set[type] = set()  # classes _model has checked are pydantic models


def _model(cls: type, values: dict[str, Any], fields_set: frozenset[str]) -> Any:
    """A validated pydantic model of ``cls`` holding ``values``, as it was pickled.

    Models are pickled through this (not pydantic's ``__setstate__``, whose state dict
    per model the unpickler keeps until the end: 28 MB more at 40,000 resources)."""
    if cls not in _MODEL_CLASSES:  # once per class: an import per model cost 0.1 s at 40k
        from pydantic import BaseModel

        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise TypeError("not a jsops model")
        _MODEL_CLASSES.add(cls)
    if type(values) is not dict:
        raise TypeError("not a jsops model")
    model: Any = object.__new__(cls)  # what BaseModel.__new__ is: no __init__, no validation
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", fields_set)
    object.__setattr__(model, "__pydantic_extra__", None)  # extra="forbid": never any
    object.__setattr__(model, "__pydantic_private__", None)  # no private attributes
    return model


# A list is kept in chunks of this many items, each its own pickle: a pickler remembers
# every object it wrote until it is done (40 MB more peak memory at 40,000 resources
# when the cache was one pickle), and an unpickler every object it made.
PICKLE_CHUNK = 1000


def _dump(value: Any, out: BinaryIO) -> None:
    """Write ``value`` to ``out``: the number of chunks, then each chunk's pickle (a
    value other than a list is one chunk of its own, announced as -1)."""
    import pickle

    from pydantic import BaseModel

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, BaseModel):
                return _model, (type(obj), obj.__dict__, obj.__pydantic_fields_set__)
            return NotImplemented

    pickler = Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    if not isinstance(value, list):
        pickler.dump(-1)
        pickler.dump(value)
        return
    chunks = range(0, len(value), PICKLE_CHUNK)
    pickler.dump(len(chunks))
    for start in chunks:
        pickler.clear_memo()  # nothing refers across chunks: each is loaded alone
        pickler.dump(value[start : start + PICKLE_CHUNK])


def _pickle(value: Any) -> bytes:
    import io

    out = io.BytesIO()
    _dump(value, out)
    return out.getvalue()


def _allowed_global(module: str, name: str) -> bool:
    if module.startswith("reconciler.models."):
        # a class of the module itself: pickle walks a dotted name through attributes
        # (``typing.operator.methodcaller`` from a module importing typing), which was
        # a way from here to exec
        return "." not in name
    return (module, name) in {
        ("reconciler.errors", "Location"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
    }


def _unpickle(data: bytes | BinaryIO) -> Any:
    """What :func:`_dump` wrote, through an unpickler that makes jsops's data only."""
    import io
    import pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == (__name__, "_model"):
                return _model  # the one function: it builds nothing but jsops models
            if not _allowed_global(module, name):
                raise pickle.UnpicklingError(f"{module}.{name} is not jsops data")
            found = super().find_class(module, name)
            if not isinstance(found, type):  # classes only: never a function to call
                raise pickle.UnpicklingError(f"{module}.{name} is not a class")
            if module.startswith("reconciler.") and found.__module__ != module:
                raise pickle.UnpicklingError(f"{module}.{name} is not defined there")
            return found

    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    chunks = Unpickler(stream).load()
    if type(chunks) is not int:
        raise pickle.UnpicklingError("not a chunked value")
    if chunks == -1:
        return Unpickler(stream).load()
    out: list[Any] = []
    for _ in range(chunks):  # one unpickler a chunk: each forgets what it made
        chunk = Unpickler(stream).load()
        if type(chunk) is not list:
            raise pickle.UnpicklingError("not a chunk")
        out += chunk
    return out


@dataclass
class ValidatedCache:
    """The validated resources of one project directory and environment."""

    path: Path | None

    @classmethod
    def open(cls, project_dir: Path, env: str | None) -> ValidatedCache:
        if not enabled():
            return cls(None)
        try:
            directory = cache_dir()
        except (RuntimeError, KeyError):
            return cls(None)
        where = f"{project_dir.resolve()}\0{env or ''}"
        name = hashlib.sha256(where.encode()).hexdigest()[:24]
        return cls(directory / f"validated-{name}.pickle")

    def get(self, key: str) -> Any:
        """What ``put`` kept under ``key``, or None (a miss, for any reason)."""
        if self.path is None or not (
            _private(self.path.parent, directory=True) and _private(self.path, directory=False)
        ):
            return None
        head = _VALIDATED_MAGIC + key.encode() + b"\n"
        try:
            with open(self.path, "rb") as file:  # read as it is unpickled: no copy held
                if file.read(len(head)) != head:
                    return None
                return _unpickle(file)
        except Exception:  # a corrupt or foreign file is a miss, never an error
            return None

    def put(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``, replacing what was kept (best effort)."""
        if self.path is None:
            return
        import pickle
        import tempfile

        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(directory, directory=True):
                return
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".validated-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:  # pickled straight into the file
                    out.write(_VALIDATED_MAGIC + key.encode() + b"\n")
                    _dump(value, out)
                os.replace(tmp, self.path)  # mkstemp made it 0600
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return
