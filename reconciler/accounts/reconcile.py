"""Accounts in the plan: desired claims from Account manifests, live claims from the
resolver, compared in manifest terms, and pushed on apply.

Both sides are put in one canonical form, the manifest's (``jetstream.max_storage``,
not the JWT's ``disk_storage``; accounts in imports by name, not public key), by
building claims for the desired side with the same function apply signs, then
reading both through :func:`canonical_account`. So a pushed account plans ``noop``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client as NatsClient

from reconciler.accounts.auth import build_account_jwt, lookup_account_jwt, push_account_jwt
from reconciler.accounts.jwt import (
    account_claims,
    decode_jwt,
    jetstream_limits_from_claims,
    jetstream_tiers_from_claims,
)
from reconciler.accounts.store import AuthStore
from reconciler.diff import diff_config
from reconciler.errors import ApiError, Diagnostic, JsopsError
from reconciler.models import AccountSpec, Resource
from reconciler.plan import Action

_CONNECTION_LIMITS = ("conn", "subs", "data", "payload", "leaf")
VERIFY_TIMEOUT = 5.0


def _spec_dict(res: Resource) -> dict[str, Any]:
    """An Account resource's spec as plain data."""
    spec = res.spec
    assert isinstance(spec, AccountSpec), res.address
    return spec.model_dump(exclude_none=True, mode="json")


def claims_kwargs(spec: dict[str, Any], pubkey_of: Callable[[str], str]) -> dict[str, Any]:
    """Keyword arguments of ``account_claims``/``build_account_jwt`` for an Account spec."""
    kwargs: dict[str, Any] = {}
    if "jetstream" in spec:
        kwargs["jetstream"] = spec["jetstream"]
    if spec.get("tiers"):
        kwargs["tiers"] = spec["tiers"]
    for key in _CONNECTION_LIMITS:
        value = (spec.get("limits") or {}).get(key)
        if value is not None:
            kwargs[key] = value
    if spec.get("exports"):
        kwargs["exports"] = spec["exports"]
    if spec.get("imports"):
        kwargs["imports"] = [
            {**imp, "account": pubkey_of(imp["account"])} for imp in spec["imports"]
        ]
    if spec.get("description"):
        kwargs["description"] = spec["description"]
    return kwargs


