"""Project policy (reconciler.policy): tenants, overlap, quotas, required fields, environments.

Unit tests call the policy functions on validated resources directly. The group at
the end goes through ``jsops validate`` / ``plan`` / ``apply`` (the policy runs in the
pipeline).
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.environments import ProjectConfig, check_project_config, load_project
from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.load import load_manifests, load_text, parse
from reconciler.models import Resource
from reconciler.policy import (
    check_live_overlap,
    check_overlap,
    check_policy,
)
from reconciler.subjects import under_prefix
from reconciler.validate import validate_document

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "policy"

TENANTS = """
tenants:
  acme: {prefix: tenant.acme}
  globex: {}
"""


def config(text: str = TENANTS) -> ProjectConfig:
    return ProjectConfig.model_validate(YAML(typ="safe").load(textwrap.dedent(text)) or {})


def resources(*files: str | tuple[str, str], env: str = "dev", **values: Any) -> list[Resource]:
    """Validated resources of manifest texts (named m.yaml, m2.yaml, ... or (name, text))."""
    out: list[Resource] = []
    for i, item in enumerate(files):
        name, text = item if isinstance(item, tuple) else (f"m{i + 1 if i else ''}.yaml", item)
        source, problems = load_text(name, textwrap.dedent(text), {"env": env, "values": values})
        assert source is not None and not problems, problems
        docs, problems = parse(source)
        assert not problems, problems
        for doc in docs:
            res, problems = validate_document(doc)
            assert res is not None, [str(p) for p in problems]
            out.append(res)
    return [r for r in out if r.in_environment(env)]


def lines(problems: list[Diagnostic]) -> list[str]:
    return [str(p) for p in sorted(problems, key=Diagnostic.sort_key)]


def policy(*files: str | tuple[str, str], cfg: str = TENANTS, env: str = "dev") -> list[str]:
    return lines(check_policy(resources(*files, env=env), config(cfg), env))


def stream(
    name: str,
    subjects: list[str] | None = None,
    tenant: str | None = None,
    account: str | None = None,
    **spec: Any,
) -> str:
    meta = f"{{name: {name}" + (f", tenant: {tenant}" if tenant else "")
    meta += (f", account: {account}" if account else "") + "}"
    body = dict(spec)
    if subjects is not None:
        body["subjects"] = subjects
    return f"apiVersion: jsops/v1\nkind: Stream\nmetadata: {meta}\nspec: {json.dumps(body)}\n"


# -- tenants: subjects under the prefix -------------------------------------------------------


def test_stream_subjects_must_be_under_the_tenant_prefix() -> None:
    assert policy(
        """\
        apiVersion: jsops/v1
        kind: Stream
        metadata:
          name: ACME_ORDERS
          tenant: acme
        spec:
          subjects:
            - tenant.acme.orders.>
            - orders.acme
            - tenant.*.orders
            - tenant.acme
        """
    ) == [
        'm.yaml:9:7: spec.subjects.1: subject "orders.acme" is not under the prefix '
        '"tenant.acme" of tenant "acme"',
        'm.yaml:10:7: spec.subjects.2: subject "tenant.*.orders" is not under the prefix '
        '"tenant.acme" of tenant "acme"',
    ]


def test_the_prefix_defaults_to_tenant_dot_id() -> None:
    assert config().tenant_prefix("globex") == "tenant.globex"
    assert policy(stream("G", ["tenant.globex.a", "tenant.globexx.a"], tenant="globex")) == [
        'm.yaml:4:40: spec.subjects.1: subject "tenant.globexx.a" is not under the prefix '
        '"tenant.globex" of tenant "globex"'
    ]


def test_under_prefix_is_token_wise() -> None:
    assert under_prefix("tenant.acme", "tenant.acme")
    assert under_prefix("tenant.acme", "tenant.acme.>")
    assert under_prefix("tenant.acme", "tenant.acme.*.x")
    assert not under_prefix("tenant.acme", "tenant.acmex.a")
    assert not under_prefix("tenant.acme", "tenant.>")
    assert not under_prefix("tenant.acme", "tenant.*.a")
    assert not under_prefix("tenant.acme", "tenant")
    assert not under_prefix("tenant.acme", "tenant.{{wildcard(1)}}.a")


def test_every_subject_a_stream_captures_transforms_or_republishes_is_checked() -> None:
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: A, tenant: acme}
    spec:
      subjects: [tenant.acme.in.>]
      subject_transform: {src: other.in.>, dest: other.out.>}
      republish: {src: x.>, dest: y.>}
      sources:
        - name: S1
          domain: eu
          filter_subject: eu.orders.>
        - name: S2
          domain: eu
          subject_transforms:
            - {src: eu.a.>, dest: tenant.acme.eu.a.>}
            - {src: eu.b.>, dest: eu.b.>}
        - name: S3
          consumer: {name: c, deliver_subject: deliver.s3}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: M, tenant: acme}
    spec:
      mirror: {name: X, domain: eu, filter_subject: x.>}
    """
    path = 'is not under the prefix "tenant.acme" of tenant "acme"'
    assert policy(text) == [
        f'm.yaml:6:28: spec.subject_transform.src: subject "other.in.>" {path}',
        f'm.yaml:6:46: spec.subject_transform.dest: subject "other.out.>" {path}',
        f'm.yaml:7:20: spec.republish.src: subject "x.>" {path}',
        f'm.yaml:7:31: spec.republish.dest: subject "y.>" {path}',
        f'm.yaml:11:23: spec.sources.0.filter_subject: subject "eu.orders.>" {path}',
        f'm.yaml:16:31: spec.sources.1.subject_transforms.1.dest: subject "eu.b.>" {path}',
        f'm.yaml:18:44: spec.sources.2.consumer.deliver_subject: subject "deliver.s3" {path}',
        f'm.yaml:24:49: spec.mirror.filter_subject: subject "x.>" {path}',
    ]


