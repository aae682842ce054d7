"""The library API the CLI (and tests, and other programs) call: plan, apply, export.

Each function runs the pipeline for one environment: validate the manifests
completely (before any connection), connect once, read the live state in bulk,
build the plan, and (for apply) carry it out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from reconciler.apply import ApplyResult, apply_plan, check_refusals
from reconciler.environments import EnvironmentConfig, Project, load_project
from reconciler.errors import ApplyRefused, UsageError
from reconciler.live import (
    ConnectSettings,
    JetStreamClient,
    connect,
    read_live_state,
    resolve_settings,
)
from reconciler.models import Resource
from reconciler.plan import Plan, build_plan, parse_targets
from reconciler.validate import load_desired

T = TypeVar("T")


@dataclass
class Target:
    """One environment of one project, resolved to connection settings."""

    project: Project
    env_name: str
    env: EnvironmentConfig
    settings: ConnectSettings


def resolve_target(
    config: str | Path | None = None,
    env: str | None = None,
    *,
    server: str | None = None,
    creds: str | None = None,
    context: str | None = None,
    project: Project | None = None,
) -> Target:
    project = project or load_project(config)
    env_name, env_cfg = project.environment(env)
    settings = resolve_settings(env_cfg, server=server, creds=creds, context=context)
    return Target(project, env_name, env_cfg, settings)


async def _session(settings: ConnectSettings, body: Callable[[JetStreamClient], Awaitable[T]]) -> T:
    nc = await connect(settings)
    try:
        return await body(JetStreamClient(nc, settings))
    finally:
        with contextlib.suppress(Exception):  # closing must not mask the real error
            await nc.close()


async def plan_async(
    target: Target,
    client: JetStreamClient,
    desired: Sequence[Resource],
    *,
    prune: bool = False,
    targets: Sequence[str] = (),
) -> Plan:
    live = await read_live_state(client)
    return build_plan(
        desired,
        live,
        project=target.project.name,
        environment=target.env_name,
        prune=prune,
        targets=targets,
    )


def plan(
    target: Target,
    *,
    paths: Sequence[str] | None = None,
    prune: bool = False,
    targets: Sequence[str] = (),
) -> Plan:
    """Validate, read the live state, and return the plan (nothing is written)."""
    targets = parse_targets(targets)
    desired = load_desired(target.project, target.env_name, paths)
    return asyncio.run(
        _session(
            target.settings,
            lambda client: plan_async(target, client, desired, prune=prune, targets=targets),
        )
    )


def apply(
    target: Target,
    *,
    saved: Plan | None = None,
    paths: Sequence[str] | None = None,
    prune: bool = False,
    allow_replace: bool = False,
    targets: Sequence[str] = (),
    confirm: Callable[[Plan], bool] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_event: Callable[[str, object, str], None] | None = None,
) -> tuple[Plan, ApplyResult | None]:
    """Apply a saved plan exactly, or plan now and apply after ``confirm(plan)`` says yes.

    Returns the plan and the result (None when there was nothing to do or confirm said no).
    """
    targets = parse_targets(targets)
    if saved is not None:
        if targets:
            raise UsageError("--target cannot be used with a plan file (it is applied as saved)")
        if saved.environment != target.env_name:
            raise UsageError(
                f'the plan is for environment "{saved.environment}", not "{target.env_name}"'
            )
        if saved.project and saved.project != target.project.name:
            raise UsageError(
                f'the plan is for project "{saved.project}", not "{target.project.name}"'
            )
        desired: Sequence[Resource] = ()
    else:
        desired = load_desired(target.project, target.env_name, paths)

    async def body(client: JetStreamClient) -> tuple[Plan, ApplyResult | None]:
        if saved is not None:
            the_plan = saved
        else:
            the_plan = await plan_async(target, client, desired, prune=prune, targets=targets)
            if on_plan:
                on_plan(the_plan)
        if not the_plan.has_changes:
            return the_plan, None
        refusals = check_refusals(the_plan, allow_replace=allow_replace, prune=prune)
        if refusals:  # before asking: never ask to confirm what will be refused
            raise ApplyRefused("apply refused, nothing was changed:\n" + "\n".join(refusals))
        if saved is None and confirm is not None and not confirm(the_plan):
            raise ApplyRefused("apply cancelled, nothing was changed")
        result = await apply_plan(
            the_plan,
            client,
            allow_replace=allow_replace,
            prune=prune,
            check_stale=saved is not None,
            on_event=on_event,  # type: ignore[arg-type]
        )
        return the_plan, result

    return asyncio.run(_session(target.settings, body))
