"""The library API the CLI (and tests, and other programs) call: plan, apply, export.

Each function runs the pipeline for one environment: validate the manifests
completely (before any connection), connect once, read the live state in bulk,
build the plan, and (for apply) carry it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.capacity import capacity_problems, server_problems
from reconciler.connection import ConnectSettings, connect, resolve_settings, server_info
from reconciler.connection import run as run_async
from reconciler.environments import EnvironmentConfig, Project, load_project
from reconciler.errors import (
    ApplyRefused,
    CapacityError,
    JsopsError,
    ManifestError,
    PlanRefused,
    StalePlanError,
    TargetMismatch,
    UsageError,
)
from reconciler.live import (
    LIST_CONCURRENCY,
    Connections,
    JetStreamClient,
    LiveState,
    ServerIdentity,
    cluster_size_of,
    connection_account,
    identity_of,
    read_consumers,
    read_live_state,
    read_streams,
)
from reconciler.models import Address, Kind, Resource
from reconciler.mutability import level_of_release
from reconciler.plan import (
    Action,
    Change,
    Plan,
    Planner,
    account_change,
    assemble_plan,
    build_plan,
    parse_targets,
    subject_count_streams,
)
from reconciler.planfile import SavedPlan
from reconciler.policy import check_live_overlap
from reconciler.refusals import (
    SAVED_PLAN_CODES,
    ApplyOptions,
    Refusal,
    empty_prune_refusals,
    refusals,
)
from reconciler.render import refusal_text
from reconciler.tasks import for_each
from reconciler.validate import load_desired

if TYPE_CHECKING:  # apply and the lock are imported by what uses them: a plan needs neither
    from reconciler.apply import ApplyResult, OnEvent
    from reconciler.graph import Graph
    from reconciler.lock import Holder
    from reconciler.status import StatusReport

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


def server_level(target: Target) -> tuple[int, str]:
    """(JetStream API level, nats-server version) of an environment's server."""

    async def body(client: JetStreamClient) -> tuple[int, str]:
        info = await client.account_info()
        version = str(server_info(client.nc).get("version", ""))
        return int((info.get("api") or {}).get("level") or 0), version

    return run_async(_session(target.settings, body))


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
        if res.address.kind != Kind.ACCOUNT:
            groups.setdefault(res.address.account, []).append(res)
    return groups


def check_expected(target: Target, identity: ServerIdentity) -> None:
    """Refuse to work on servers other than those the environment pins (``expect``)."""
    expect = target.env.expect
    if expect is None:
        return
    wrong = [
        f'{key} "{want}" but found {getattr(identity, key) or "none"}'
        for key, want in expect.model_dump(exclude_none=True).items()
        if getattr(identity, key) != want
    ]
    if wrong:
        raise TargetMismatch(
            f'environment "{target.env_name}" expects {"; ".join(wrong)} on '
            f"{target.settings.describe()}: refusing to run there "
            f"(environments.{target.env_name}.expect in jsops.yaml)"
        )