def test_republish_without_src_is_every_stored_subject_and_fine() -> None:
    ok = stream("A", ["tenant.acme.a.>"], tenant="acme", republish={"dest": "tenant.acme.r.>"})
    assert policy(ok) == []
    bad = stream("A", ["tenant.acme.a.>"], tenant="acme", republish={"dest": "r.>"})
    assert policy(bad) == [
        'm.yaml:4:30: spec.republish.dest: subject "r.>" is not under the prefix "tenant.acme" '
        'of tenant "acme"'
    ]


def test_consumer_filters_and_deliver_subject_must_be_under_the_prefix() -> None:
    text = stream("A", ["tenant.acme.>", "shared.>"]) + textwrap.dedent(
        """\
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {name: c1, stream: A, tenant: acme}
        spec:
          filter_subjects: [tenant.acme.a, shared.b]
        ---
        apiVersion: jsops/v1
        kind: Consumer
        metadata: {name: c2, stream: A, tenant: acme}
        spec:
          filter_subject: shared.>
          deliver_subject: deliver.c2
        """
    )
    path = 'is not under the prefix "tenant.acme" of tenant "acme"'
    assert policy(text) == [
        f'm.yaml:10:36: spec.filter_subjects.1: subject "shared.b" {path}',
        f'm.yaml:16:19: spec.filter_subject: subject "shared.>" {path}',
        f'm.yaml:17:20: spec.deliver_subject: subject "deliver.c2" {path}',
    ]


def test_a_tenant_consumer_without_filter_of_a_foreign_stream_reads_all_of_it() -> None:
    text = (
        stream("LOGS", ["logs.>"])
        + "---\n"
        + stream("ACME", ["tenant.acme.>"], tenant="acme")
        + textwrap.dedent(
            """\
            ---
            apiVersion: jsops/v1
            kind: Consumer
            metadata: {name: spy, stream: LOGS, tenant: acme}
            ---
            apiVersion: jsops/v1
            kind: Consumer
            metadata: {name: own, stream: ACME, tenant: acme}
            ---
            apiVersion: jsops/v1
            kind: Consumer
            metadata: {name: platform, stream: ACME}
            """
        )
    )
    assert policy(text) == [
        "m.yaml:13:31: metadata.stream: without a filter the consumer reads every subject of "
        'stream "LOGS", and "logs.>" is not under the prefix "tenant.acme" of tenant "acme"'
    ]


