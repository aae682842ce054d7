"""Manifest texts the tests share, and their validated resources offline (no project, no
server); the message traffic feature tests drive."""

from __future__ import annotations

import asyncio
import json
import textwrap
from typing import Any

import nats

from reconciler.load import LoadResult, load_text, parse
from reconciler.models import Resource
from reconciler.validate import validate_loaded


def desired(text: str, env: str = "default") -> list[Resource]:
    """The resources of one manifest file ``m.yaml`` (dedented); fails on any problem."""
    source, problems = load_text("m.yaml", textwrap.dedent(text), {"env": env, "values": {}})
    assert source is not None and not problems, [str(p) for p in problems]
    docs, problems = parse(source)
    resources, problems = validate_loaded(LoadResult(docs, problems, [source]), env)
    assert not problems, [str(p) for p in problems]
    return resources


def stream_doc(name: str, **spec: Any) -> str:
    """A Stream manifest (subjects default to ``<name>.>``), its spec as JSON."""
    spec.setdefault("subjects", [f"{name.lower()}.>"])
    return (
        "apiVersion: jsops/v1\nkind: Stream\n"
        f"metadata: {{name: {name}}}\nspec: {json.dumps(spec)}\n"
    )


def consumer_doc(stream: str, name: str, **spec: Any) -> str:
    """A Consumer manifest of ``stream``, its spec as JSON."""
    return (
        "apiVersion: jsops/v1\nkind: Consumer\n"
        f"metadata: {{name: {name}, stream: {stream}}}\nspec: {json.dumps(spec)}\n"
    )


def fetch_and_ack(url: str, stream: str, consumer: str, count: int) -> None:
    """Pull ``count`` messages and acknowledge each (the consumer's ack floor moves)."""

    async def run() -> None:
        nc = await nats.connect(url)
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            got = 0
            while got < count:
                batch = min(100, count - got)
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    json.dumps({"batch": batch, "expires": 2_000_000_000}).encode(),
                    reply=inbox,
                )
                for _ in range(batch):
                    msg = await sub.next_msg(timeout=5)
                    assert msg.reply, msg.headers  # a message, not a status
                    await nc.request(msg.reply, b"+ACK", timeout=5)  # acked for sure
                    got += 1
        finally:
            await nc.close()

    asyncio.run(run())
