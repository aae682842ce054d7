"""Validation: parsed documents -> desired resources, or every problem, located.

Three layers, all offline and all collected before anything is reported:

1. the envelope (a mapping, a known ``apiVersion`` and ``kind``);
2. the pydantic model of the kind (types, enums, units, names, subjects, unknown
   fields with a "did you mean" hint), then the cross-field rules each spec
   declares in ``problems()`` (mutually exclusive fields and the like);
3. rules across resources: duplicates, a consumer's stream, filter coverage. A
   document that failed layer 2 still takes part by its metadata
   (:func:`declared_identity`), so one wrong field neither hides its own
   cross-document problems nor invents "not declared" ones for its consumers.

Project policy (tenants, subjects shared between streams, quotas) is
``reconciler.policy``, which runs on the resources validated here.

Message formats (``str(Diagnostic)``, one line on stderr each; a hint in
parentheses, then " (line in rendered template)" when the position is in rendered
text, then " (environment E)" when only some environments have the problem)::

    a manifest document must be a mapping with apiVersion, kind, metadata and spec, got X
    missing required field "PATH"                          at the parent key
    unknown apiVersion "V" (expected "jsops/v1")
    unknown kind "K" (did you mean "Stream"? | known kinds: Stream, Consumer)
    unknown field "KEY"[ in PARENT.PATH] (did you mean "FIELD"?)
    PATH: PROBLEM                          a bad value: type, enum, unit, name, subject
    PATH: key K must be a string
    [PARENT.PATH: ]SENTENCE                a cross-field rule, at one of its fields
    KIND NAME is declared twice: here and at FILE:L:C
    consumer "C": stream "S" is not declared in any manifest (did you mean "T"?)
    consumer "C" is in ENVIRONMENTS, but stream "S" only in ENVIRONMENTS
    filter "F" is not covered by any subject of stream "S" (SUBJECTS)
    unknown environment "E" (did you mean "F"? | environments of the project: ...)
    Stream KV_jsops_lock is jsops's own apply lock (the KV bucket jsops_lock): choose ...
    KeyValue jsops_lock is jsops's own apply lock (stream KV_jsops_lock): choose another name
    Account JSOPS is jsops's own (it holds apply locks): choose another name

Value problems point at the value, unknown fields and cross-field rules at the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from reconciler.buckets import check_clashes as check_bucket_clashes
from reconciler.buckets import lower as lower_bucket
from reconciler.diagnostics import did_you_mean, dotted, pydantic_diagnostics, short_value
from reconciler.environments import Project
from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.load import (
    Document,
    LoadResult,
    SourceFile,
    load_manifests,
    load_sources,
    parse_each,
)
from reconciler.models import (
    API_VERSION,
    BUCKET_KINDS,
    KINDS,
    LOCK_ACCOUNT,
    LOCK_BUCKET,
    LOCK_STREAM,
    AccountManifest,
    Address,
    ConsumerManifest,
    ConsumerSpec,
    Kind,
    Manifest,
    Resource,
    StreamSpec,
)
from reconciler.parse_cache import ParseCache, ValidatedCache, key_of, validated_key
from reconciler.policy import check_policy
from reconciler.subjects import covers
from reconciler.workers import validate_in_workers, worker_count


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _check_envelope(doc: Document) -> tuple[type[Manifest] | None, list[Diagnostic]]:
    """The model of the document's kind (None if unknown) and the envelope's problems."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [
            Diagnostic(
                doc.locate(),
                "a manifest document must be a mapping with apiVersion, kind, metadata and "
                f"spec, got {_what(data)}",
                code="not_a_mapping",
            )
        ]
    problems = []
    api = data.get("apiVersion")
    if api is None:
        problems.append(
            Diagnostic(doc.locate(), 'missing required field "apiVersion"', code="missing_field")
        )
    elif api != API_VERSION:
        problems.append(
            Diagnostic(
                doc.locate_value(("apiVersion",)),
                f"unknown apiVersion {short_value(api)}",
                code="unknown_api_version",
                hint=f'expected "{API_VERSION}"',
            )
        )
    kind = data.get("kind")
    if kind is None:
        problems.append(
            Diagnostic(doc.locate(), 'missing required field "kind"', code="missing_field")
        )
        return None, problems
    if not isinstance(kind, str) or kind not in KINDS:
        hint = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else None
        problems.append(
            Diagnostic(
                doc.locate_value(("kind",)),
                f"unknown kind {short_value(kind)}",
                code="unknown_kind",
                hint=hint or f"known kinds: {', '.join(KINDS)}",
            )
        )
        return None, problems
    return KINDS[Kind(kind)], problems