def test_a_tenant_source_without_filter_of_a_foreign_stream_takes_all_of_it() -> None:
    text = textwrap.dedent(
        """\
        apiVersion: jsops/v1
        kind: Stream
        metadata: {name: ACME_COPY, tenant: acme}
        spec:
          sources:
            - {name: LOGS}
            - {name: LOGS, domain: eu}
            - {name: ACME_ORDERS}
          mirror: null
        """
    )
    logs = stream("LOGS", ["logs.>", "tenant.acme.logs.>"])
    orders = stream("ACME_ORDERS", ["tenant.acme.orders.>"], tenant="acme")
    assert policy(text, ("logs.yaml", logs), ("orders.yaml", orders)) == [
        "m.yaml:6:14: spec.sources.0: without filter_subject or subject_transforms the source "
        'takes every subject of stream "LOGS", and "logs.>" is not under the prefix '
        '"tenant.acme" of tenant "acme"'
    ]


def test_unknown_tenant_has_a_did_you_mean_hint() -> None:
    assert policy(stream("A", ["x"], tenant="acmee")) == [
        'm.yaml:3:29: metadata.tenant: unknown tenant "acmee" (did you mean "acme"?)'
    ]
    assert policy(stream("A", ["x"], tenant="initech")) == [
        'm.yaml:3:29: metadata.tenant: unknown tenant "initech" '
        "(tenants of the project: acme, globex)"
    ]
    assert policy(stream("A", ["x"], tenant="acme"), cfg="{}") == [
        'm.yaml:3:29: metadata.tenant: unknown tenant "acme" '
        "(no tenants are declared in jsops.yaml)"
    ]


def test_a_resource_of_a_tenant_with_an_account_stays_in_that_account() -> None:
    cfg = "tenants: {acme: {account: ACME}}"
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata:
      name: A
      tenant: acme
      account: OTHER
    spec: {subjects: [tenant.acme.a]}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: B, tenant: acme, account: ACME}
    spec: {subjects: [tenant.acme.b]}
    """
    assert policy(text, cfg=cfg) == [
        'm.yaml:6:12: metadata.account: resources of tenant "acme" belong to account "ACME", '
        'not "OTHER"'
    ]


def test_stream_names_must_match_the_tenant_pattern_whole() -> None:
    cfg = """
    tenants:
      acme: {stream_pattern: "^ACME_[A-Z0-9_]+$"}
      globex: {stream_pattern: "GLOBEX_.*"}
    """
    text = (
        stream("ACME_ORDERS", ["tenant.acme.a"], tenant="acme")
        + "---\n"
        + stream("orders", ["tenant.acme.b"], tenant="acme")
        + "---\n"
        + stream("XGLOBEX_A", ["tenant.globex.a"], tenant="globex")
        + "---\n"
        + stream("GLOBEX_A", ["tenant.globex.b"], tenant="globex")
    )
    assert policy(text, cfg=cfg) == [
        'm.yaml:8:18: metadata.name: stream name "orders" does not match the pattern '
        '"^ACME_[A-Z0-9_]+$" of tenant "acme"',
        'm.yaml:13:18: metadata.name: stream name "XGLOBEX_A" does not match the pattern '
        '"GLOBEX_.*" of tenant "globex"',
    ]


# -- overlap ----------------------------------------------------------------------------------


def test_overlapping_streams_are_reported_at_the_later_subject_naming_both() -> None:
    first = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: A}
    spec:
      subjects:
        - a.b.>
    """
    second = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: B}
    spec:
      subjects:
        - x
        - a.*.c
    """
    assert policy(("one.yaml", first), ("two.yaml", second)) == [
        'two.yaml:7:7: subject "a.*.c" of stream "B" overlaps subject "a.b.>" of stream "A" '
        "at one.yaml:6:7"
    ]
    (problem,) = check_overlap(resources(("one.yaml", first), ("two.yaml", second)))
    assert problem.code == "subjects_overlap"
    assert problem.related == (Location("one.yaml", 6, 7),)


def test_a_stream_without_subjects_listens_on_its_name() -> None:
    text = stream("ORDERS") + "---\n" + stream("ALL", ["*"])
    assert policy(text) == [
        'm.yaml:9:21: subject "*" of stream "ALL" overlaps subject "ORDERS" of stream "ORDERS" '
        "at m.yaml:3:12"
    ]
    mirror = stream("COPY", mirror={"name": "X", "domain": "eu"})
    assert policy(mirror + "---\n" + stream("ALL", [">"])) == []


def test_each_subject_is_reported_once_per_stream_it_overlaps() -> None:
    text = (
        stream("A", ["a.1", "a.2"])
        + "---\n"
        + stream("B", ["b.>", "a.3"])
        + "---\n"
        + stream("C", ["*.*", "c"])
    )
    assert policy(text) == [
        'm.yaml:14:21: subject "*.*" of stream "C" overlaps subject "a.1" of stream "A" '
        "at m.yaml:4:21",
        'm.yaml:14:21: subject "*.*" of stream "C" overlaps subject "b.>" of stream "B" '
        "at m.yaml:9:21",
    ]


def test_overlap_is_per_account_and_per_environment() -> None:
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: A, account: ONE}
    spec: {subjects: [a.>]}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: B, account: TWO}
    spec: {subjects: [a.>]}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: C, environments: [dev]}
    spec: {subjects: [c.>]}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: D, environments: [prod]}
    spec: {subjects: [c.*]}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: E, environments: [prod, dev]}
    spec: {subjects: [c.e]}
    """
    found = lines(check_overlap(resources(text, env="dev")))
    assert found == [
        'm.yaml:24:19: subject "c.e" of stream "E" overlaps subject "c.>" of stream "C" '
        "at m.yaml:14:19"
    ]
    everything = _all_environments(text)
    assert lines(check_overlap(everything)) == [
        'm.yaml:24:19: subject "c.e" of stream "E" overlaps subject "c.*" of stream "D" '
        "at m.yaml:19:19",
        'm.yaml:24:19: subject "c.e" of stream "E" overlaps subject "c.>" of stream "C" '
        "at m.yaml:14:19",
    ]


