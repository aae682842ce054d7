"""JWT encoding, signing, verification and claims builders (no server needed)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pickle
import time

import pytest

from reconciler.accounts.jwt import (
    HEADER,
    JS_LIMIT_NAMES,
    AuthError,
    NKey,
    account_claims,
    b64url_decode,
    compute_jti,
    decode_jwt,
    encode_jwt,
    format_creds,
    go_json,
    is_public_key,
    jetstream_limits_from_claims,
    jetstream_tiers_from_claims,
    jwt_problems,
    normalize_jetstream_limits,
    operator_claims,
    parse_creds,
    user_claims,
    verify_jwt,
)
from reconciler.errors import JsopsError

# JWTs minted by Go (nats-io/jwt via nsc), taken from public NATS client test fixtures:
# a user JWT and an operator JWT. They pin our signature check and jti to Go's.
GO_USER_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJMN1dBT1hJU0tPSUZNM1QyNEhMQ09E"
    "NzJRT1czQkNVWEdETjRKVU1SSUtHTlQ3RzdZVFRRIiwiaWF0IjoxNjUxNzkwOTgyLCJpc3MiOiJBRFRRUzdaQ0ZW"
    "Sk5XNTcyNkdPWVhXNVRTQ1pGTklRU0hLMlpHWVVCQ0Q1RDc3T1ROTE9PS1pPWiIsIm5hbWUiOiJUZXN0VXNlciIs"
    "InN1YiI6IlVBRkhHNkZVRDJVVTRTREZWQUZVTDVMREZPMlhNNFdZTTc2VU5YVFBKWUpLN0VFTVlSQkhUMlZFIiwi"
    "bmF0cyI6eyJwdWIiOnt9LCJzdWIiOnt9LCJzdWJzIjotMSwiZGF0YSI6LTEsInBheWxvYWQiOi0xLCJ0eXBlIjoi"
    "dXNlciIsInZlcnNpb24iOjJ9fQ.bp2-Jsy33l4ayF7Ku1MNdJby4WiMKUrG-rSVYGBusAtV3xP4EdCa-zhSNUaBVIL"
    "3uYPPCQYCEoM1pCUdOnoJBg"
)
GO_OPERATOR_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJDV0xIN0I3U0tHM0k0RjJYVjNRQUlC"
    "MjZJQTVVVFRWWU02UEJMQ09aNkNTM1NHUTJGVktRIiwiaWF0IjoxNzg2OTg2NzUwLCJpc3MiOiJPQ1pPS0tZUTRP"
    "QU5QM0tNQkpQRFRLTElCTUJHU01HTExXR0FCRVY3UUUyVUlXSVpTNUdJVVNNRSIsIm5hbWUiOiJteS1vcGVyYXRv"
    "ciIsInN1YiI6Ik9DWk9LS1lRNE9BTlAzS01CSlBEVEtMSUJNQkdTTUdMTFdHQUJFVjdRRTJVSVdJWlM1R0lVU01F"
    "IiwibmF0cyI6eyJzaWduaW5nX2tleXMiOlsiT0RIVUxMSEJRQ1hGWEFDUkczWVFIUTJCREtTSVlDMktFMkFRRVdM"
    "NEdNTlNRUkZXNUlKQ0xIQ0YiXSwiYWNjb3VudF9zZXJ2ZXJfdXJsIjoibmF0czovL2xvY2FsaG9zdDo0MjIyIiwi"
    "c3lzdGVtX2FjY291bnQiOiJBREpTRDVZRklURkFUN0s0VUs2RkVLRzdHVDNYNFZCUDRUR0xFV05JU1BOVVQ0TlJC"
    "UEhFRkZCUyIsInN0cmljdF9zaWduaW5nX2tleV91c2FnZSI6dHJ1ZSwidHlwZSI6Im9wZXJhdG9yIiwidmVyc2lv"
    "biI6Mn19.aNeDWvXNEH1OosO-TUKsCHlb_U9xJjXRGvYB6nh2lft_1TD2mmGqCNWBDYydVbW-YnLUGsASwAU1NvIH"
    "7bagCA"
)


def reference_jti(claims: dict) -> str:
    """jti exactly as reference 6.2 describes it, written independently of the module."""
    std = {}
    for key in ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub"):
        value = "" if key == "jti" else claims.get(key)
        if value not in (None, "", 0):
            std[key] = value
    data = json.dumps(std, separators=(",", ":")).encode()
    digest = hashlib.new("sha512_256", data).digest()
    return base64.b32encode(digest).decode().rstrip("=")


@pytest.fixture(scope="module")
def keys() -> dict[str, NKey]:
    return {
        "operator": NKey.generate("operator"),
        "op_signing": NKey.generate("operator"),
        "account": NKey.generate("account"),
        "acc_signing": NKey.generate("account"),
        "user": NKey.generate("user"),
    }


# --- nkeys ------------------------------------------------------------------------------


def test_generated_keys_have_the_right_prefixes(keys: dict[str, NKey]) -> None:
    assert keys["operator"].public_key.startswith("O")
    assert keys["account"].public_key.startswith("A")
    assert keys["user"].public_key.startswith("U")
    assert keys["operator"].seed_text().startswith("SO")
    assert keys["account"].seed_text().startswith("SA")
    assert keys["user"].seed_text().startswith("SU")
    assert is_public_key(keys["account"].public_key, "account")
    assert not is_public_key(keys["account"].public_key, "user")
    pub = keys["account"].public_key
    mangled = pub[:10] + ("B" if pub[10] != "B" else "C") + pub[11:]
    assert not is_public_key(mangled, "account")  # the checksum catches it


def test_nkey_never_shows_its_seed(keys: dict[str, NKey]) -> None:
    key = keys["account"]
    seed = key.seed_text()
    for text in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert seed not in text
        assert key.public_key in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert copy.deepcopy({"k": key})["k"] is key
    assert NKey(seed) == key and hash(NKey(seed)) == hash(key)


def test_bad_seed_error_does_not_echo_the_seed(keys: dict[str, NKey]) -> None:
    seed = keys["user"].seed_text()
    broken = seed[:20] + ("B" if seed[20] != "B" else "C") + seed[21:]
    with pytest.raises(AuthError) as err:
        NKey(broken)
    assert broken not in str(err.value) and seed[:10] not in str(err.value)
    assert isinstance(err.value, JsopsError)
    # a seed passed where a public key belongs is not echoed either
    with pytest.raises(AuthError) as err:
        account_claims("ACME", keys["account"].seed_text())
    assert keys["account"].seed_text() not in str(err.value)
    assert "<redacted seed>" in str(err.value)


# --- encode / decode / verify -----------------------------------------------------------


def test_encode_decode_round_trip(keys: dict[str, NKey]) -> None:
    claims = account_claims("ACME", keys["account"].public_key, jetstream={"max_streams": 5})
    token = encode_jwt(claims, keys["op_signing"], iat=1_700_000_000)
    header, decoded = decode_jwt(token)
    assert header == HEADER == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert decoded["iss"] == keys["op_signing"].public_key
    assert decoded["iat"] == 1_700_000_000
    assert decoded["sub"] == claims["sub"] and decoded["name"] == "ACME"
    assert decoded["nats"] == claims["nats"]
    assert "iss" not in claims and "jti" not in claims  # the input is not modified
    # segments are base64url without padding
    assert "=" not in token and "+" not in token and "/" not in token
    assert json.loads(b64url_decode(token.split(".")[0])) == HEADER
    assert verify_jwt(token)
    assert list(decoded)[:5] == ["jti", "iat", "iss", "name", "sub"]  # Go field order


def test_jti_is_sha512_256_base32_of_the_standard_claims_only(keys: dict[str, NKey]) -> None:
    base = account_claims("ACME", keys["account"].public_key)
    token = encode_jwt(base, keys["op_signing"], iat=1_700_000_000)
    _, decoded = decode_jwt(token)
    assert decoded["jti"] == reference_jti(decoded) == compute_jti(decoded)
    assert len(decoded["jti"]) == 52 and "=" not in decoded["jti"]
    # the nats payload is not hashed: other limits, same standard claims -> same jti
    other = account_claims("ACME", keys["account"].public_key, jetstream={"max_streams": 9})
    _, decoded2 = decode_jwt(encode_jwt(other, keys["op_signing"], iat=1_700_000_000))
    assert decoded2["jti"] == decoded["jti"]
    # ...but any standard claim changes it
    _, decoded3 = decode_jwt(encode_jwt(base, keys["op_signing"], iat=1_700_000_001))
    assert decoded3["jti"] != decoded["jti"]


def test_expiry_is_part_of_the_standard_claims(keys: dict[str, NKey]) -> None:
    claims = user_claims("u", keys["user"].public_key)
    token = encode_jwt(claims, keys["account"], iat=1_700_000_000, expires_at=1_700_000_600)
    _, decoded = decode_jwt(token)
    assert decoded["exp"] == 1_700_000_600
    assert decoded["jti"] == reference_jti(decoded)
    assert list(decoded)[:3] == ["exp", "jti", "iat"]
    assert not verify_jwt(token)  # long expired
    assert verify_jwt(token, now=1_700_000_100)
    assert "expired" in " ".join(jwt_problems(token))


def test_go_minted_jwts_verify_and_reproduce_their_jti() -> None:
    for token in (GO_USER_JWT, GO_OPERATOR_JWT):
        _, claims = decode_jwt(token)
        assert jwt_problems(token) == []
        assert compute_jti(claims) == claims["jti"] == reference_jti(claims)


def test_go_json_escapes_like_go() -> None:
    assert go_json({"name": "a<b>&c", "n": 1}) == '{"name":"a\\u003cb\\u003e\\u0026c","n":1}'
    assert go_json({"name": "é"}) == '{"name":"é"}'


def test_tampered_or_wrongly_signed_tokens_do_not_verify(keys: dict[str, NKey]) -> None:
    claims = account_claims("ACME", keys["account"].public_key)
    token = encode_jwt(claims, keys["op_signing"])
    head, payload, sig = token.split(".")
    evil = dict(decode_jwt(token)[1], name="EVIL")
    forged_payload = base64.urlsafe_b64encode(go_json(evil).encode()).decode().rstrip("=")
    assert not verify_jwt(f"{head}.{forged_payload}.{sig}")
    # a valid signature by someone else, claiming to be the operator signing key
    other = encode_jwt(claims, keys["operator"])
    assert not verify_jwt(f"{head}.{payload}.{other.split('.')[2]}")
    assert not verify_jwt("not.a.jwt")
    assert not verify_jwt("garbage")
    with pytest.raises(AuthError, match="3 dot-separated"):
        decode_jwt("garbage")


def test_signer_kind_and_subject_are_checked(keys: dict[str, NKey]) -> None:
    account = account_claims("ACME", keys["account"].public_key)
    with pytest.raises(AuthError, match="cannot sign a account JWT"):
        encode_jwt(account, keys["user"])
    user = user_claims("u", keys["user"].public_key)
    with pytest.raises(AuthError, match="cannot sign a user JWT"):
        encode_jwt(user, keys["operator"])
    with pytest.raises(AuthError, match="must be account public key"):
        account_claims("ACME", keys["user"].public_key)
    with pytest.raises(AuthError, match="subject of a account JWT"):
        encode_jwt(dict(account, sub=keys["user"].public_key), keys["op_signing"])


# --- account claims ---------------------------------------------------------------------

ALL_LIMITS = {
    "max_memory": 1_000_000,
    "max_storage": 2_000_000,
    "max_streams": 3,
    "max_consumers": 4,
    "max_ack_pending": 5,
    "memory_max_stream_bytes": 6,
    "storage_max_stream_bytes": 7,
    "max_bytes_required": True,
}


def test_jetstream_limits_are_mapped_to_jwt_names(keys: dict[str, NKey]) -> None:
    claims = account_claims("ACME", keys["account"].public_key, jetstream=ALL_LIMITS)
    limits = claims["nats"]["limits"]
    assert {JS_LIMIT_NAMES[k]: v for k, v in ALL_LIMITS.items()} == {
        k: limits[k] for k in JS_LIMIT_NAMES.values()
    }
    assert limits["mem_storage"] == 1_000_000 and limits["disk_storage"] == 2_000_000
    assert limits["streams"] == 3 and limits["consumer"] == 4
    assert limits["mem_max_stream_bytes"] == 6 and limits["disk_max_stream_bytes"] == 7
    assert "memory_storage" not in limits  # the nats-jwt (PyPI) bug
    assert jetstream_limits_from_claims(claims) == ALL_LIMITS
    assert claims["nats"]["type"] == "account" and claims["nats"]["version"] == 2


def test_connection_limits_default_to_unlimited(keys: dict[str, NKey]) -> None:
    claims = account_claims("ACME", keys["account"].public_key, conn=10, payload=1024)
    limits = claims["nats"]["limits"]
    assert limits["conn"] == 10 and limits["payload"] == 1024
    assert limits["subs"] == limits["data"] == limits["leaf"] == -1
    assert limits["imports"] == limits["exports"] == -1 and limits["wildcards"] is True
    # without jetstream limits JetStream stays disabled
    assert "mem_storage" not in limits and "disk_storage" not in limits
    assert jetstream_limits_from_claims(claims) is None
    with pytest.raises(AuthError, match="conn must be an integer"):
        account_claims("ACME", keys["account"].public_key, conn="10")  # type: ignore[arg-type]


def test_empty_jetstream_means_enabled_and_unlimited(keys: dict[str, NKey]) -> None:
    claims = account_claims("ACME", keys["account"].public_key, jetstream={})
    assert claims["nats"]["limits"]["mem_storage"] == -1
    assert claims["nats"]["limits"]["disk_storage"] == -1
    assert jetstream_limits_from_claims(claims) == normalize_jetstream_limits({})
    assert set(normalize_jetstream_limits({}).values()) == {-1, False}


def test_partial_limits_round_trip_through_normalization(keys: dict[str, NKey]) -> None:
    wanted = {"max_storage": 10_000_000, "max_streams": 5, "max_ack_pending": 0}
    claims = account_claims("ACME", keys["account"].public_key, jetstream=wanted)
    back = jetstream_limits_from_claims(claims)
    assert back == normalize_jetstream_limits(wanted)
    assert back is not None and back["max_ack_pending"] == -1  # 0 means unlimited there
    assert back["max_memory"] == -1


def test_limit_errors_are_clear(keys: dict[str, NKey]) -> None:
    pub = keys["account"].public_key
    with pytest.raises(AuthError, match=r"unknown jetstream limit.*max_stream\b"):
        account_claims("A", pub, jetstream={"max_stream": 1})
    with pytest.raises(AuthError, match="mutually exclusive"):
        account_claims("A", pub, jetstream={}, tiers={"R1": {}})
    with pytest.raises(AuthError, match="tier names"):
        account_claims("A", pub, tiers={"r1": {}})
    with pytest.raises(AuthError, match="disables JetStream"):
        account_claims("A", pub, jetstream={"max_memory": 0, "max_storage": 0})
    with pytest.raises(AuthError, match=r"-1 \(unlimited\) or >= 0"):
        account_claims("A", pub, jetstream={"max_streams": -2})
    with pytest.raises(AuthError, match="true or false"):
        account_claims("A", pub, jetstream={"max_bytes_required": 1})


def test_tiered_limits(keys: dict[str, NKey]) -> None:
    tiers = {"R3": {"max_storage": 3_000}, "R1": {"max_streams": 2, "max_memory": 1_000}}
    claims = account_claims("ACME", keys["account"].public_key, tiers=tiers)
    limits = claims["nats"]["limits"]
    assert "disk_storage" not in limits and "mem_storage" not in limits  # exclusive
    assert limits["tiered_limits"]["R1"]["streams"] == 2
    assert limits["tiered_limits"]["R1"]["mem_storage"] == 1_000
    assert limits["tiered_limits"]["R3"]["disk_storage"] == 3_000
    assert jetstream_limits_from_claims(claims) is None
    back = jetstream_tiers_from_claims(claims)
    assert list(back) == ["R1", "R3"]
    assert back == {t: normalize_jetstream_limits(v) for t, v in tiers.items()}
    # a disabled tier next to an enabled one is fine; all tiers disabled is not
    off = {"max_memory": 0, "max_storage": 0}
    account_claims("ACME", keys["account"].public_key, tiers={"R1": {}, "R3": off})
    with pytest.raises(AuthError, match="every tier"):
        account_claims("ACME", keys["account"].public_key, tiers={"R3": off})


def test_exports_imports_and_signing_keys(keys: dict[str, NKey]) -> None:
    other = NKey.generate("account").public_key
    claims = account_claims(
        "ACME",
        keys["account"].public_key,
        exports=[
            {"name": "z", "subject": "z.>", "type": "stream"},
            {"name": "a", "subject": "a.>", "type": "service", "response_type": "Singleton"},
        ],
        imports=[{"name": "x", "subject": "x.>", "account": other, "type": "stream"}],
        signing_keys=[keys["acc_signing"].public_key, keys["acc_signing"].public_key],
    )
    nats = claims["nats"]
    assert [e["subject"] for e in nats["exports"]] == ["a.>", "z.>"]  # sorted like Go
    assert nats["imports"][0]["account"] == other
    assert nats["signing_keys"] == [keys["acc_signing"].public_key]  # deduplicated
    pub = keys["account"].public_key
    with pytest.raises(AuthError, match=r"exports\[0\]: type must be"):
        account_claims("A", pub, exports=[{"subject": "a"}])
    with pytest.raises(AuthError, match=r"imports\[0\]\.account must be account public key"):
        account_claims("A", pub, imports=[{"subject": "a", "type": "stream", "account": "x"}])
    with pytest.raises(AuthError, match=r"unknown field.*subjekt"):
        account_claims("A", pub, exports=[{"subjekt": "a", "subject": "a", "type": "stream"}])


def test_user_and_operator_claims(keys: dict[str, NKey]) -> None:
    user = user_claims(
        "u",
        keys["user"].public_key,
        issuer_account=keys["account"].public_key,
        pub_allow=["tenant.acme.>"],
        sub_allow=["tenant.acme.>"],
        bearer=True,
    )
    nats = user["nats"]
    assert nats["pub"] == {"allow": ["tenant.acme.>"]} and nats["sub"]["allow"]
    assert nats["bearer_token"] is True
    assert nats["issuer_account"] == keys["account"].public_key
    assert nats["subs"] == nats["data"] == nats["payload"] == -1
    assert nats["type"] == "user" and nats["version"] == 2
    with pytest.raises(AuthError, match="list of subjects"):
        user_claims("u", keys["user"].public_key, pub_allow="tenant.>")  # type: ignore[arg-type]
    op = operator_claims(
        "jsops",
        keys["operator"].public_key,
        signing_keys=[keys["op_signing"].public_key],
        system_account=keys["account"].public_key,
    )
    assert op["nats"]["strict_signing_key_usage"] is True
    token = encode_jwt(op, keys["operator"])
    assert verify_jwt(token) and decode_jwt(token)[1]["iss"] == decode_jwt(token)[1]["sub"]


# --- creds ------------------------------------------------------------------------------


def test_creds_round_trip_and_armor(keys: dict[str, NKey]) -> None:
    now = int(time.time())
    token = encode_jwt(user_claims("u", keys["user"].public_key), keys["account"], iat=now)
    text = format_creds(token, keys["user"])
    lines = text.splitlines()
    assert lines[0] == "-----BEGIN NATS USER JWT-----"
    assert lines[1] == token
    assert lines[2] == "------END NATS USER JWT------"
    assert "-----BEGIN USER NKEY SEED-----" in lines
    assert lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1] == keys["user"].seed_text()
    assert "------END USER NKEY SEED------" in lines
    parsed_jwt, parsed_key = parse_creds(text)
    assert parsed_jwt == token and parsed_key == keys["user"]
    with pytest.raises(AuthError, match="user key"):
        format_creds(token, keys["account"])
    with pytest.raises(AuthError, match="does not match"):
        format_creds(token, NKey.generate("user"))