def _clean_entries(entries: Sequence[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Exports/imports without empty fields, sorted by subject (as nats-io/jwt stores them)."""
    cleaned = [{k: v for k, v in e.items() if v not in (None, "", False, 0)} for e in entries or []]
    return sorted(cleaned, key=lambda e: str(e.get("subject"))) or None


def canonical_account(claims: dict[str, Any], name_of: Callable[[str], str]) -> dict[str, Any]:
    """Account claims in manifest terms, defaults filled in (what a diff compares)."""
    nats = claims.get("nats") or {}
    limits = nats.get("limits") or {}
    tiers = jetstream_tiers_from_claims(claims)
    imports = [
        {**imp, "account": name_of(imp.get("account", ""))} for imp in nats.get("imports") or []
    ]
    return {
        "description": nats.get("description") or None,
        "jetstream": None if tiers else jetstream_limits_from_claims(claims),
        "tiers": tiers or None,
        "limits": {k: limits.get(k, -1) for k in _CONNECTION_LIMITS},
        "exports": _clean_entries(nats.get("exports")),
        "imports": _clean_entries(imports),
    }


def desired_canonical(res: Resource) -> dict[str, Any]:
    """The canonical form of an Account manifest (imports keep account names)."""
    spec = _spec_dict(res)
    kwargs = claims_kwargs({k: v for k, v in spec.items() if k != "imports"}, str)
    claims = account_claims(res.address.name, _placeholder_key(), **kwargs)
    canonical = canonical_account(claims, str)
    canonical["imports"] = _clean_entries(spec.get("imports"))
    return canonical


_PLACEHOLDER: list[str] = []


def _placeholder_key() -> str:
    """A well-formed account public key for claims that are only compared, never signed."""
    if not _PLACEHOLDER:
        from reconciler.accounts.jwt import NKey

        _PLACEHOLDER.append(NKey.generate("account").public_key)
    return _PLACEHOLDER[0]


def _name_of(store: AuthStore) -> Callable[[str], str]:
    def name(pub: str) -> str:
        return store.account_name_for(pub) or pub

    return name


def check_references(
    accounts: Sequence[Resource], resources: Sequence[Resource], store: AuthStore | None
) -> list[Diagnostic]:
    """Accounts named in imports and in resources' metadata.account must be declared
    (as Account manifests) or already known to the auth store."""
    declared = {r.address.name for r in accounts}
    problems = []

    def known(name: str) -> bool:
        return name in declared or (store is not None and store.has_account(name))

    system = store.system_account if store is not None else None
    for res in accounts:
        if res.address.name == system:
            # The operator's system account carries the server's own traffic ($SYS),
            # has no JetStream, and its JWT is the operator's to sign: jsops leaves it.
            problems.append(
                Diagnostic(
                    res.location,
                    f"Account {system} is the auth store's system account: jsops does not "
                    "manage it; choose another name",
                    code="reserved_name",
                )
            )
            continue
        spec = res.spec
        assert isinstance(spec, AccountSpec)
        for i, imp in enumerate(spec.imports or []):
            if not known(imp.account):
                loc = (
                    res.document.locate(("spec", "imports", i, "account"))
                    if res.document
                    else res.location
                )
                problems.append(
                    Diagnostic(
                        loc,
                        f'account "{imp.account}" is neither declared nor in the auth store',
                        code="unknown_account",
                    )
                )
    for res in resources:
        account = res.address.account
        if account and account == system:
            problems.append(
                Diagnostic(
                    res.location,
                    f'{res.address}: account "{account}" is the system account, which has '
                    "no JetStream",
                    code="reserved_name",
                )
            )
        elif account and not known(account):
            problems.append(
                Diagnostic(
                    res.location,
                    f'{res.address}: account "{account}" is neither declared nor in the auth store',
                    code="unknown_account",
                )
            )
    return problems


async def read_account_claims(
    system_nc: NatsClient, store: AuthStore, names: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """Live claims of each named account (None: no keys yet, or the resolver has none)."""

    async def one(name: str) -> tuple[str, dict[str, Any] | None]:
        if not store.has_account(name):
            return name, None
        token = await lookup_account_jwt(system_nc, store.account(name).public_key)
        return name, (decode_jwt(token)[1] if token else None)

    return dict(await asyncio.gather(*(one(n) for n in names)))


def account_change_parts(
    res: Resource, live_claims: dict[str, Any] | None, store: AuthStore
) -> tuple[Action, list[Any], dict[str, Any], dict[str, Any] | None]:
    """(action, diff, send, live canonical) for one Account manifest."""
    desired = desired_canonical(res)
    send = {"name": res.address.name, "spec": _spec_dict(res)}
    if live_claims is None:
        shown = {k: v for k, v in desired.items() if v is not None}
        return Action.CREATE, diff_config({}, shown), send, None
    live = canonical_account(live_claims, _name_of(store))
    if live == desired:
        return Action.NOOP, [], send, live
    return Action.UPDATE, diff_config(live, desired), send, live


async def apply_account(connections: Any, send: dict[str, Any], servers: int) -> None:
    """Create keys if needed, sign the account JWT, push it, and verify it is live."""
    store: AuthStore = connections.store
    name = send["name"]
    spec = send["spec"]
    store.account(name, create=True)
    for imp in spec.get("imports") or []:
        store.account(imp["account"], create=True)
    kwargs = claims_kwargs(spec, lambda n: str(store.account(n, create=True).public_key))
    token = build_account_jwt(store, name, **kwargs)
    system = await connections.system()
    await push_account_jwt(
        system, token, expect_servers=servers, issuers=store.operator_signing_keys
    )
    store.save_account_jwt(name, token)
    if spec.get("jetstream") is not None or spec.get("tiers"):
        await _verify_limits(connections, name, spec)


async def _verify_limits(connections: Any, name: str, spec: dict[str, Any]) -> None:
    """Poll the account's $JS.API.INFO until it shows the pushed limits."""
    store: AuthStore = connections.store
    claims = decode_jwt(store.account_jwt(name) or "")[1]
    flat = jetstream_limits_from_claims(claims)
    tiers = jetstream_tiers_from_claims(claims)
    deadline = asyncio.get_running_loop().time() + VERIFY_TIMEOUT
    last: Any = None
    while True:
        try:
            client = await connections.client(name)
            info = await client.request("INFO")
            if tiers:
                last = {t: (info.get("tiers") or {}).get(t, {}).get("limits") for t in tiers}
                if last == tiers:
                    return
            else:
                last = info.get("limits")
                if last == flat:
                    return
        except (ApiError, JsopsError) as exc:
            last = str(exc)
        if asyncio.get_running_loop().time() > deadline:
            raise JsopsError(
                f"account {name}: pushed, but its JetStream limits are not live after "
                f"{VERIFY_TIMEOUT:.0f}s (server reports {json.dumps(last)})"
            )
        await asyncio.sleep(0.1)