def _all_environments(text: str) -> list[Resource]:
    source, _ = load_text("m.yaml", textwrap.dedent(text), {"env": "x", "values": {}})
    assert source is not None
    docs, _ = parse(source)
    return [r for r in (validate_document(d)[0] for d in docs) if r is not None]


def test_live_streams_no_manifest_declares_are_checked_at_plan_time() -> None:
    declared = resources(
        stream("ORDERS", ["orders.>"])
        + "---\n"
        + stream("AUDIT", ["audit.*.x", "other"])
        + "---\n"
        + stream("ELSEWHERE", ["legacy.>"], account="B")
    )
    live = {
        "ORDERS": {"config": {"name": "ORDERS", "subjects": ["orders.>"]}},  # declared: skipped
        "LEGACY": {"config": {"name": "LEGACY", "subjects": ["audit.eu.*", "legacy.>"]}},
        "MIRROR": {"config": {"name": "MIRROR", "mirror": {"name": "ORDERS"}}},
        "OLD": {"config": {"name": "OLD", "subjects": ["orders.old"]}},
    }
    problems = check_live_overlap(declared, live)
    assert lines(problems) == [
        'm.yaml:4:21: subject "orders.>" of stream "ORDERS" overlaps subject "orders.old" of '
        'stream "OLD" on the server, which no manifest declares',
        'm.yaml:9:21: subject "audit.*.x" of stream "AUDIT" overlaps subject "audit.eu.*" of '
        'stream "LEGACY" on the server, which no manifest declares',
    ]
    assert {p.code for p in problems} == {"live_subjects_overlap"}
    assert lines(check_live_overlap(declared, live, account="B")) == [
        'm.yaml:14:21: subject "legacy.>" of stream "ELSEWHERE" overlaps subject "legacy.>" of '
        'stream "LEGACY" on the server, which no manifest declares'
    ]
    assert check_live_overlap(declared, {}) == []


# -- quotas -----------------------------------------------------------------------------------