async def plan_async(
    target: Target,
    conns: Connections,
    desired: Sequence[Resource],
    *,
    prune: bool = False,
    targets: Sequence[str] = (),
    consume: bool = False,
) -> Plan:
    """Plan every account the manifests touch: Account JWTs first, then each account's
    streams and consumers (the environment's own account first). Reads only.

    With ``consume``, ``desired`` (a list) is emptied and each resource let go once it
    is planned: apply and plan hand their validated models over, so that the plan of
    40,000 creates reuses their memory (apply's peak 254 -> 205 MB at 10,000 streams)
    instead of adding to it (a plan of 40,000 noops: 200 -> 187 MB)."""
    declared = len(desired)
    account_res = [r for r in desired if r.address.kind == Kind.ACCOUNT]
    groups = _group_by_account(desired)
    operator_mode = bool(account_res) or any(name is not None for name in groups)
    store = conns.store if operator_mode else None
    if operator_mode:  # (imported here: its JWT and nkeys libraries cost 20 ms a run)
        from reconciler.accounts import reconcile as accounts

        problems = accounts.check_references(
            account_res, [r for r in desired if r.address.kind != Kind.ACCOUNT], store
        )
        if problems:
            raise ManifestError(problems)
    if consume:  # from here on only ``groups`` holds them (and a Planner, while it plans)
        assert isinstance(desired, list)
        desired.clear()
    account_changes: dict[str, Change] = {}
    cluster_size: int | None = None
    if account_res:
        system = await conns.system()
        cluster_size = cluster_size_of(system)
        live_claims = await accounts.read_account_claims(
            system, conns.store, [r.address.name for r in account_res]
        )
        for res in account_res:
            account_changes[res.address.name] = account_change(
                res, *accounts.account_change_parts(res, live_claims[res.address.name], conns.store)
            )
        if prune:
            for res in account_res:
                groups.setdefault(res.address.name, [])
    if not groups and not account_res:
        groups[None] = []
    identity: ServerIdentity | None = None
    api_level: int | None = None  # of the first account read (0 is 2.10's level)
    version = ""
    parts: list[tuple[Plan, LiveState]] = []
    checked: list[tuple[Plan, LiveState]] = []
    for account in sorted(groups, key=lambda a: (a is not None, a or "")):
        parent = account_changes.get(account or "")
        new_account = account is not None and (
            (parent is not None and parent.action is Action.CREATE)
            or (store is not None and not store.has_account(account))
        )
        if new_account:
            # Nothing to read in an account that does not exist yet: its API level is
            # that of the servers already read, else the one the connected server's
            # release has (an older server refuses fields it does not know).
            if api_level is None:
                version = str(server_info(await conns.system()).get("version", ""))
                api_level = level_of_release(version) if version else UNKNOWN_API_LEVEL
            live = LiveState(api_level, version, None, cluster_size, {}, {}, {})
        requires = parent.key if parent is not None and parent.action is not Action.NOOP else None
        plan_args: dict[str, Any] = {
            "project": target.project.name,
            "environment": target.env_name,
            "prune": prune,
            "account": account,
            "requires": requires,
        }
        if new_account:
            sub = build_plan(groups[account], live, **plan_args)
        else:
            client = await conns.client(account)
            if identity is None:  # the first account read: the environment's own if any
                live, who = await asyncio.gather(
                    read_streams(client), connection_account(client.nc, client.timeout)
                )
                identity = identity_of(client.nc, live.account_info, who)
                check_expected(target, identity)  # before anything is planned
            else:
                live = await read_streams(client)
            api_level, version = live.api_level, live.server_version
            await _read_subject_counts(client, live, subject_count_streams(groups[account], live))
            overlap = check_live_overlap(groups[account], live.streams, account=account)
            if overlap:  # the server would refuse these creates: say so before writing
                raise ManifestError(overlap)
            # Streams are planned now; each stream's consumers as soon as they are read,
            # and only the infos of consumers not declared are kept (memory at 10,000s).
            planner = Planner(groups[account], live, **plan_args)
            if consume:  # the planner has its streams planned and its consumers to plan
                groups[account] = []
            await read_consumers(client, live, keep=planner.take)
            sub = planner.finish()
        parts.append((sub, live))
        if requires is None:  # an account this plan changes has limits not in force yet
            checked.append((sub, live))
    if identity is None:  # operator mode, only accounts this plan creates
        system = await conns.system()
        who = await connection_account(system, target.settings.timeout)
        identity = identity_of(system, {}, who)
        check_expected(target, identity)
    the_plan = assemble_plan(
        target.env_name,
        target.project.name,
        list(account_changes.values()),
        parts,
        identity=identity,
        prune=prune,
        targets=targets,
        declared=declared,
    )
    kept = {c.key for c in the_plan.changes}
    size = next((live.cluster_size for _, live in parts if live.cluster_size), cluster_size)
    servers = await _server_jsz(conns, size) if store is not None and checked and kept else []
    shortfalls = []
    for sub, live in checked:
        mine = [c for c in sub.changes if c.key in kept]
        if (
            not operator_mode
            and live.lock_config is None
            and (live.cluster_size or 1) == 1
            and any(c.action is not Action.NOOP for c in mine)
        ):
            # apply first makes its lock bucket in this account (reconciler.lock), and it
            # reserves storage too. (On a cluster it tries R3, then R1: which tier it
            # lands in is not known before, so it is not counted there.)
            from reconciler import lock

            live.lock_config = lock.lock_stream_config(live.api_level, 1)
        shortfalls += capacity_problems(mine, live)
        shortfalls += server_problems(mine, live, servers)
    if shortfalls:  # the server would refuse these writes part way: say so before any
        raise CapacityError(shortfalls)
    return the_plan


