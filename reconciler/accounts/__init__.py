"""Operator/JWT mode: keys, account and user JWTs, the auth store, pushing to servers.

- :mod:`reconciler.accounts.jwt`: nkeys, JWT encode/decode/sign/verify, claims builders,
  creds files (pure functions, no disk, no network);
- :mod:`reconciler.accounts.store`: the auth store directory (seeds, JWTs, creds);
- :mod:`reconciler.accounts.auth`: ``auth init``, ``server-auth.conf``, user creds,
  pushing account JWTs to a full resolver over ``$SYS``.
"""

from __future__ import annotations

from reconciler.accounts.auth import (
    ADMIN_TTL_S,
    ADMIN_USER,
    CLAIMS_UPDATE_SUBJECT,
    PushError,
    admin_creds,
    build_account_jwt,
    check_account_jwt,
    include_directive,
    init_auth_store,
    lookup_account_jwt,
    mint_user_creds,
    push_account_jwt,
    render_server_auth_conf,
    sign_account_jwt,
)
from reconciler.accounts.jwt import (
    JS_LIMIT_NAMES,
    AuthError,
    NKey,
    account_claims,
    compute_jti,
    decode_jwt,
    encode_jwt,
    format_creds,
    jetstream_limits_from_claims,
    jetstream_tiers_from_claims,
    jwt_problems,
    normalize_jetstream_limits,
    operator_claims,
    parse_creds,
    user_claims,
    verify_jwt,
)
from reconciler.accounts.store import (
    AUTH_DIR_ENV,
    SYSTEM_ACCOUNT,
    AccountKeys,
    AuthStore,
    AuthStoreError,
    resolve_auth_dir,
)

__all__ = [
    "ADMIN_TTL_S",
    "ADMIN_USER",
    "AUTH_DIR_ENV",
    "CLAIMS_UPDATE_SUBJECT",
    "JS_LIMIT_NAMES",
    "SYSTEM_ACCOUNT",
    "AccountKeys",
    "AuthError",
    "AuthStore",
    "AuthStoreError",
    "NKey",
    "PushError",
    "account_claims",
    "admin_creds",
    "build_account_jwt",
    "check_account_jwt",
    "compute_jti",
    "decode_jwt",
    "encode_jwt",
    "format_creds",
    "include_directive",
    "init_auth_store",
    "jetstream_limits_from_claims",
    "jetstream_tiers_from_claims",
    "jwt_problems",
    "lookup_account_jwt",
    "mint_user_creds",
    "normalize_jetstream_limits",
    "operator_claims",
    "parse_creds",
    "push_account_jwt",
    "render_server_auth_conf",
    "resolve_auth_dir",
    "sign_account_jwt",
    "user_claims",
    "verify_jwt",
]
