"""Default permissions of a tenant's users: its prefix plus what JetStream use needs."""

from __future__ import annotations

# Requests a JetStream client makes to use (not administer) streams and consumers.
JETSTREAM_CLIENT_PUBLISH = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.>",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.>",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.INFO.>",
    "$JS.API.CONSUMER.NAMES.>",
    "$JS.API.CONSUMER.LIST.>",
    "$JS.API.CONSUMER.MSG.NEXT.>",
    "$JS.ACK.>",
    "$JS.FC.>",
)
JETSTREAM_CLIENT_SUBSCRIBE = ("_INBOX.>",)


def tenant_permissions(prefix: str) -> tuple[list[str], list[str]]:
    """(publish allow, subscribe allow) for a user of a tenant with subject ``prefix``."""
    own = f"{prefix}.>"
    return [own, *JETSTREAM_CLIENT_PUBLISH], [own, *JETSTREAM_CLIENT_SUBSCRIBE]