SERVER_PING_WAIT = 0.5  # seconds to collect the servers' JSZ replies


async def _server_jsz(conns: Connections, expected: int | None) -> list[dict[str, Any]]:
    """Every server's JetStream config and reservations (``$SYS.REQ.SERVER.PING.JSZ``,
    system account, operator mode), collected for at most SERVER_PING_WAIT seconds or
    until ``expected`` servers answered; empty when the servers cannot be asked."""
    try:
        system = await conns.system()
        inbox = system.new_inbox()
        sub = await system.subscribe(inbox)
        await system.publish("$SYS.REQ.SERVER.PING.JSZ", b"{}", reply=inbox)
        replies: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + SERVER_PING_WAIT
        while expected is None or len(replies) < expected:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                msg = await sub.next_msg(timeout=left)
            except Exception:  # nats-py's timeout: no more replies
                break
            with contextlib.suppress(ValueError):
                replies.append(json.loads(msg.data))
        await sub.unsubscribe()
    except JsopsError:
        return []
    return [r for r in replies if isinstance(r, dict) and r.get("data")]


async def _read_subject_counts(client: JetStreamClient, live: LiveState, names: list[str]) -> None:
    """Per-subject counts of the streams whose lowered max_msgs_per_subject may trim
    them (one request each, only for those), for the plan's loss estimate."""

    async def one(name: str) -> None:
        live.subject_counts[name] = await client.subject_counts(name)

    await for_each(names, one, LIST_CONCURRENCY)


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
    allow_empty_prune: bool = False,
) -> Plan:
    """Validate, read the live state, and return the plan (nothing is written).

    A pruning plan with nothing declared for the environment is refused (it would
    delete everything this project owns) unless ``allow_empty_prune``.
    """
    targets = parse_targets(targets)
    desired = load_desired(target.project, target.env_name, paths)
    the_plan = run_async(
        _with_connections(
            target,
            lambda conns: plan_async(
                target, conns, desired, prune=prune, targets=targets, consume=True
            ),
        )
    )
    found = empty_prune_refusals(the_plan, ApplyOptions(allow_empty_prune=allow_empty_prune))
    if found:
        raise PlanRefused(refusal_text(found[0]))
    return the_plan