QUOTAS = """
tenants:
  acme:
    quota: {max_streams: 2, max_consumers: 2, max_bytes: 3GiB, max_replicas: 3}
  globex:
    quota: {max_streams: -1, max_consumers: unlimited, max_bytes: 10GB}
"""


def consumer(name: str, stream_name: str, tenant: str | None = None, **spec: Any) -> str:
    meta = f"{{name: {name}, stream: {stream_name}" + (f", tenant: {tenant}" if tenant else "")
    return f"apiVersion: jsops/v1\nkind: Consumer\nmetadata: {meta}}}\nspec: {json.dumps(spec)}\n"


def test_quota_sizes_accept_units_and_unlimited() -> None:
    quota = config(QUOTAS).tenants["globex"].quota
    assert quota is not None
    assert quota.max_bytes == 10 * 1000**3
    assert quota.limit("max_streams") is None and quota.limit("max_consumers") is None
    assert config(QUOTAS).tenants["acme"].quota.limit("max_bytes") == 3 * 1024**3  # type: ignore[union-attr]


def test_stream_and_consumer_counts() -> None:
    text = "---\n".join(
        [
            stream("A1", ["tenant.acme.1"], tenant="acme", max_bytes="1GiB"),
            stream("A2", ["tenant.acme.2"], tenant="acme", max_bytes="1GiB"),
            stream("A3", ["tenant.acme.3"], tenant="acme", max_bytes="1KiB"),
            consumer("c1", "A1", "acme"),
            consumer("c2", "A1"),  # no tenant: counts toward its stream's
            consumer("c3", "A2", "acme"),
            consumer("c4", "A3", "acme"),
        ]
    )
    problems = check_policy(resources(text), config(QUOTAS))
    assert lines(problems) == [
        'm.yaml:13:12: tenant "acme" declares 3 streams, over its quota of 2 '
        "(tenants.acme.quota.max_streams)",
        'm.yaml:28:12: tenant "acme" declares 4 consumers, over its quota of 2 '
        "(tenants.acme.quota.max_consumers)",
    ]
    assert problems[1].related == (Location("m.yaml", 33, 12),)


def test_byte_quota_sums_max_bytes_times_replicas() -> None:
    text = "---\n".join(
        [
            stream("A1", ["tenant.acme.1"], tenant="acme", max_bytes="1GiB", num_replicas=2),
            stream("A2", ["tenant.acme.2"], tenant="acme", max_bytes="1GiB"),
            stream("G1", ["tenant.globex.1"], tenant="globex", max_bytes="5GB", num_replicas=2),
        ]
    )
    assert policy(text, cfg=QUOTAS) == []  # 1GiB x 2 + 1GiB and 5GB x 2: at the quota
    text += "---\n" + stream("A3", ["tenant.acme.3"], tenant="acme", max_bytes="1B")
    text += "---\n" + stream("G2", ["tenant.globex.2"], tenant="globex", max_bytes=1)
    assert policy(text, cfg=QUOTAS) == [
        'm.yaml:18:12: tenant "acme" declares 3 streams, over its quota of 2 '
        "(tenants.acme.quota.max_streams)",
        'm.yaml:19:21: tenant "acme" streams reserve 3221225473B (max_bytes x num_replicas), '
        "over its quota of 3GiB (tenants.acme.quota.max_bytes)",
        'm.yaml:24:21: tenant "globex" streams reserve 10000000001B (max_bytes x num_replicas), '
        "over its quota of 10GB (tenants.globex.quota.max_bytes)",
    ]


def test_a_stream_without_a_byte_limit_under_a_byte_quota_is_an_error() -> None:
    text = "---\n".join(
        [
            stream("A1", ["tenant.acme.1"], tenant="acme"),
            stream("A2", ["tenant.acme.2"], tenant="acme", max_bytes=-1),
            stream("FREE", ["free.>"], max_bytes=-1),
        ]
    )
    assert policy(text, cfg=QUOTAS) == [
        'm.yaml:3:12: stream "A1" has no max_bytes limit, but tenant "acme" has a byte quota '
        "of 3GiB (tenants.acme.quota.max_bytes)",
        'm.yaml:9:21: stream "A2" has no max_bytes limit, but tenant "acme" has a byte quota '
        "of 3GiB (tenants.acme.quota.max_bytes)",
    ]