def validate_document(doc: Document) -> tuple[Resource | None, list[Diagnostic]]:
    """One document -> one Resource, or every diagnostic found in it."""
    model, problems = _check_envelope(doc)
    if model is None:
        return None, problems
    data = doc.data
    if problems:  # a wrong apiVersion: still check the rest of the document
        data = {**data, "apiVersion": API_VERSION}
    try:
        manifest = model.model_validate(data)
    except ValidationError as exc:
        return None, problems + pydantic_diagnostics(exc, doc, model)
    for path, message in manifest.spec.problems():
        where = f"{dotted(('spec', *path[:-1]))}: " if len(path) > 1 else ""
        problems.append(Diagnostic(doc.locate(("spec", *path)), where + message, code="conflict"))
    if problems:
        return None, problems
    resource = _resource(manifest, doc)
    reserved = _reserved(resource.address, doc, resource.location)
    if reserved is not None:
        return None, [reserved]
    _share_fields_sets(manifest)
    return resource, []


def _resource(manifest: Manifest, doc: Document, *, checked: bool = True) -> Resource:
    address: Address
    if isinstance(manifest, ConsumerManifest):
        meta = manifest.metadata
        address = Address(Kind.CONSUMER, meta.name, stream=meta.stream, account=meta.account)
    elif isinstance(manifest, AccountManifest):
        address = Address(Kind.ACCOUNT, manifest.metadata.name)
    else:  # a Stream, or a bucket (KeyValue, ObjectStore: a stream underneath)
        kind = Kind(manifest.kind)
        address = Address(kind, manifest.metadata.name, account=manifest.metadata.account)
    location = doc.name_location or doc.locate(("metadata", "name"))
    return Resource(address, manifest, location, doc, checked=checked)


def declared_identity(doc: Document) -> Resource | None:
    """What a document whose own fields are wrong still declares, from its envelope and
    metadata alone (None when those are wrong too): a resource marked unchecked, with
    its kind's default spec, which no check reads. The checks across documents count it
    as declared, so a field error in one document neither hides that it is declared
    twice or names an undeclared stream, nor makes its consumers "not declared"."""
    data = doc.data
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in KINDS:
        return None
    model = KINDS[Kind(kind)]
    meta_model = model.model_fields["metadata"].annotation
    assert isinstance(meta_model, type) and issubclass(meta_model, BaseModel)
    try:
        meta = meta_model.model_validate(data.get("metadata"))
    except ValidationError:
        return None
    envelope: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
    manifest = model.model_construct(**envelope)
    resource = _resource(manifest, doc, checked=False)
    return None if _reserved(resource.address, doc, resource.location) else resource


_LOCK = "jsops's own apply lock"
_LOCK_ACCOUNT = f"{LOCK_ACCOUNT} is jsops's own (it holds apply locks)"


def _reserved(address: Address, doc: Document, location: Location) -> Diagnostic | None:
    """A resource with a name jsops keeps for its apply lock (``reconciler.lock``): the
    lock's bucket (stream ``KV_jsops_lock``, KeyValue ``jsops_lock``, in any account),
    a consumer of it, and jsops' own account ``JSOPS`` (operator mode) or one in it."""
    kind, name = address.kind, address.name
    where, message = location, None
    if kind == Kind.STREAM and name == LOCK_STREAM:
        message = f"Stream {name} is {_LOCK} (the KV bucket {LOCK_BUCKET}): choose another name"
    elif kind == Kind.KEY_VALUE and name == LOCK_BUCKET:
        message = f"KeyValue {name} is {_LOCK} (stream {LOCK_STREAM}): choose another name"
    elif kind == Kind.CONSUMER and address.stream == LOCK_STREAM:
        where = doc.locate_value(("metadata", "stream"))
        message = f'stream "{LOCK_STREAM}" is {_LOCK}: no manifest declares consumers of it'
    elif kind == Kind.ACCOUNT and name == LOCK_ACCOUNT:
        message = f"Account {_LOCK_ACCOUNT}: choose another name"
    elif address.account == LOCK_ACCOUNT:
        where = doc.locate_value(("metadata", "account"))
        message = f"account {_LOCK_ACCOUNT}: no manifest declares resources in it"
    return None if message is None else Diagnostic(where, message, code="reserved_name")