def apply(
    target: Target,
    *,
    saved: Plan | SavedPlan | None = None,
    paths: Sequence[str] | None = None,
    options: ApplyOptions | None = None,
    targets: Sequence[str] = (),
    confirm: Callable[[Plan], bool] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_event: OnEvent | None = None,
    prune: bool = False,
    allow_replace: bool = False,
    lock_timeout: float = 0.0,
    lock_ttl: float | None = None,
    on_lock_wait: Callable[[Holder], None] | None = None,
    backup_dir: str | Path | None = None,
    on_start: Callable[[Plan], None] | None = None,
) -> tuple[Plan, ApplyResult | None]:
    """Plan now and apply after ``confirm(plan)`` says yes; or, with a ``saved`` plan,
    plan again from the same manifests and live state and apply that fresh plan only if
    it is the saved one (a plan file is never executed as written; a
    :class:`~reconciler.planfile.SavedPlan` is compared as its file is read again).

    Every refusal (``reconciler.refusals``) is checked once, on the plan about to run,
    before anything is written. A plan with changes runs under the environment's apply
    lock (``reconciler.lock``): while another apply holds it, this one fails naming the
    holder, or waits up to ``lock_timeout`` seconds (telling ``on_lock_wait(holder)``);
    if another apply ran between the plan and the lock, the plan is made again under the
    lock (checked, shown and confirmed again). An apply with nothing to change, or not
    confirmed, takes no lock. With ``backup_dir``, each stream or bucket about to be
    replaced or deleted is snapshotted into it first when it holds messages (a failed
    snapshot fails that change). ``on_start(plan)`` is told the plan whose writes begin
    (under the lock, after the last confirmation). Returns the
    plan and the result (None when there was nothing to do or confirm said no).
    """
    from reconciler import lock
    from reconciler.apply import ApplyStatus, apply_plan

    options = options or ApplyOptions(prune=prune, allow_replace=allow_replace)
    targets = parse_targets(targets)
    saved_file, header = (saved, saved.plan) if isinstance(saved, SavedPlan) else (None, saved)
    with saved_file.named_first() if saved_file is not None else contextlib.nullcontext():
        _check_saved_header(header, target, targets)
        desired = load_desired(target.project, target.env_name, paths)
    if saved_file is not None:  # every change of the file checked before connecting
        saved_file.verify()
        header = saved_file.plan
        _check_saved_header(header, target, targets)
    operator_mode = any(r.address.kind is Kind.ACCOUNT or r.address.account for r in desired)
    ttl = lock.lock_ttl(lock_ttl)
    # The validated models are only needed to plan: handed over, so that a large apply
    # does not keep them (about a third of its memory) while it writes.
    handover = [desired]
    del desired
    prune_plan = header.prune if header is not None else options.prune
    plan_targets = list(header.targets) if header is not None else targets

    async def checked_plan(conns: Connections, desired: list[Resource]) -> Plan:
        the_plan = await plan_async(
            target, conns, desired, prune=prune_plan, targets=plan_targets, consume=True
        )
        if header is None and on_plan:
            on_plan(the_plan)
        found = refusals(
            the_plan,
            target.project,
            options,
            saved=header,
            saved_changes=saved_file.changes() if saved_file is not None else None,
            saved_fingerprints=saved_file.fingerprints() if saved_file is not None else None,
        )
        if found:  # before asking: never ask to confirm what will be refused
            raise refused(found)
        return the_plan

    async def body(conns: Connections) -> tuple[Plan, ApplyResult | None]:
        before = await lock.last_sequence(
            await lock.lock_client(conns, operator_mode, create=False)
        )
        the_plan = await checked_plan(conns, handover.pop())
        if not the_plan.has_changes:
            return the_plan, None
        if header is None and confirm is not None and not confirm(the_plan):
            raise ApplyRefused("apply cancelled, nothing was changed")
        client = await lock.lock_client(conns, operator_mode, create=True)
        assert client is not None
        try:
            async with lock.held(
                client,
                lock.lock_key(target.project.name, target.env_name),
                lock.this_holder(target.project.name, target.env_name, ttl),
                timeout=lock_timeout,
                on_wait=on_lock_wait,
            ) as lease:
                if lease.seq != before + 1:
                    # another apply ran since this plan was made: plan again, under the lock
                    desired = load_desired(target.project, target.env_name, paths)
                    the_plan = await checked_plan(conns, desired)
                    del desired
                    if not the_plan.has_changes:
                        return the_plan, None
                    # asked again, in a thread: the lease is refreshed while a person reads
                    if (
                        header is None
                        and confirm is not None
                        and not await asyncio.to_thread(confirm, the_plan)
                    ):
                        raise ApplyRefused("apply cancelled, nothing was changed")
                if on_start is not None:
                    on_start(the_plan)
                total[0] = len(the_plan.pending())
                result = await apply_plan(
                    the_plan, conns, on_event=count, guard=lease.ensure, backup_dir=backup_dir
                )
        except lock.LockLost:  # said with what was made and what was not
            raise lock.lost_during(made[0], total[0]) from None
        return the_plan, result

    made, total = [0], [0]  # changes done, of how many, once writes started

    def count(status: ApplyStatus, change: Change, why: str) -> None:
        if status is ApplyStatus.DONE:
            made[0] += 1
        if on_event is not None:
            on_event(status, change, why)

    try:
        return run_async(_with_connections(target, body))
    finally:
        if saved_file is not None:
            saved_file.stop()  # no process checking the file outlives the apply


def _check_saved_header(header: Plan | None, target: Target, targets: Sequence[str]) -> None:
    """A saved plan is applied as saved, to the environment and project it was made for."""
    if header is None:
        return
    if targets:
        raise UsageError("--target cannot be used with a plan file (it is applied as saved)")
    if header.environment != target.env_name:
        raise UsageError(
            f'the plan is for environment "{header.environment}", not "{target.env_name}"'
        )
    if header.project and header.project != target.project.name:
        raise UsageError(f'the plan is for project "{header.project}", not "{target.project.name}"')


def unlock(
    target: Target, *, confirm: Callable[[Holder], bool] | None = None
) -> tuple[Holder | None, bool]:
    """Force the environment's apply lock free, after ``confirm(holder)`` says yes.

    Returns the holder it had (None: not locked) and whether it was released.
    """
    from reconciler import lock

    async def body(conns: Connections) -> tuple[Holder | None, bool]:
        client = await lock.lock_client(conns, lock.lock_account_exists(conns), create=False)
        if client is None:
            return None, False
        key = lock.lock_key(target.project.name, target.env_name)
        holder = await lock.read_holder(client, key)
        if holder is None:
            return None, False
        if confirm is not None and not await asyncio.to_thread(confirm, holder):
            return holder, False
        await lock.force_unlock(client, key)
        return holder, True

    return run_async(_with_connections(target, body))