def test_replica_quota_covers_streams_and_consumers() -> None:
    text = "---\n".join(
        [
            stream("A1", ["tenant.acme.1"], tenant="acme", max_bytes=1, num_replicas=5),
            stream("A2", ["tenant.acme.2"], tenant="acme", max_bytes=1, num_replicas=3),
            consumer("c1", "A2", "acme", num_replicas=4),
        ]
    )
    assert policy(text, cfg=QUOTAS) == [
        'm.yaml:4:40: spec.num_replicas: 5 replicas, over the quota of 3 of tenant "acme" '
        "(tenants.acme.quota.max_replicas)",
        'm.yaml:14:24: spec.num_replicas: 4 replicas, over the quota of 3 of tenant "acme" '
        "(tenants.acme.quota.max_replicas)",
    ]


# -- policy.require, environments -------------------------------------------------------------


def test_required_fields_must_be_set_on_every_stream() -> None:
    cfg = "policy: {require: [max_age, max_bytes]}"
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata:
      name: LOGS
    spec: {subjects: [logs.>], max_bytes: -1}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata:
      name: BARE
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: OK}
    spec: {subjects: [ok], max_age: 0, max_bytes: 1GiB}
    """
    assert policy(text, cfg=cfg) == [
        'm.yaml:4:3: stream "LOGS" must set spec.max_age (policy.require)',
        'm.yaml:10:3: stream "BARE" must set spec.max_age (policy.require)',
        'm.yaml:10:3: stream "BARE" must set spec.max_bytes (policy.require)',
    ]


def test_environment_max_replicas() -> None:
    cfg = "environments: {dev: {max_replicas: 1}, prod: {max_replicas: 3}}"
    text = """\
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: S}
    spec:
      subjects: [s]
      num_replicas: {{ values.replicas }}
    ---
    apiVersion: jsops/v1
    kind: Consumer
    metadata: {name: c, stream: S}
    spec: {num_replicas: 3}
    """
    dev = check_policy(resources(text, replicas=3), config(cfg), "dev")
    assert lines(dev) == [
        'm.yaml:6:17: spec.num_replicas: 3 replicas, over the maximum of 1 in environment "dev" '
        "(environments.dev.max_replicas)",
        'm.yaml:11:22: spec.num_replicas: 3 replicas, over the maximum of 1 in environment "dev" '
        "(environments.dev.max_replicas)",
    ]
    assert {p.code for p in dev} == {"max_replicas"}
    assert check_policy(resources(text, env="prod", replicas=3), config(cfg), "prod") == []
    assert check_policy(resources(text, replicas=3), config(cfg), None) == []  # no environment


def test_account_resources_are_left_alone() -> None:
    cfg = """
    environments: {dev: {max_replicas: 1}}
    tenants: {acme: {account: ACME, quota: {max_streams: 1, max_replicas: 1}}}
    policy: {require: [max_age]}
    """
    text = """\
    apiVersion: jsops/v1
    kind: Account
    metadata: {name: ACME}
    ---
    apiVersion: jsops/v1
    kind: Stream
    metadata: {name: A, tenant: acme, account: ACME}
    spec: {subjects: [tenant.acme.a], max_age: 1d}
    """
    assert policy(text, cfg=cfg) == []


# -- jsops.yaml -------------------------------------------------------------------------------


def project_errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "jsops.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ManifestError) as info:
        load_project(path)
    shown = str(path)
    return [line.replace(shown, "jsops.yaml") for line in info.value.lines()]


def test_unknown_required_field_is_a_config_error(tmp_path: Path) -> None:
    assert project_errors(
        tmp_path,
        """\
        policy:
          require:
            - max_age
            - max_byte
            - colour
        """,
    ) == [
        'jsops.yaml:4:7: policy.require.1: unknown stream field "max_byte" '
        '(did you mean "max_bytes"?)',
        'jsops.yaml:5:7: policy.require.2: unknown stream field "colour"',
    ]


def test_config_errors_are_all_reported_together(tmp_path: Path) -> None:
    assert project_errors(
        tmp_path,
        """\
        policy: {require: [max_agee], requires: []}
        """,
    ) == [
        'jsops.yaml:1:20: policy.require.0: unknown stream field "max_agee" '
        '(did you mean "max_age"?)',
        'jsops.yaml:1:31: unknown field "requires" in policy (did you mean "require"?)',
    ]


def test_tenant_config_errors(tmp_path: Path) -> None:
    assert project_errors(
        tmp_path,
        """\
        tenants:
          acme:
            prefix: tenant.*
            stream_pattern: "ACME_("
          globex:
            quota: {max_bytes: 10gigs, max_replicas: 7}
        environments:
          prod: {max_replicas: 0, allow_delete: maybe}
        """,
    ) == [
        'jsops.yaml:3:13: tenants.acme.prefix: invalid prefix: subject "tenant.*" must not '
        "contain wildcards",
        "jsops.yaml:4:21: tenants.acme.stream_pattern: invalid regular expression "
        '"ACME_(": missing ), unterminated subpattern at position 5',
        'jsops.yaml:6:24: tenants.globex.quota.max_bytes: invalid size "10gigs": unknown unit '
        '"gigs" (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)',
        "jsops.yaml:6:46: tenants.globex.quota.max_replicas: must be at most 5, got 7",
        "jsops.yaml:8:24: environments.prod.max_replicas: must be at least 1, got 0",
        'jsops.yaml:8:41: environments.prod.allow_delete: expected true or false, got "maybe"',
    ]


def test_tenant_prefixes_must_not_nest(tmp_path: Path) -> None:
    assert project_errors(
        tmp_path,
        """\
        tenants:
          acme: {}
          acme-eu: {prefix: tenant.acme.eu}
          all: {prefix: tenant}
          "bad id": {}
        """,
    ) == [
        'jsops.yaml:3:21: tenants.acme-eu: prefix "tenant.acme.eu" is inside the prefix '
        '"tenant.acme" of tenant "acme"',
        'jsops.yaml:4:17: tenants.all: prefix "tenant" contains the prefix "tenant.acme" of '
        'tenant "acme"',
        'jsops.yaml:4:17: tenants.all: prefix "tenant" contains the prefix "tenant.acme.eu" of '
        'tenant "acme-eu"',
        'jsops.yaml:5:3: tenants.bad id: the default prefix "tenant.bad id" is not a valid '
        'subject (subject "tenant.bad id" must not contain whitespace): set prefix',
    ]


def test_check_project_config_without_a_document() -> None:
    (problem,) = check_project_config(config("policy: {require: [max_agee]}"))
    assert str(problem) == (
        'jsops.yaml: policy.require.0: unknown stream field "max_agee" (did you mean "max_age"?)'
    )


# -- whole repositories -----------------------------------------------------------------------


def repo_problems(root: Path, env: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(root)
    project = load_project(root / "jsops.yaml")
    loaded = load_manifests([str(p) for p in project.manifest_paths()], project.variables(env))
    assert loaded.diagnostics == []
    found = []
    for doc in loaded.documents:
        res, problems = validate_document(doc)
        assert res is not None, problems
        found.append(res)
    found = [r for r in found if r.in_environment(env)]
    return lines(check_policy(found, project, env))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_violation_of_a_repository_is_reported_in_one_run(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = DATA / "violations"
    expected = (root / f"expected.{env}.txt").read_text().splitlines()
    assert repo_problems(root, env, monkeypatch) == expected


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_clean_repository_has_no_violation(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert repo_problems(DATA / "clean", env, monkeypatch) == []


@pytest.mark.parametrize("config_file", ["jsops.yaml", "tests/data/policy/example-jsops.yaml"])
@pytest.mark.parametrize("env", ["local", "prod"])
def test_the_example_repository_passes_with_the_proposed_policy(
    config_file: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """manifests/ with the repo's jsops.yaml, and with the tenants/policy docs/tenants.md
    proposes (example-jsops.yaml reads the same manifests/)."""
    monkeypatch.chdir(REPO)
    project = load_project(REPO / config_file)
    variables = project.variables(env)
    loaded = load_manifests([str(p) for p in project.manifest_paths()], variables)
    found = [validate_document(d)[0] for d in loaded.documents]
    assert None not in found
    env_resources = [r for r in found if r is not None and r.in_environment(env)]
    assert len(env_resources) == 9
    assert lines(check_policy(env_resources, project, env)) == []


# -- end to end ------------------------------------------------------------------------------


def copy_repo(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(DATA / name, root)
    return root


def test_e2e_validate_reports_every_violation(tmp_path: Path) -> None:
    from harness.project import run_cli

    root = copy_repo("violations", tmp_path)
    code, out, err = run_cli(["validate"], cwd=root)
    assert code == 1 and out == ""
    for env in ("dev", "prod"):
        for line in (root / f"expected.{env}.txt").read_text().splitlines():
            located = line.split(" (did you mean")[0]
            assert located in err, located
    assert "Traceback" not in err


def test_e2e_validate_clean_repository(tmp_path: Path) -> None:
    from harness.project import run_cli

    root = copy_repo("clean", tmp_path)
    assert run_cli(["validate"], cwd=root) == (0, "", "manifests are valid\n")


def test_e2e_plan_refuses_overlap_with_an_undeclared_live_stream(
    tmp_path: Path, nats_server: Any
) -> None:
    from harness.project import make_project
    from harness.servers import JsWriteCounter, js_request_sync, unique_name

    project = make_project(tmp_path, nats_server.url)
    live, name = unique_name("LIVE"), unique_name("NEW")
    token = live.lower()
    reply = js_request_sync(
        nats_server.url,
        f"$JS.API.STREAM.CREATE.{live}",
        {"name": live, "subjects": [f"{token}.>"]},
    )
    assert "error" not in reply, reply
    project.write("s.yaml", stream(name, [f"{token}.orders.*"]))
    with JsWriteCounter(nats_server.url) as counter:
        code, out, err = project.cli("plan")
    assert counter.writes == []
    assert code == 1 and out == ""
    assert (
        f'manifests/s.yaml:4:21: subject "{token}.orders.*" of stream "{name}" overlaps subject '
        f'"{token}.>" of stream "{live}" on the server, which no manifest declares'
    ) in err


def test_e2e_plan_and_apply_send_nothing_on_a_violation(tmp_path: Path, nats_server: Any) -> None:
    from harness.project import make_project
    from harness.servers import JsWriteCounter, unique_name

    project = make_project(tmp_path, nats_server.url, extra="tenants: {acme: {}}\n")
    name = unique_name("ACME")
    project.write("s.yaml", stream(name, ["not.acme.>"], tenant="acme"))
    with JsWriteCounter(nats_server.url) as counter:
        plan_code, _, plan_err = project.cli("plan")
        apply_code, _, apply_err = project.cli("apply", "--auto-approve")
    assert counter.requests == []  # not even a read: validation runs before connecting
    line = (
        'manifests/s.yaml:4:21: spec.subjects.0: subject "not.acme.>" is not under the prefix '
        '"tenant.acme" of tenant "acme"'
    )
    assert plan_code == 1 and line in plan_err
    assert apply_code == 1 and line in apply_err


def test_e2e_apply_refuses_deletes_where_allow_delete_is_false(
    tmp_path: Path, nats_server: Any
) -> None:
    from harness.project import make_project
    from harness.servers import JsWriteCounter, unique_name

    project = make_project(
        tmp_path,
        nats_server.url,
        envs={"test": {"servers": [nats_server.url], "allow_delete": False}},
    )
    keep, gone = unique_name("KEEP"), unique_name("GONE")
    project.write("s.yaml", stream(keep, [f"{keep.lower()}.>"]) + "---\n" + stream(gone, None))
    code, _, err = project.cli("apply", "--auto-approve")
    assert code == 0, err
    project.write("s.yaml", stream(keep, [f"{keep.lower()}.>"]))
    with JsWriteCounter(nats_server.url) as counter:
        code, _, err = project.cli("apply", "--auto-approve", "--prune")
    assert counter.writes == []
    assert code == 1
    assert (
        f'Stream {gone}: delete refused: environment "test" does not allow deletes or replaces'
        in err
    )
