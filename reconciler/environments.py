"""The project file ``jsops.yaml``: project, manifest paths, environments, tenants.

Without a project file there is one environment, ``default``, whose servers come
from ``--server``/``NATS_URL`` (or ``nats://127.0.0.1:4222``), and manifests are
read from ``./manifests``. The project name (the owner tag jsops writes on every
resource it manages) is then ``jsops``: a fixed value rather than the directory
name, so that two checkouts of one repository never disagree about ownership.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from reconciler.errors import Diagnostic, Location, ManifestError, UsageError
from reconciler.load import SourceFile, display_path, parse
from reconciler.models.types import STRICT

DEFAULT_CONFIG = "jsops.yaml"
DEFAULT_PROJECT = "jsops"
DEFAULT_ENV = "default"
DEFAULT_URL = "nats://127.0.0.1:4222"


class TlsConfig(BaseModel):
    model_config = STRICT
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


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

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in " \t.*>")):
            raise ValueError(f'invalid JetStream domain "{value}"')
        return value


class TenantConfig(BaseModel):
    model_config = STRICT
    prefix: str | None = None
    account: str | None = None


class ProjectConfig(BaseModel):
    """``jsops.yaml``, validated."""

    model_config = STRICT
    project: str = DEFAULT_PROJECT
    manifests: list[str] = Field(default_factory=lambda: ["manifests/"])
    environments: dict[str, EnvironmentConfig] = Field(
        default_factory=lambda: {DEFAULT_ENV: EnvironmentConfig()}
    )
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)

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
    text = path.read_text(encoding="utf-8")
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
        from reconciler.validate import pydantic_diagnostics

        raise ManifestError(pydantic_diagnostics(exc, doc, ProjectConfig)) from None
    return Project(config, path.resolve().parent, shown)