def export(
    target: Target,
    out_dir: str | Path,
    schemas: str = "../schemas",
    *,
    force: bool = False,
    include_declared: bool = False,
) -> tuple[list[Path], int]:
    """Read the live state of ``target`` and write it as manifests into ``out_dir``
    (adoption: one file per stream, its consumers with it): the paths written, and how
    many resources were left out because the project's manifests already declare them
    (all are written with ``include_declared``; a second declaration would make every
    later plan fail: "declared twice"). An existing file is never overwritten unless
    ``force`` (see ``reconciler.export``)."""
    from reconciler.export import write_export

    declared = None
    if not include_declared:  # before any connection: bad manifests never reach a server
        desired = load_desired(target.project, target.env_name)
        declared = {
            Address(r.address.kind, r.address.name, r.address.stream)
            for r in desired
            if r.address.account is None and r.address.kind is not Kind.ACCOUNT
        }
    live = run_async(_session(target.settings, read_live_state))
    return write_export(live, out_dir, schemas, force=force, declared=declared)


def status(
    target: Target, *, paths: Sequence[str] | None = None, targets: Sequence[str] = ()
) -> StatusReport:
    """The live health of the environment's declared streams, buckets and consumers
    (``reconciler.status``), only those ``targets`` name; nothing is written."""
    from reconciler.status import read_status, select_resources

    targets = parse_targets(targets)
    # only the addresses: the models are let go before the reads (40 MB at 40,000)
    resources = [
        r.address
        for r in select_resources(load_desired(target.project, target.env_name, paths), targets)
    ]

    async def body(conns: Connections) -> StatusReport:
        if target.env.expect is not None:  # never report another cluster's health
            client = await conns.client(None)
            info, who = await asyncio.gather(
                client.account_info(), connection_account(client.nc, client.timeout)
            )
            check_expected(target, identity_of(client.nc, info, who))
        return await read_status(conns, resources, target.env_name)

    return run_async(_with_connections(target, body))


def refused(found: Sequence[Refusal]) -> JsopsError:
    """The one error for a refused apply: a stale or edited saved plan, or refusals."""
    if any(r.code in SAVED_PLAN_CODES for r in found):
        return StalePlanError(
            "the plan is stale, nothing was changed (plan again):\n"
            + "\n".join(refusal_text(r) for r in found if r.code in SAVED_PLAN_CODES)
        )
    return ApplyRefused(
        "apply refused, nothing was changed:\n" + "\n".join(refusal_text(r) for r in found)
    )


def topology(target: Target, *, paths: Sequence[str] | None = None, live: bool = False) -> Graph:
    """The graph of the environment's manifests (``jsops graph``); with ``live``, also
    the streams, buckets and consumers of the environment's account that no manifest
    declares (drawn dashed). Reads the server only with ``live``."""
    from reconciler import buckets
    from reconciler.graph import Entry, build_graph
    from reconciler.models import Address
    from reconciler.normalize import stream_api_config

    desired = load_desired(target.project, target.env_name, paths)
    project = target.project.name
    streams, bucket_of = buckets.lower_all(desired)
    entries = [
        Entry(
            bucket_of[r.address].address if r.address in bucket_of else r.address,
            stream_api_config(r, project),
        )
        for r in streams
    ]
    entries += [Entry(r.address) for r in desired if r.address.kind is Kind.CONSUMER]
    if live:
        state = run_async(_with_connections(target, _read_own_account))
        declared = {r.address for r in desired}
        for name, info in sorted(state.streams.items()):
            address = buckets.live_address(name, info["config"])
            if address not in declared:
                entries.append(Entry(address, info["config"], "live"))
        for stream, name in sorted(state.consumers):
            if Address(Kind.CONSUMER, name, stream=stream) not in declared:
                entries.append(Entry(Address(Kind.CONSUMER, name, stream=stream), None, "live"))
    return build_graph(entries)


async def _read_own_account(conns: Connections) -> LiveState:
    return await read_live_state(await conns.client(None))
