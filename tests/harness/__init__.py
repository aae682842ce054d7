"""Test harness: real nats-server topologies and JetStream request helpers."""

from __future__ import annotations

from harness.servers import (
    WRITE_OPS,
    Cluster,
    HubAndLeaf,
    JsWriteCounter,
    SingleServer,
    api_op,
    is_write_request,
    js_request,
    js_request_sync,
    monitor_json,
    start_cluster,
    start_hub_and_leaf,
    start_single,
    unique_name,
)

__all__ = [
    "WRITE_OPS",
    "Cluster",
    "HubAndLeaf",
    "JsWriteCounter",
    "SingleServer",
    "api_op",
    "is_write_request",
    "js_request",
    "js_request_sync",
    "monitor_json",
    "start_cluster",
    "start_hub_and_leaf",
    "start_single",
    "unique_name",
]
