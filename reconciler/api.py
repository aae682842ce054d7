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
from reconciler.connection import ConnectSettings, connect, resolve_settings
from reconciler.environments import EnvironmentConfig, Project, load_project
from reconciler.errors import ApplyRefused, ManifestError, UsageError
from reconciler.live import (
    Connections,
    JetStreamClient,
    LiveState,
    cluster_size_of,
    read_live_state,
)
from reconciler.models import Resource
from reconciler.normalize import fingerprint
from reconciler.plan import Action, Change, Plan, Reason, build_plan, parse_targets
from reconciler.policy import check_live_overlap, destroy_refusals
from reconciler.validate import load_desired

T = TypeVar("T")
UNKNOWN_API_LEVEL = 10**6  # gates nothing: used when no server of the target was read


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
            await asyncio.wait_for(nc.close(), 2)


def _group_by_account(resources: Sequence[Resource]) -> dict[str | None, list[Resource]]:
    groups: dict[str | None, list[Resource]] = {}
    for res in resources:
        if res.address.kind != "Account":
            groups.setdefault(res.address.account, []).append(res)
    return groups


async def plan_async(
    target: Target,
    conns: Connections,
    desired: Sequence[Resource],
    *,
    prune: bool = False,
    targets: Sequence[str] = (),
) -> Plan:
    """Plan every account the manifests touch: Account JWTs first, then each account's
    streams and consumers (the environment's own account first)."""
    from reconciler.accounts import reconcile as accounts

    account_res = [r for r in desired if r.address.kind == "Account"]
    groups = _group_by_account(desired)
    operator_mode = bool(account_res) or any(name is not None for name in groups)
    store = conns.store if operator_mode else None
    if operator_mode:
        problems = accounts.check_references(
            account_res, [r for r in desired if r.address.kind != "Account"], store
        )
        if problems:
            raise ManifestError(problems)
    changes: list[Change] = []
    account_changes: dict[str, Change] = {}
    cluster_size: int | None = None
    if account_res:
        system = await conns.system()
        cluster_size = cluster_size_of(system)
        live_claims = await accounts.read_account_claims(
            system, store, [r.address.name for r in account_res]
        )
        for res in account_res:
            action, diff, send, live_canon = accounts.account_change_parts(
                res, live_claims[res.address.name], store
            )
            change = Change(
                res.address,
                Action(action),
                diff=diff,
                send=send,
                reason=Reason.NEW
                if action == "create"
                else (Reason.CHANGED if action == "update" else None),
                location=str(res.location),
                prevent_destroy=res.metadata.prevent_destroy,
                live_digest=fingerprint(live_canon),
            )
            account_changes[res.address.name] = change
            changes.append(change)
        if prune:
            for res in account_res:
                groups.setdefault(res.address.name, [])
    if not groups and not account_res:
        groups[None] = []
    api_level, version, unmanaged = 0, "", []
    for account in sorted(groups, key=lambda a: (a is not None, a or "")):
        parent = account_changes.get(account or "")
        new_account = account is not None and (
            (parent is not None and parent.action is Action.CREATE)
            or (store is not None and not store.has_account(account))
        )
        if new_account:
            # Nothing to read in an account that does not exist yet; its API level is
            # that of the servers already read, or unknown (then fields are not gated).
            level = api_level or UNKNOWN_API_LEVEL
            live = LiveState(level, version, None, cluster_size, {}, {}, {})
        else:
            live = await read_live_state(await conns.client(account))
            api_level, version = live.api_level, live.server_version
            overlap = check_live_overlap(groups[account], live.streams, account=account)
            if overlap:  # the server would refuse these creates: say so before writing
                raise ManifestError(overlap)
        sub = build_plan(
            groups[account],
            live,
            project=target.project.name,
            environment=target.env_name,
            prune=prune,
            targets=targets,
            account=account,
        )
        if parent is not None and parent.action is not Action.NOOP:
            for change in sub.changes:
                change.depends_on.append(parent.key)
        changes += sub.changes
        unmanaged += sub.unmanaged
    if targets:
        changes = [
            c
            for c in changes
            if c.address.kind != "Account" or any(t == f"Account/{c.address.name}" for t in targets)
        ]
    return Plan(
        target.env_name, target.project.name, changes, api_level, version, unmanaged=unmanaged
    )


async def _with_connections(target: Target, body: Callable[[Connections], Awaitable[T]]) -> T:
    auth_dir = target.env.auth_dir
    if auth_dir:  # relative to the project, like the manifest paths
        auth_dir = str(Path(target.project.root, Path(auth_dir).expanduser()))
    conns = Connections(target.settings, auth_dir)
    try:
        return await body(conns)
    finally:
        await conns.close()


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
        _with_connections(
            target,
            lambda conns: plan_async(target, conns, desired, prune=prune, targets=targets),
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
        desired: list[Resource] = []
    else:
        desired = load_desired(target.project, target.env_name, paths)
    # The validated models are only needed to plan: handed over, so that a large apply
    # does not keep them (about a third of its memory) while it writes.
    handover = [desired]
    del desired

    async def body(conns: Connections) -> tuple[Plan, ApplyResult | None]:
        if saved is not None:
            the_plan = saved
        else:
            the_plan = await plan_async(target, conns, handover.pop(), prune=prune, targets=targets)
            if on_plan:
                on_plan(the_plan)
        if not the_plan.has_changes:
            return the_plan, None
        refusals = check_refusals(the_plan, allow_replace=allow_replace, prune=prune)
        refusals += destroy_refusals(the_plan, target.project)
        if refusals:  # before asking: never ask to confirm what will be refused
            raise ApplyRefused("apply refused, nothing was changed:\n" + "\n".join(refusals))
        if saved is None and confirm is not None and not confirm(the_plan):
            raise ApplyRefused("apply cancelled, nothing was changed")
        result = await apply_plan(
            the_plan,
            conns,
            allow_replace=allow_replace,
            prune=prune,
            check_stale=saved is not None,
            on_event=on_event,  # type: ignore[arg-type]
        )
        return the_plan, result

    return asyncio.run(_with_connections(target, body))


def export(target: Target, out_dir: str | Path, schemas: str = "../schemas") -> list[Path]:
    """Read the live state of ``target`` and write it as manifests into ``out_dir``
    (adoption: one file per stream, its consumers with it); the paths written."""
    from reconciler.export import write_export

    live = asyncio.run(_session(target.settings, read_live_state))
    return write_export(live, out_dir, schemas)