# pydantic gives every model instance its own set of the field names it was given
# (``model_fields_set``, for ``exclude_unset``, which jsops never uses): a quarter of a
# validated manifest's memory. Instances given the same fields share one frozenset.
_FIELDS_SETS: dict[frozenset[str], frozenset[str]] = {}


def _share_fields_sets(model: BaseModel) -> None:
    given = frozenset(model.__pydantic_fields_set__)
    object.__setattr__(model, "__pydantic_fields_set__", _FIELDS_SETS.setdefault(given, given))
    values = model.__dict__
    for name in _nested_fields(type(model)):
        value = values.get(name)
        if isinstance(value, BaseModel):
            _share_fields_sets(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _share_fields_sets(item)


@cache
def _nested_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a model class whose type may hold another model."""

    def holds_model(annotation: Any) -> bool:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return True
        return any(holds_model(arg) for arg in get_args(annotation))

    return tuple(name for name, f in cls.model_fields.items() if holds_model(f.annotation))


def check_resources(resources: Sequence[Resource], env: str | None = None) -> list[Diagnostic]:
    """Rules across resources: duplicates, a consumer's stream, filter coverage. An
    unchecked resource (``declared_identity``) counts as declared; its spec is not read."""
    problems: list[Diagnostic] = []
    seen: dict[Address, list[Resource]] = {}
    for res in resources:
        earlier = seen.setdefault(res.address, [])
        clash = next((o for o in earlier if o.shares_environment(res)), None)
        if clash is not None:
            problems.append(
                Diagnostic(
                    res.location,
                    f"{res.address} is declared twice: here and at {clash.location}",
                    code="duplicate",
                    related=(clash.location,),
                )
            )
        earlier.append(res)
    streams: dict[tuple[str | None, str], list[Resource]] = {}
    for res in resources:
        if res.address.kind == Kind.STREAM:
            streams.setdefault((res.address.account, res.address.name), []).append(res)
        elif res.address.kind in BUCKET_KINDS:  # a consumer may read a bucket's stream
            lowered = lower_bucket(res)
            streams.setdefault((res.address.account, lowered.address.name), []).append(lowered)
    for res in resources:
        if res.address.kind != Kind.CONSUMER:
            continue
        candidates = streams.get((res.address.account, res.address.stream or ""), [])
        envs = res.metadata.environments
        declared = [s for s in candidates if _env_overlap(s, envs)]
        doc = res.document
        if not declared:
            where = doc.locate_value(("metadata", "stream")) if doc else res.location
            name, stream = res.address.name, res.address.stream or ""
            if candidates:  # declared, but not in every environment of the consumer
                stream_envs = sorted({e for s in candidates for e in s.metadata.environments or ()})
                mine = f"environments {', '.join(envs)}" if envs else "every environment"
                message = (
                    f'consumer "{name}" is in {mine}, but stream "{stream}" only in '
                    f"{', '.join(stream_envs)}"
                )
                problems.append(Diagnostic(where, message, code="unknown_stream"))
                continue
            problems.append(
                Diagnostic(
                    where,
                    f'consumer "{name}": stream "{stream}" is not declared in any manifest',
                    code="unknown_stream",
                    hint=did_you_mean(stream, [k[1] for k in streams]),
                )
            )
            continue
        if res.checked and declared[0].checked:
            problems += _check_filters(res, declared[0])
    problems += check_bucket_clashes(resources)
    problems += _check_source_cycles(
        [r for r in resources if r.address.kind == Kind.STREAM and r.checked]
    )
    return problems


def _local_origins(res: Resource) -> list[str]:
    """Mirror/source origins in the same domain and account (the ones that can cycle)."""
    spec = res.spec
    assert isinstance(spec, StreamSpec)
    return [source.name for _, source in spec.origins() if source.remote is None]


def _check_source_cycles(streams: list[Resource]) -> list[Diagnostic]:
    """A stream that (through mirrors/sources) reads itself: every stream of the cycle
    is named, once per cycle, at the first stream's declaration."""
    by_key = {(r.address.account, r.address.name): r for r in streams}
    problems: list[Diagnostic] = []
    state: dict[tuple[str | None, str], int] = {}
    reported: set[frozenset[str]] = set()

    def visit(key: tuple[str | None, str], path: list[tuple[str | None, str]]) -> None:
        state[key] = 1
        path.append(key)
        for origin in _local_origins(by_key[key]):
            nxt = (key[0], origin)
            if nxt not in by_key:
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                names = frozenset(k[1] for k in cycle)
                if names not in reported:
                    reported.add(names)
                    first = by_key[cycle[0]]
                    chain = " -> ".join([k[1] for k in cycle] + [cycle[0][1]])
                    problems.append(
                        Diagnostic(
                            first.location,
                            f"mirror/source cycle: {chain} (a stream cannot read itself)",
                            code="source_cycle",
                            related=tuple(by_key[k].location for k in cycle[1:]),
                        )
                    )
            elif state.get(nxt) is None:
                visit(nxt, path)
        path.pop()
        state[key] = 2

    for key in by_key:
        if state.get(key) is None:
            visit(key, [])
    return problems


def _env_overlap(stream: Resource, envs: list[str] | None) -> bool:
    senvs = stream.metadata.environments
    if senvs is None:
        return True
    if envs is None:
        return False
    return set(envs) <= set(senvs)


def _check_filters(consumer: Resource, stream: Resource) -> list[Diagnostic]:
    sspec = stream.spec
    cspec = consumer.spec
    assert isinstance(sspec, StreamSpec) and isinstance(cspec, ConsumerSpec)
    if sspec.mirror or sspec.sources or sspec.subject_transform:
        return []  # the stored subjects come from elsewhere; the server checks these
    subjects = sspec.subjects or [stream.address.name]
    problems = []
    doc = consumer.document
    key = "filter_subjects" if cspec.filter_subjects is not None else "filter_subject"
    for i, filt in enumerate(cspec.filters):
        if not any(covers(s, filt) for s in subjects):
            if doc is None:
                location = consumer.location
            elif key == "filter_subjects":
                location = doc.locate(("spec", key, i))
            else:
                location = doc.locate_value(("spec", key))
            problems.append(
                Diagnostic(
                    location,
                    f'filter "{filt}" is not covered by any subject of stream '
                    f'"{stream.address.name}" ({", ".join(subjects)})',
                    code="filter_not_covered",
                )
            )
    return problems


def validate_loaded(
    loaded: LoadResult,
    env: str | None = None,
    known_envs: Sequence[str] | None = None,
    project: Project | None = None,
) -> tuple[list[Resource], list[Diagnostic]]:
    """Validate every loaded document; return the resources and every diagnostic.

    With ``env``, only the resources of that environment are returned and checked
    against each other; with ``known_envs``, ``metadata.environments`` may only
    name those.
    """
    resources, problems = _validate_documents(loaded.documents)
    return _check_validated(resources, [*loaded.diagnostics, *problems], env, known_envs, project)


def _validate_documents(
    documents: Iterable[Document], *, drop_data: bool = False
) -> tuple[list[Resource], list[Diagnostic]]:
    """Each document's resource and the problems of every document. The resource of a
    document with problems is its :func:`declared_identity` (``checked`` False), if any.

    With ``drop_data``, a document's plain data is dropped once its model is made (the
    model holds it): with documents parsed file by file, the data of a large repository
    is never all held at once (at 40,000 documents, 95 MB of the 200 MB peak of a cold
    apply was every file's data, held while they were validated)."""
    resources: list[Resource] = []
    problems: list[Diagnostic] = []
    current = None
    for doc in documents:
        if doc.source is not current:
            if current is not None:
                current.release_positions()  # done with its nodes: free them (see below)
            current = doc.source
        resource, doc_problems = validate_document(doc)
        if resource is None and doc_problems:
            resource = declared_identity(doc)
        if drop_data:
            doc.data = None
        problems += doc_problems
        if resource is not None:
            resources.append(resource)
    # A file's composed nodes are only needed to locate its problems; later checks
    # that find one re-parse just that file, so peak memory is one file's nodes.
    if current is not None:
        current.release_positions()
    return resources, problems


def _check_validated(
    resources: list[Resource],
    problems: list[Diagnostic],
    env: str | None,
    known_envs: Sequence[str] | None,
    project: Project | None,
) -> tuple[list[Resource], list[Diagnostic]]:
    """The checks across validated resources (:func:`validate_loaded`'s second half)."""
    if known_envs is not None:
        problems += _check_environment_names(resources, known_envs)
    if env is not None:
        resources = [r for r in resources if r.in_environment(env)]
    if project is not None:
        inherit_tenant_accounts(resources, project)
    problems += check_resources(resources, env)
    resources = [r for r in resources if r.checked]
    if project is not None:
        problems += check_policy(resources, project, env)
    return resources, problems


def _check_environment_names(
    resources: Sequence[Resource], known_envs: Sequence[str]
) -> list[Diagnostic]:
    problems = []
    for res in resources:
        for i, name in enumerate(res.metadata.environments or ()):
            if name in known_envs:
                continue
            doc = res.document
            problems.append(
                Diagnostic(
                    doc.locate(("metadata", "environments", i)) if doc else res.location,
                    f"unknown environment {short_value(name)}",
                    code="unknown_environment",
                    hint=did_you_mean(name, known_envs)
                    or f"environments of the project: {', '.join(known_envs)}",
                )
            )
    return problems


def validate_paths(
    paths: Sequence[str],
    variables: dict[str, Any],
    env: str | None = None,
    known_envs: Sequence[str] | None = None,
    project: Project | None = None,
    within: Path | None = None,
) -> tuple[list[Resource], list[Diagnostic]]:
    """Load, parse and validate manifest files. With a ``project``, through its caches
    (``reconciler.parse_cache``): an unchanged repository is neither parsed nor
    validated again, and only a result without problems is ever kept. Files are read
    only from inside ``within`` (``reconciler.load.discover``)."""
    if project is None:
        loaded = load_manifests(paths, variables, within=within)
        return validate_loaded(loaded, env, known_envs, project)
    sources, diagnostics = load_sources(paths, variables, within)
    validated = ValidatedCache.open(project.root, env)
    key = None
    if not diagnostics and validated.path is not None:
        scope = [env, known_envs and list(known_envs), project.config.model_dump(mode="json")]
        key = validated_key([key_of(s.path, s.rendered) for s in sources], scope)
        resources = _from_rows(validated.get(key), sources)
        if resources is not None:
            return resources, []
    parse_problems = list(diagnostics)
    parsed = ParseCache.open(project.root)
    workers = 1 if diagnostics else worker_count(sources)
    found = None
    if workers > 1:

        def work(share: range) -> list[_Row] | None:  # in a worker process
            problems: list[Diagnostic] = []
            documents = parse_each((sources[i] for i in share), problems, parsed, save=False)
            resources, doc_problems = _validate_documents(documents, drop_data=True)
            return None if problems or doc_problems else _rows(resources, sources)

        found = _from_rows(validate_in_workers(sources, parsed, workers, work), sources)
    doc_problems: list[Diagnostic] = []
    if found is not None:  # every file valid on its own: the checks across them remain
        parsed.save()
        resources = found
    else:
        documents = parse_each(sources, parse_problems, parsed)
        resources, doc_problems = _validate_documents(documents, drop_data=True)
    resources, problems = _check_validated(
        resources, parse_problems + doc_problems, env, known_envs, project
    )
    if key is not None and not problems:
        validated.put(key, _rows(resources, sources))
    return resources, problems


# A validated resource as the cache keeps it, in one flat tuple (the unpickler holds
# every tuple it made until the end, and a dataclass's own pickling costs five times
# more to load): its address, its manifest, its location, its file's position in the
# sources with the document's index and start line, and where its name is. The
# document is made again from this run's file, which the key says is the same text.
_Row = tuple[Any, ...]
_NO_NAME = (None, 0, 0, False)


def _rows(resources: Sequence[Resource], sources: Sequence[SourceFile]) -> list[_Row]:
    position = {id(source): i for i, source in enumerate(sources)}
    rows = []
    for res in resources:
        doc, a, at = res.document, res.address, res.location
        assert doc is not None
        named = doc.name_location
        name_at = _NO_NAME if named is None else (named.file, named.line, named.col, named.rendered)
        rows.append(
            (
                *(a.kind, a.name, a.stream, a.account),
                res.manifest,
                *(at.file, at.line, at.col, at.rendered),
                *(position[id(doc.source)], doc.index, doc.start_line),
                *name_at,
            )
        )
    return rows


def _from_rows(rows: Any, sources: Sequence[SourceFile]) -> list[Resource] | None:
    """The resources kept as ``rows``, or None when they are not what ``_rows`` wrote."""
    if not isinstance(rows, list):
        return None
    resources = []
    manifests = tuple(KINDS.values())
    try:
        for row in rows:
            manifest = row[4]
            if len(row) != 16 or not isinstance(manifest, manifests):
                return None
            named = None if row[12] is None else Location(*row[12:16])
            doc = Document(sources[row[9]], row[10], None, row[11], named)
            resources.append(Resource(Address(*row[0:4]), manifest, Location(*row[5:9]), doc))
    except (TypeError, ValueError, IndexError):
        return None
    return resources


def dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: set[str] = set()
    out = []
    for d in diagnostics:
        key = str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def load_desired(project: Project, env: str, paths: Sequence[str] | None = None) -> list[Resource]:
    """The validated desired resources of one environment; ManifestError if anything is wrong."""
    manifest_paths, within = project.manifest_scope(paths)
    known = list(project.config.environments)
    resources, problems = validate_paths(
        manifest_paths, project.variables(env), env, known, project, within
    )
    if problems:
        raise ManifestError(dedupe(problems))
    release_positions(resources)
    return resources


def release_positions(resources: Sequence[Resource]) -> None:
    """Drop what only validation needed: the composed YAML nodes (positions come back
    from a re-parse of that one file if a later stage has to locate something) and the
    raw document data (the validated model holds it). Halves the memory of a plan."""
    for res in resources:
        doc = res.document
        if doc is not None:
            doc.source.release_positions()
            doc.data = None


def inherit_tenant_accounts(resources: list[Resource], project: Project) -> list[Resource]:
    """A resource of a tenant whose ``account`` is set lives in that account unless its
    own ``metadata.account`` says otherwise."""
    tenants = project.config.tenants
    for res in resources:
        tenant = res.tenant
        if res.address.kind == Kind.ACCOUNT or res.address.account or tenant not in tenants:
            continue
        account = tenants[tenant].account
        if account:
            res.address = replace(res.address, account=account)
    return resources


def validate_project(project: Project, paths: Sequence[str] | None = None) -> list[Diagnostic]:
    """Validate manifests for every environment of the project (templates may differ).

    A problem found in some environments only says which: ``... (environment prod)``.
    """
    manifest_paths, within = project.manifest_scope(paths)
    envs = list(project.config.environments)
    found_in: dict[str, list[str]] = {}
    first: dict[str, Diagnostic] = {}
    for env in envs:
        _resources, found = validate_paths(
            manifest_paths, project.variables(env), env, envs, project, within
        )
        for problem in dedupe(found):
            key = str(problem)
            first.setdefault(key, problem)
            found_in.setdefault(key, []).append(env)
    problems = []
    for key, problem in first.items():
        where = found_in[key]
        if len(where) < len(envs):
            label = "environment" if len(where) == 1 else "environments"
            problem = dataclasses.replace(
                problem, message=f"{problem.message} ({label} {', '.join(where)})"
            )
        problems.append(problem)
    return sorted(problems, key=Diagnostic.sort_key)
