"""The auth store on disk: init once, file modes, stable account keys, no leaked seeds."""

from __future__ import annotations

import re
import stat
import threading
from pathlib import Path

import pytest

from reconciler.accounts import (
    AuthError,
    AuthStore,
    AuthStoreError,
    admin_creds,
    build_account_jwt,
    decode_jwt,
    init_auth_store,
    jetstream_limits_from_claims,
    mint_user_creds,
    parse_creds,
    resolve_auth_dir,
    verify_jwt,
)
from reconciler.accounts.auth import include_directive, render_server_auth_conf

SEED_RE = re.compile(r"(?<![A-Za-z0-9_-])S[OAU][A-Z2-7]{56}(?![A-Za-z0-9_-])")  # a standalone seed


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int]]:
    """path -> (content or None for dirs, mode, mtime_ns) of everything under root."""
    out: dict[str, tuple[bytes | None, int, int]] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.stat()
        content = None if path.is_dir() else path.read_bytes()
        out[str(path.relative_to(root))] = (content, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def all_seeds(root: Path) -> list[str]:
    seeds = []
    for path in root.rglob("*"):
        if path.suffix in (".nk", ".creds"):
            seeds += SEED_RE.findall(path.read_text())
    return seeds


def test_init_creates_the_layout_with_private_modes(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    store = init_auth_store(root)
    assert store.root == root.absolute()
    expected_files = [
        "store.json",
        "server-auth.conf",
        "operator/identity.nk",
        "operator/signing.nk",
        "operator/operator.jwt",
        "accounts/SYS/identity.nk",
        "accounts/SYS/signing.nk",
        "accounts/SYS/account.jwt",
        "accounts/SYS/users/admin.creds",
    ]
    for rel in expected_files:
        path = root / rel
        assert path.is_file(), rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, rel
    for rel in ("", "operator", "accounts", "accounts/SYS", "accounts/SYS/users", "resolver"):
        assert stat.S_IMODE((root / rel).stat().st_mode) == 0o700, rel
    assert (root / "operator/identity.nk").read_text().startswith("SO")
    assert (root / "accounts/SYS/signing.nk").read_text().startswith("SA")
    assert store.sys_creds_path == root / "accounts/SYS/users/admin.creds"
    assert store.accounts() == ["SYS"]
    assert len(all_seeds(root)) == 5  # 2 operator, 2 SYS, 1 SYS admin user


def test_second_init_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    first = init_auth_store(root)
    before = snapshot(root)
    second = init_auth_store(root)
    assert snapshot(root) == before  # same bytes, modes and mtimes
    assert second.operator_public_key == first.operator_public_key
    assert second.system_account_public_key == first.system_account_public_key


def test_init_fills_in_missing_pieces_only(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    store = init_auth_store(root)
    operator_jwt = store.operator_jwt
    store.sys_creds_path.unlink()
    store.server_auth_conf.unlink()
    again = init_auth_store(root)
    assert again.sys_creds_path.is_file() and again.server_auth_conf.is_file()
    assert again.operator_jwt == operator_jwt


def test_operator_and_sys_jwts_chain_up(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    _, op = decode_jwt(store.operator_jwt)
    assert verify_jwt(store.operator_jwt)
    assert op["iss"] == op["sub"] == store.operator_public_key
    assert op["nats"]["signing_keys"] == [store.operator_signing_public_key]
    assert op["nats"]["system_account"] == store.system_account_public_key
    assert op["nats"]["strict_signing_key_usage"] is True
    sys_jwt = store.account_jwt("SYS")
    assert sys_jwt is not None and verify_jwt(sys_jwt)
    _, sys_claims = decode_jwt(sys_jwt)
    assert sys_claims["iss"] == store.operator_signing_public_key  # not the identity key
    assert sys_claims["nats"]["signing_keys"] == [store.account("SYS").signing_public_key]
    assert jetstream_limits_from_claims(sys_claims) is None
    user_jwt, user_key = parse_creds(store.sys_creds_path.read_text())
    _, user = decode_jwt(user_jwt)
    assert user["sub"] == user_key.public_key
    assert user["iss"] == store.account("SYS").signing_public_key
    assert user["nats"]["issuer_account"] == store.system_account_public_key
    assert "exp" not in user


def test_server_auth_conf_contents(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    text = store.server_auth_conf.read_text()
    assert text == render_server_auth_conf(store)
    assert f'operator: "{store.operator_jwt}"' in text
    assert f"system_account: {store.system_account_public_key}" in text
    assert "type: full" in text
    assert f'dir: "{store.resolver_dir}"' in text and store.resolver_dir.is_absolute()
    assert f'{store.system_account_public_key}: "{store.account_jwt("SYS")}"' in text
    assert not SEED_RE.search(text)
    for seed in all_seeds(store.root):
        assert seed not in text
    other = render_server_auth_conf(store, resolver_dir=tmp_path / "n2-jwt")
    assert f'dir: "{tmp_path / "n2-jwt"}"' in other and str(store.resolver_dir) not in other
    assert include_directive(store, tmp_path / "etc") == 'include "../auth/server-auth.conf"'
    assert include_directive(store, store.root) == 'include "server-auth.conf"'


def test_account_keys_are_created_once_and_stable(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    store = init_auth_store(root)
    with pytest.raises(AuthStoreError, match="no keys for account ACME"):
        store.account("ACME")
    keys = store.account("ACME", create=True)
    assert keys.public_key.startswith("A") and keys.signing_public_key.startswith("A")
    assert keys.public_key != keys.signing_public_key
    again = store.account("ACME", create=True)
    reopened = AuthStore.open(root).account("ACME")
    assert again.public_key == reopened.public_key == keys.public_key
    assert again.signing_public_key == reopened.signing_public_key == keys.signing_public_key
    for rel in ("accounts/ACME/identity.nk", "accounts/ACME/signing.nk"):
        assert stat.S_IMODE((root / rel).stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "accounts/ACME").stat().st_mode) == 0o700
    assert store.accounts() == ["ACME", "SYS"]
    assert store.account_name_for(keys.public_key) == "ACME"


def test_concurrent_first_use_agrees_on_one_identity(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(AuthStore.open(store.root).account("RACE", create=True).public_key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert not list((store.root / "accounts/RACE").glob(".tmp-*"))


def test_reprs_show_public_keys_only(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    keys = store.account("ACME", create=True)
    texts = [repr(store), str(store), repr(keys), str(keys), repr(keys.identity)]
    texts.append(repr(keys.signing))
    for text in texts:
        for seed in all_seeds(store.root):
            assert seed not in text
        assert not SEED_RE.search(text)
    assert keys.public_key in repr(keys) and keys.signing_public_key in repr(keys)
    assert store.operator_public_key in repr(store)


def test_error_messages_never_contain_seeds(tmp_path: Path) -> None:
    root = tmp_path / "auth"
    store = init_auth_store(root)
    store.account("ACME", create=True)
    seeds = all_seeds(root)
    messages: list[str] = []

    def capture(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(AuthError) as err:
            fn(*args, **kwargs)
        messages.append(str(err.value))
        messages.append(repr(err.value))

    capture(store.account, "NOPE")
    capture(store.account, "../etc")
    capture(mint_user_creds, store, "NOPE", "u")
    capture(build_account_jwt, store, "ACME", jetstream={"bogus": 1})
    # a corrupted seed file
    signing = root / "accounts/ACME/signing.nk"
    good = signing.read_text()
    signing.write_text(good[:20] + ("X" if good[20] != "X" else "Y") + good[21:])
    capture(store.account, "ACME")
    # a seed file others may read
    signing.write_text(good)
    signing.chmod(0o644)
    capture(store.account, "ACME")
    signing.chmod(0o600)
    # a seed of the wrong kind
    signing.write_text((root / "operator/signing.nk").read_text())
    capture(store.account, "ACME")
    signing.write_text(good)
    capture(AuthStore.open, tmp_path / "elsewhere")
    assert any("does not hold a valid nkey seed" in m for m in messages)
    assert any("chmod 600" in m for m in messages)
    assert any("operator seed" in m for m in messages)
    for message in messages:
        assert not SEED_RE.search(message), message
        for seed in seeds:
            assert seed not in message


def test_mint_user_creds_and_admin_creds(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    keys = store.account("ACME", create=True)
    creds = mint_user_creds(
        store, "ACME", "reader", sub_allow=["tenant.acme.>"], pub_allow=["tenant.acme.>"]
    )
    token, user_key = parse_creds(creds)
    _, claims = decode_jwt(token)
    assert verify_jwt(token)
    assert claims["name"] == "reader" and claims["sub"] == user_key.public_key
    assert claims["iss"] == keys.signing_public_key
    assert claims["nats"]["issuer_account"] == keys.public_key
    assert claims["nats"]["pub"] == {"allow": ["tenant.acme.>"]}
    assert "exp" not in claims
    admin = decode_jwt(parse_creds(admin_creds(store, "ACME"))[0])[1]
    assert 590 <= admin["exp"] - admin["iat"] <= 610
    assert admin["nats"]["pub"] == {} and admin["nats"]["sub"] == {}
    path = store.write_creds("ACME", "reader", creds)
    assert path == tmp_path / "auth/accounts/ACME/users/reader.creds"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_save_account_jwt(tmp_path: Path) -> None:
    store = init_auth_store(tmp_path / "auth")
    token = build_account_jwt(store, "ACME", jetstream={"max_streams": 2})
    path = store.save_account_jwt("ACME", token)
    assert store.account_jwt("ACME") == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.account("OTHER", create=True)
    with pytest.raises(AuthStoreError, match="not for account OTHER"):
        store.save_account_jwt("OTHER", token)
    assert store.account_jwt("OTHER") is None


def test_resolve_auth_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JSOPS_AUTH_DIR", raising=False)
    monkeypatch.delenv("APP_ROOT", raising=False)
    assert resolve_auth_dir() == Path(".data/nats-auth")
    assert resolve_auth_dir(configured="cfg") == Path("cfg")
    monkeypatch.setenv("APP_ROOT", str(tmp_path / "app"))
    assert resolve_auth_dir() == tmp_path / "app/nats-auth"
    monkeypatch.setenv("JSOPS_AUTH_DIR", str(tmp_path / "env"))
    assert resolve_auth_dir(configured="cfg") == tmp_path / "env"
    assert resolve_auth_dir(tmp_path / "cli", configured="cfg") == tmp_path / "cli"
    store = init_auth_store()
    assert store.root == tmp_path / "env"


def test_init_refuses_a_foreign_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    with pytest.raises(AuthStoreError, match="not empty and not an auth store"):
        init_auth_store(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == mode  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    init_auth_store(empty)
    assert stat.S_IMODE(empty.stat().st_mode) == 0o700


def test_open_without_init_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuthStoreError, match=r"no auth store at .*jsops auth init"):
        AuthStore.open(tmp_path / "nothing")
