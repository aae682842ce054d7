"""The project file ``jsops.yaml``: project, manifest paths, environments, tenants, policy.

Without a project file there is one environment, ``default``, whose servers come
from ``--server``/``NATS_URL`` (or ``nats://127.0.0.1:4222``), and manifests are
read from ``./manifests``. The project name (the owner tag jsops writes on every
resource it manages) is then ``jsops``: a fixed value rather than the directory
name, so that two checkouts of one repository never disagree about ownership.

Tenants and policy (enforced by ``reconciler.policy``, see docs/tenants.md)::

    environments:
      prod: {max_replicas: 3, allow_delete: false}   # plus the connection keys
    tenants:
      acme:
        prefix: tenant.acme                 # default: tenant.<id>
        account: ACME                       # optional
        stream_pattern: "^ACME_[A-Z0-9_]+$" # optional regex, whole name
        quota: {max_streams: 10, max_consumers: 50, max_bytes: 100GiB, max_replicas: 3}
    policy:
      require: [max_age, max_bytes]         # stream fields every stream must set
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from reconciler.diagnostics import did_you_mean, pydantic_diagnostics
from reconciler.errors import Diagnostic, KeyPath, Location, ManifestError, UsageError
from reconciler.load import Document, SourceFile, display_path, parse, read_source
from reconciler.models import StreamSpec
from reconciler.models.envelope import LOCK_ACCOUNT
from reconciler.models.types import STRICT, Int, Limit, Size, check_subject, valid_domain
from reconciler.subjects import under_prefix

DEFAULT_CONFIG = "jsops.yaml"
DEFAULT_PROJECT = "jsops"
DEFAULT_ENV = "default"
DEFAULT_URL = "nats://127.0.0.1:4222"


class TlsConfig(BaseModel):
    model_config = STRICT
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class ExpectConfig(BaseModel):
    """The identity an environment's servers must report (any field may be left out);
    plan and apply refuse to run anywhere else, whatever ``--server`` says."""

    model_config = STRICT
    cluster: str | None = None
    server_name: str | None = None
    domain: str | None = None
    account: str | None = None


class EnvironmentConfig(BaseModel):
    """How to reach one environment and the template values it renders manifests with."""

    model_config = STRICT
    servers: list[str] | None = None
    context: str | None = None
    creds: str | None = None
    nkey: str | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    domain: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    auth_dir: str | None = None
    timeout: float = Field(default=5.0, gt=0)
    # policy (reconciler.policy): the most replicas any stream or consumer may ask for
    # here, and whether plans may delete or replace anything in this environment
    max_replicas: Int | None = Field(default=None, ge=1, le=5)
    allow_delete: bool = True
    # the servers' identity this environment must find (wrong-target interlock)
    expect: ExpectConfig | None = None

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and not valid_domain(value):
            raise ValueError(f'invalid JetStream domain "{value}"')
        return value


class TenantQuota(BaseModel):
    """Limits on what one tenant's manifests may declare (absent or -1: no limit).

    ``max_bytes`` is the storage the tenant's streams reserve: the sum over its
    streams of ``max_bytes`` times ``num_replicas`` (how nats-server counts a
    stream's reservation against an account's storage limit).
    """

    model_config = STRICT
    max_streams: Limit | None = Field(default=None, ge=-1)
    max_consumers: Limit | None = Field(default=None, ge=-1)
    max_bytes: Size | None = None
    max_replicas: Int | None = Field(default=None, ge=1, le=5)

    def limit(self, name: str) -> int | None:
        """The quota ``name``, or None when it is absent or unlimited (-1)."""
        value = getattr(self, name)
        return None if value is None or value < 0 else int(value)


class TenantConfig(BaseModel):
    """One tenant: the subject prefix its resources live under, its account, its limits."""

    model_config = STRICT
    prefix: str | None = None
    account: str | None = None
    quota: TenantQuota | None = None
    stream_pattern: str | None = None  # a regular expression every stream name must match
    bucket_pattern: str | None = None  # ... and every KeyValue / ObjectStore bucket name

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None:
            problem = check_subject(value, wildcards=False)
            if problem:
                raise ValueError(f"invalid prefix: {problem}")
        return value

    @field_validator("stream_pattern", "bucket_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f'invalid regular expression "{value}": {exc}') from None
        return value


class PolicyConfig(BaseModel):
    """Project-wide rules (reconciler.policy): stream fields every stream must set."""

    model_config = STRICT
    require: list[str] = Field(default_factory=list)


class ProjectConfig(BaseModel):
    """``jsops.yaml``, validated."""

    model_config = STRICT
    project: str = DEFAULT_PROJECT
    manifests: list[str] = Field(default_factory=lambda: ["manifests/"])
    environments: dict[str, EnvironmentConfig] = Field(
        default_factory=lambda: {DEFAULT_ENV: EnvironmentConfig()}
    )
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

    def tenant_prefix(self, tenant: str) -> str:
        config = self.tenants.get(tenant)
        return (config.prefix if config and config.prefix else None) or f"tenant.{tenant}"


@dataclass
class Project:
    """A loaded project: its config, where it lives, and which file it came from."""

    config: ProjectConfig
    root: Path
    config_file: str | None

    @property
    def name(self) -> str:
        return self.config.project

    def manifest_paths(self) -> list[Path]:
        return [self.root / p for p in self.config.manifests]

    def manifest_scope(self, paths: Sequence[str] | None = None) -> tuple[list[str], Path | None]:
        """The manifest paths to read, and what their files must stay inside: paths named
        on the command line as named, else the project's (jsops.yaml ``manifests``), each
        file inside the project's directory (``reconciler.load.discover``)."""
        if paths:
            return list(paths), None
        return [str(p) for p in self.manifest_paths()], self.root

    def environment(self, name: str | None) -> tuple[str, EnvironmentConfig]:
        """The named environment, or the only one / ``default`` when none is named."""
        envs = self.config.environments
        if name is None:
            name = os.environ.get("JSOPS_ENV")
        if name is None:
            if DEFAULT_ENV in envs:
                name = DEFAULT_ENV
            elif len(envs) == 1:
                name = next(iter(envs))
            else:
                raise UsageError(
                    f"several environments are defined ({', '.join(sorted(envs))}): choose one "
                    "with -e ENV"
                )
        if name not in envs:
            known = ", ".join(sorted(envs)) or "none"
            raise UsageError(f'unknown environment "{name}" (defined: {known})')
        return name, envs[name]

    def variables(self, env_name: str) -> dict[str, Any]:
        """Jinja2 variables for manifests: ``env`` (name) and ``values``."""
        env = self.config.environments.get(env_name) or EnvironmentConfig()
        return {"env": env_name, "values": dict(env.values)}


def load_project(config_file: str | Path | None = None) -> Project:
    """Read and validate ``jsops.yaml`` (errors are located like manifest errors)."""
    explicit = config_file is not None
    path = Path(config_file) if config_file is not None else Path(DEFAULT_CONFIG)
    if not path.exists():
        if explicit:
            raise UsageError(f"{path}: project file not found")
        return Project(ProjectConfig(), Path.cwd(), None)
    shown = display_path(path)
    text, unreadable = read_source(path, shown)
    if text is None:
        assert unreadable is not None
        raise ManifestError([unreadable])
    source = SourceFile(shown, text, text, False)
    docs, problems = parse(source)
    if problems:
        raise ManifestError(problems)
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise ManifestError(
            [Diagnostic(Location(shown, 1, 1), "the project file must be one YAML mapping")]
        )
    doc = docs[0]
    try:
        config = ProjectConfig.model_validate(doc.data)
    except ValidationError as exc:
        problems = pydantic_diagnostics(exc, doc, ProjectConfig)
        policy = doc.data.get("policy")
        require = policy.get("require") if isinstance(policy, dict) else None
        if isinstance(require, list):  # still report unknown names: every problem in one run
            problems += check_required_names([r for r in require if isinstance(r, str)], doc)
        raise ManifestError(problems) from None
    problems = check_project_config(config, doc)
    if problems:
        raise ManifestError(problems)
    return Project(config, path.resolve().parent, shown)


def _config_location(doc: Document | None, path: KeyPath, value: bool = True) -> Location:
    if doc is None:
        return Location("jsops.yaml")
    return doc.locate_value(path) if value and isinstance(path[-1], str) else doc.locate(path)


def check_required_names(names: Sequence[str], doc: Document | None = None) -> list[Diagnostic]:
    """``policy.require`` may only name StreamSpec fields (with a "did you mean" hint)."""
    fields = list(StreamSpec.model_fields)
    return [
        Diagnostic(
            _config_location(doc, ("policy", "require", i)),
            f'policy.require.{i}: unknown stream field "{name}"',
            code="unknown_field",
            hint=did_you_mean(name, fields),
        )
        for i, name in enumerate(names)
        if name not in StreamSpec.model_fields
    ]


def check_project_config(config: ProjectConfig, doc: Document | None = None) -> list[Diagnostic]:
    """Rules of ``jsops.yaml`` beyond its model: ``policy.require`` names stream fields,
    tenants' prefixes are valid subjects and never nested in one another.

    ``doc`` is the parsed project file, for locations (``load_project`` passes it).
    """
    problems = check_required_names(config.policy.require, doc)
    seen: list[tuple[str, str]] = []
    for tenant, tconf in config.tenants.items():
        if tconf.account == LOCK_ACCOUNT:  # as a manifest's metadata.account (validate)
            problems.append(
                Diagnostic(
                    _config_location(doc, ("tenants", tenant, "account"), value=True),
                    f"tenants.{tenant}: account {LOCK_ACCOUNT} is jsops's own (its apply "
                    "lock in operator mode): choose another account",
                    code="reserved_name",
                )
            )
        prefix = config.tenant_prefix(tenant)
        path: KeyPath = ("tenants", tenant, "prefix") if tconf.prefix else ("tenants", tenant)
        where = _config_location(doc, path, value=bool(tconf.prefix))
        if not tconf.prefix:
            problem = check_subject(prefix, wildcards=False)
            if problem:
                problems.append(
                    Diagnostic(
                        where,
                        f'tenants.{tenant}: the default prefix "{prefix}" is not a valid '
                        f"subject ({problem}): set prefix",
                        code="bad_prefix",
                    )
                )
                continue
        for other, other_prefix in seen:
            if prefix == other_prefix:
                how = "is the same as"
            elif under_prefix(other_prefix, prefix):
                how = "is inside"
            elif under_prefix(prefix, other_prefix):
                how = "contains"
            else:
                continue
            problems.append(
                Diagnostic(
                    where,
                    f'tenants.{tenant}: prefix "{prefix}" {how} the prefix "{other_prefix}" '
                    f'of tenant "{other}"',
                    code="tenant_prefix_overlap",
                )
            )
        seen.append((tenant, prefix))
    return problems
