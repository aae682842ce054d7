"""Backups: stream snapshots and restores over the JetStream API, in the nats CLI layout.

A backup of stream ``S`` is a folder ``DIR/S/`` with the files nats CLI
(``nats stream backup``, jsm.go ``snapshots.go`` ``SnapshotToDirectory``) writes, so
``nats stream restore`` reads what jsops writes and the other way round:

* ``backup.json``: ``{"config": <StreamConfig>, "state": <StreamState>}``, the snapshot
  reply of the server (two-space indent, as jsm.go's ``json.MarshalIndent``);
* ``stream.tar.s2``: the snapshot bytes as the server sent them (an S2 stream of a tar
  up to 2.14, of the ``NATSARC1`` archive from 2.15 on; jsops never looks inside).

The wire protocol (nats-server ``jetstream_api.go``; nats-py has no helper):

==========  ===================================================================
snapshot    subscribe an inbox; ``STREAM.SNAPSHOT.S`` with ``deliver_subject``; the
            reply is ``{config, state}``; chunks arrive on the inbox, each but the
            last with a reply subject (``$JS.SNAPSHOT.ACK...``) to ack with an empty
            message (the server keeps ``window_size / chunk_size`` chunks in flight
            and gives up after 5s without an ack); the end is an empty message (status
            header ``204``, or none when the snapshot fit in one chunk); an error is
            an empty message with status ``408`` (no interest / no flow response) or
            ``500 <why>``
restore     ``STREAM.RESTORE.S`` with ``{config, state}`` (the stream must not exist);
            the reply names a ``deliver_subject``; each chunk is a request to it
            answered by an empty ack (or an error object); an empty request ends the
            upload and its reply is the StreamInfo of the restored stream (or an
            error). The server gives up on an upload idle for 5s.
==========  ===================================================================

A restore recreates the stream with the configuration in ``backup.json`` (the name
cannot change: the server checks it against the archive) and its consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from reconciler.connection import ConnectSettings, connect
from reconciler.connection import run as run_async
from reconciler.errors import ApiError, ErrCode, JsopsError
from reconciler.models import Kind
from reconciler.plan import Action, Change

T = TypeVar("T")

BACKUP_FILE = "backup.json"  # jsm.go SnapshotToDirectory's metaFile
DATA_FILE = "stream.tar.s2"  # and its dataFile
PARTIAL = ".partial"  # suffix of files a backup is still writing

SNAPSHOT_CHUNK = 128 * 1024  # the server's default (clamped by it to 1KiB..1MiB)
SNAPSHOT_WINDOW = 8 * 1024 * 1024  # the server's default in-flight window
RESTORE_CHUNK = 128 * 1024  # bytes per restore request (at most the server's max_payload)
CHUNK_IDLE_TIMEOUT = 30.0  # seconds without a snapshot chunk before giving up
RESTORE_FINISH_TIMEOUT = 3600.0  # the server rebuilds the stream after the last chunk
# On a cluster the server answers STREAM.RESTORE only once the new stream's Raft group
# has elected a leader, which takes seconds on a busy host (a 3-node CI run took over
# 5 s): the request gets at least this long, whatever the environment's timeout.
RESTORE_START_TIMEOUT = 30.0
# On a cluster the server that takes the upload (the new stream's leader) subscribes to
# its deliver subject; the server jsops is connected to learns of that interest over the
# routes a moment later, and a first chunk sent before then has "no responders" (it
# reached nobody, so sending it again is safe). The first chunk is sent again for this
# long, every RESTORE_INTEREST_RETRY seconds.
RESTORE_INTEREST_WAIT = 5.0
RESTORE_INTEREST_RETRY = 0.1

_NAME_RE = re.compile(r"^[^.*>\s/\\]+$")
_S2_MAGIC = b"\xff\x06\x00\x00S2sTwO"

ProgressFn = Callable[[int, int], None]
"""``on_progress(done, total)`` in bytes (``total`` 0 when not known)."""


class BackupError(JsopsError):
    """A backup, restore or verification failed; the message says which and why."""


class RestoreRefused(BackupError):
    """A restore that would touch an existing stream: nothing was changed."""


@dataclass(frozen=True)
class Archive:
    """A backup folder that passed :func:`read_archive`'s checks."""

    directory: Path
    config: dict[str, Any]
    state: dict[str, Any]
    size: int  # bytes of stream.tar.s2

    @property
    def stream(self) -> str:
        return str(self.config["name"])

    @property
    def data_path(self) -> Path:
        return self.directory / DATA_FILE

    @property
    def messages(self) -> int:
        return int(self.state.get("messages") or 0)

    @property
    def last_seq(self) -> int:
        return int(self.state.get("last_seq") or 0)


@dataclass(frozen=True)
class Restored:
    """What a restore brought back, beside what the backup says it held."""

    stream: str
    messages: int
    last_seq: int
    consumers: int
    expected_messages: int
    expected_last_seq: int

    @property
    def complete(self) -> bool:
        return (self.messages, self.last_seq) == (self.expected_messages, self.expected_last_seq)

    def describe(self) -> str:
        text = (
            f"stream {self.stream}: {_count(self.messages, 'message')} "
            f"(last sequence {self.last_seq}), {_count(self.consumers, 'consumer')}"
        )
        if self.complete:
            return text + ", as in the backup"
        return (
            text + f"; the backup has {_count(self.expected_messages, 'message')} "
            f"(last sequence {self.expected_last_seq})"
        )


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ------------------------------------------------------------------ snapshot


async def snapshot_stream(
    nc: NatsClient,
    settings: ConnectSettings,
    stream: str,
    out_dir: str | Path,
    *,
    consumers: bool = True,
    on_progress: ProgressFn | None = None,
) -> Archive:
    """Snapshot ``stream`` into ``out_dir/<stream>/`` (nats CLI layout) and return it.

    The files are written under temporary names and renamed at the end, so a failed
    snapshot never leaves an archive that looks complete (nor replaces an older one).
    """
    folder = Path(out_dir) / stream
    try:  # the messages are in it: private to the user, as jsm.go makes it (0700)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or exc
        raise BackupError(f"snapshot of stream {stream}: cannot create {folder}: {why}") from None
    data_tmp = folder / (DATA_FILE + PARTIAL)
    meta_tmp = folder / (BACKUP_FILE + PARTIAL)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=0, pending_bytes_limit=0)
    try:
        request = {
            "deliver_subject": inbox,
            "no_consumers": not consumers,
            "chunk_size": SNAPSHOT_CHUNK,
            "window_size": SNAPSHOT_WINDOW,
            "jsck": False,
        }
        try:
            reply = await _api(nc, settings, f"STREAM.SNAPSHOT.{stream}", request)
        except ApiError as exc:
            raise BackupError(f"snapshot of stream {stream} failed: {_why(exc)}") from None
        state = reply.get("state") or {}
        received = 0
        with open(data_tmp, "wb") as data:
            while True:
                try:
                    msg = await sub.next_msg(timeout=CHUNK_IDLE_TIMEOUT)
                except NatsTimeoutError:
                    raise BackupError(
                        f"snapshot of stream {stream} failed: no data from the server "
                        f"for {CHUNK_IDLE_TIMEOUT:g}s"
                    ) from None
                if not msg.data:  # the end, or the server's error
                    headers = msg.headers or {}
                    status = headers.get("Status", "")
                    if status and status != "204":
                        why = f"{status} {headers.get('Description', '')}".strip()
                        raise BackupError(f"snapshot of stream {stream} failed: {why}")
                    break
                if msg.reply:  # flow control: ack at once, before writing
                    await nc.publish(msg.reply, b"")
                data.write(msg.data)
                received += len(msg.data)
                if on_progress:  # compressed bytes: no total to compare them with
                    on_progress(received, 0)
        meta = {"config": reply.get("config") or {}, "state": state}
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(data_tmp, folder / DATA_FILE)
        os.replace(meta_tmp, folder / BACKUP_FILE)
    except OSError as exc:
        raise BackupError(f"snapshot of stream {stream}: cannot write {folder}: {exc}") from None
    except NatsError as exc:  # the connection went away part way
        why = str(exc) or type(exc).__name__
        raise BackupError(f"snapshot of stream {stream} failed: {why}") from None
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        for path in (data_tmp, meta_tmp):
            path.unlink(missing_ok=True)
    return read_archive(folder)


def _why(exc: ApiError) -> str:
    if exc.err_code == ErrCode.STREAM_NOT_FOUND:
        return "no such stream"
    if exc.err_code == ErrCode.STREAM_SNAPSHOT and "no impl" in exc.description:
        # memStore.Snapshot before 2.15
        return f"this server cannot snapshot a memory stream (2.15 and later can): {exc}"
    return str(exc)


async def _api(
    nc: NatsClient,
    settings: ConnectSettings,
    subject: str,
    payload: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """One JetStream API request through the one door (``JetStreamClient.request``)."""
    from reconciler.live import JetStreamClient

    return await JetStreamClient(nc, settings).request(subject, payload, timeout=timeout)


# ------------------------------------------------------------------ before a destroy

SNAPSHOT_KINDS = (Kind.STREAM, Kind.KEY_VALUE, Kind.OBJECT_STORE)
DESTROYING = (Action.REPLACE, Action.DELETE)


def needs_snapshot(change: Change) -> bool:
    """A change ``apply --backup-dir`` snapshots first, as planned: the replace or
    delete of a stream or bucket that holds messages (apply checks the count again
    just before the change, and snapshots a stream that has messages by then too)."""
    return (
        change.address.kind in SNAPSHOT_KINDS
        and change.action in DESTROYING
        and bool((change.loss or {}).get("messages"))
    )


def snapshot_target(change: Change) -> str:
    """The stream a change's snapshot is of (a bucket's ``KV_``/``OBJ_`` stream)."""
    from reconciler.buckets import stream_address

    return stream_address(change.address).name


async def snapshot_before(
    nc: NatsClient, settings: ConnectSettings, change: Change, backup_dir: str | Path
) -> Archive | None:
    """Snapshot the stream a destroying change is about to lose, if it holds messages
    now; None when there is nothing to keep. A failure is a BackupError saying that
    the change was not made."""
    if change.address.kind not in SNAPSHOT_KINDS or change.action not in DESTROYING:
        return None
    name = snapshot_target(change)
    try:
        info = await _api(nc, settings, f"STREAM.INFO.{name}")
    except ApiError as exc:
        if exc.err_code == ErrCode.STREAM_NOT_FOUND:
            return None
        raise
    if not int((info.get("state") or {}).get("messages") or 0):
        return None
    try:
        return await snapshot_stream(nc, settings, name, backup_dir)
    except JsopsError as exc:
        done = f"{change.action.value}d"
        raise BackupError(f"not {done}: the snapshot before it failed: {exc}") from None


# ------------------------------------------------------------------ archive checks


def read_archive(directory: str | Path) -> Archive:
    """Check a backup folder without a server: ``backup.json`` parses and names a
    stream, ``stream.tar.s2`` is there, not empty, and a whole S2 stream (every
    chunk header and length up to the end of the file: a truncated copy fails)."""
    folder = Path(directory)
    where = str(folder)
    if not folder.is_dir():
        raise BackupError(f"{where}: no such backup folder")
    meta_path = folder / BACKUP_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{where}: no {BACKUP_FILE} (not a backup folder)") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{meta_path}: not a readable backup description: {exc}") from None
    config = meta.get("config") if isinstance(meta, dict) else None
    state = meta.get("state") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise BackupError(f"{meta_path}: needs a config and a state object")
    name = config.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BackupError(f"{meta_path}: config.name is not a stream name: {name!r}")
    data_path = folder / DATA_FILE
    try:
        size = data_path.stat().st_size
    except FileNotFoundError:
        raise BackupError(f"{where}: no {DATA_FILE} (the snapshot data is missing)") from None
    if size == 0:
        raise BackupError(f"{data_path}: empty (the snapshot data is missing)")
    problem = _s2_problem(data_path, size)
    if problem:
        raise BackupError(f"{data_path}: {problem}")
    return Archive(folder, config, state, size)


def _s2_problem(path: Path, size: int) -> str:
    """Why a file is not one whole S2 (framed Snappy) stream, or "" (headers only:
    one seek per chunk, no decompression)."""
    with open(path, "rb") as fh:
        if fh.read(len(_S2_MAGIC)) != _S2_MAGIC:
            return "not an S2 stream (a snapshot starts with the S2 stream identifier)"
        offset = len(_S2_MAGIC)
        while offset < size:
            head = fh.read(4)
            if len(head) < 4:
                return f"truncated: a chunk header is cut at byte {offset} of {size}"
            kind, length = head[0], int.from_bytes(head[1:4], "little")
            if 0x02 <= kind <= 0x7F:
                return f"corrupt: unknown chunk type {kind:#x} at byte {offset}"
            offset += 4 + length
            if offset > size:
                return f"truncated: the chunk at byte {offset - 4 - length} ends past {size}"
            fh.seek(offset)
    return ""


# ------------------------------------------------------------------ restore


async def restore_stream(
    nc: NatsClient,
    settings: ConnectSettings,
    archive: Archive,
    *,
    config: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
) -> Restored:
    """Restore ``archive`` (with ``config`` instead of its own, same name); refuse,
    touching nothing, when the stream exists."""
    name = archive.stream
    if await _stream_exists(nc, settings, name):
        raise RestoreRefused(
            f"stream {name} already exists on {settings.describe()}: restore never "
            "touches an existing stream (delete it first, or restore elsewhere); "
            "nothing was changed"
        )
    body = {"config": config or archive.config, "state": archive.state}
    try:
        reply = await _api(
            nc,
            settings,
            f"STREAM.RESTORE.{name}",
            body,
            timeout=max(settings.timeout, RESTORE_START_TIMEOUT),
        )
        deliver = str(reply.get("deliver_subject") or "")
        info = await _upload(nc, settings, archive, deliver, on_progress)
    except ApiError as exc:  # refused: the server made nothing
        if exc.err_code == ErrCode.STREAM_EXISTS_RESTORE:
            raise RestoreRefused(f"stream {name} already exists: nothing was changed") from None
        raise BackupError(f"restore of stream {name} refused: {exc}") from None
    except JsopsError as exc:
        # No answer, or a failed upload: the stream may be half made (2.15 keeps the
        # messages it read before the error). It did not exist before, so remove it.
        failed = (
            exc
            if isinstance(exc, BackupError)
            else BackupError(f"restore of stream {name} failed: {exc}")
        )
        await _remove_partial(nc, settings, name, failed)
        raise failed from None
    state = info.get("state") or {}
    return Restored(
        name,
        int(state.get("messages") or 0),
        int(state.get("last_seq") or 0),
        int(state.get("consumer_count") or 0),
        archive.messages,
        archive.last_seq,
    )


async def _remove_partial(
    nc: NatsClient, settings: ConnectSettings, name: str, exc: BackupError
) -> None:
    """Delete the stream a failed restore made (it did not exist before), saying so."""
    try:
        if not await _stream_exists(nc, settings, name):
            return
        await _api(nc, settings, f"STREAM.DELETE.{name}")
    except JsopsError as why:
        raise BackupError(f"{exc}; the partly restored stream may be left: {why}") from None
    raise BackupError(f"{exc}; the partly restored stream was deleted") from None


async def _upload(
    nc: NatsClient,
    settings: ConnectSettings,
    archive: Archive,
    deliver: str,
    on_progress: ProgressFn | None,
) -> dict[str, Any]:
    """Send the archive in chunks, each acked, then the empty end; the final reply."""
    name = archive.stream
    chunk = min(RESTORE_CHUNK, int(nc.max_payload or RESTORE_CHUNK))
    sent = 0
    with open(archive.data_path, "rb") as data:
        while block := data.read(chunk):
            ack = await _chunk_request(nc, deliver, block, settings.timeout, name, first=not sent)
            if ack:
                raise BackupError(f"restore of stream {name} failed: {_reply_error(ack)}")
            sent += len(block)
            if on_progress:
                on_progress(sent, archive.size)
    final = await _chunk_request(nc, deliver, b"", RESTORE_FINISH_TIMEOUT, name, first=not sent)
    try:
        info: dict[str, Any] = json.loads(final)
    except ValueError:
        raise BackupError(f"restore of stream {name} failed: unreadable final reply") from None
    if info.get("error"):
        raise BackupError(f"restore of stream {name} failed: {_reply_error(final)}")
    return info


async def _chunk_request(
    nc: NatsClient, subject: str, data: bytes, timeout: float, name: str, *, first: bool = False
) -> bytes:
    """One chunk of an upload and the server's ack; the ``first`` is sent again while it
    has no responders yet (RESTORE_INTEREST_WAIT)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + (RESTORE_INTEREST_WAIT if first else 0.0)
    try:
        while True:
            try:
                msg = await nc.request(subject, data, timeout=timeout)
                break
            except NoRespondersError:
                if loop.time() >= give_up:
                    raise
                await asyncio.sleep(RESTORE_INTEREST_RETRY)
    except NatsTimeoutError:
        raise BackupError(
            f"restore of stream {name} failed: the server did not answer in {timeout:g}s"
        ) from None
    except Exception as exc:  # no responders: the server dropped the upload
        raise BackupError(f"restore of stream {name} failed: {type(exc).__name__}") from None
    return bytes(msg.data)


def _reply_error(data: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(data).get("error") or {}
        return f"{error.get('description', 'unknown error')} (err_code {error.get('err_code')})"
    return data.decode(errors="replace")[:200]


async def _stream_exists(nc: NatsClient, settings: ConnectSettings, name: str) -> bool:
    try:
        await _api(nc, settings, f"STREAM.INFO.{name}")
    except ApiError as exc:
        if exc.err_code == ErrCode.STREAM_NOT_FOUND:
            return False
        raise
    return True


# ------------------------------------------------------------------ names


async def resolve_stream(nc: NatsClient, settings: ConnectSettings, ref: str) -> str:
    """The stream a backup argument names: ``Stream/X``, ``KeyValue/B`` (``KV_B``),
    ``ObjectStore/B`` (``OBJ_B``), or a bare name: the stream of that name, else the
    bucket of that name (a stream the clients' bucket layout built)."""
    from reconciler import buckets

    kind, _, name = ref.rpartition("/")
    by_kind = {"Stream": None, "KeyValue": buckets.KEY_VALUE, "ObjectStore": buckets.OBJECT_STORE}
    if kind:
        if kind not in by_kind:
            raise BackupError(f"{ref}: not Stream/NAME, KeyValue/BUCKET or ObjectStore/BUCKET")
        bucket = by_kind[kind]
        return bucket.stream_name(name) if bucket else name
    if await _stream_exists(nc, settings, name):
        return name
    for bucket in (buckets.KEY_VALUE, buckets.OBJECT_STORE):
        stream = bucket.stream_name(name)
        with contextlib.suppress(ApiError):
            info = await _api(nc, settings, f"STREAM.INFO.{stream}")
            if buckets.live_address(stream, info.get("config") or {}).kind is not Kind.STREAM:
                return stream
    raise BackupError(f"no stream or bucket named {name} on {settings.describe()}")


# ------------------------------------------------------------------ sessions


async def _session(settings: ConnectSettings, body: Callable[[NatsClient], Awaitable[T]]) -> T:
    """Connect, check JetStream is there for the account (one clear error if not), run."""
    from reconciler.live import JetStreamClient

    nc = await connect(settings)
    try:
        await JetStreamClient(nc, settings).account_info()
        return await body(nc)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)


def backup_streams(
    settings: ConnectSettings,
    refs: list[str],
    out_dir: str | Path,
    *,
    consumers: bool = True,
    on_progress: Callable[[str], ProgressFn | None] | None = None,
    on_done: Callable[[Archive], None] | None = None,
) -> list[Archive]:
    """Snapshot each named stream or bucket into ``out_dir/<stream>/`` (every name is
    resolved first); stops at the first failure, what was written before it stays
    (``on_done(archive)`` is told of each as it is written)."""

    async def body(nc: NatsClient) -> list[Archive]:
        names = [await resolve_stream(nc, settings, ref) for ref in refs]
        done = []
        for name in names:
            progress = on_progress(name) if on_progress else None
            archive = await snapshot_stream(
                nc, settings, name, out_dir, consumers=consumers, on_progress=progress
            )
            done.append(archive)
            if on_done:
                on_done(archive)
        return done

    return run_async(_session(settings, body))


def restore_archive(
    settings: ConnectSettings, directory: str | Path, *, on_progress: ProgressFn | None = None
) -> Restored:
    """Check the backup folder, then restore it (refused when the stream exists)."""
    archive = read_archive(directory)

    async def body(nc: NatsClient) -> Restored:
        return await restore_stream(nc, settings, archive, on_progress=on_progress)

    return run_async(_session(settings, body))


# ------------------------------------------------------------------ verify


@dataclass(frozen=True)
class Verified:
    """A restore of an archive into a throwaway server, against backup.json."""

    archive: Archive
    restored: Restored

    @property
    def ok(self) -> bool:
        return self.restored.complete


def verify_archive(directory: str | Path, *, work_dir: str | Path | None = None) -> Verified:
    """Restore an archive into a throwaway nats-server (on a free loopback port, its
    store in a temporary folder) and compare message count and last sequence with
    ``backup.json``. The stream is restored as one replica with no placement (the
    throwaway server is a single node); mirrors and sources find no origin there, so
    they copy nothing while it is checked."""
    from reconciler.server import retry_port_clash, start_server

    archive = read_archive(directory)
    config = {k: v for k, v in archive.config.items() if k != "placement"}
    config["num_replicas"] = 1
    with _scratch(work_dir) as scratch:
        try:
            server = retry_port_clash(
                lambda: start_server(store_dir=scratch / "store", name="jsops-verify")
            )
        except JsopsError as exc:
            raise BackupError(f"backup verify: the throwaway server did not start: {exc}") from None
        try:
            settings = ConnectSettings(servers=[server.url], timeout=10.0)
            restored = run_async(
                _session(settings, lambda nc: restore_stream(nc, settings, archive, config=config))
            )
        finally:
            server.stop()
    return Verified(archive, restored)


@contextlib.contextmanager
def _scratch(work_dir: str | Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="jsops-verify-", dir=work_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ object store


def _object_names(stream: str) -> tuple[str, str]:
    return f"{stream}/{BACKUP_FILE}", f"{stream}/{DATA_FILE}"


async def _object_store(nc: NatsClient, settings: ConnectSettings, bucket: str) -> Any:
    from nats.js.errors import BucketNotFoundError, InvalidBucketNameError

    js = nc.jetstream(prefix=settings.prefix)
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, InvalidBucketNameError):
        raise BackupError(
            f"no object store bucket {bucket} on {settings.describe()} (declare an "
            "ObjectStore manifest for it and apply it there)"
        ) from None


def upload_archives(settings: ConnectSettings, bucket: str, archives: list[Archive]) -> None:
    """Put each archive into an Object Store bucket as ``<STREAM>/backup.json`` and
    ``<STREAM>/stream.tar.s2`` (an older backup of the same stream is replaced)."""

    async def body(nc: NatsClient) -> None:
        store = await _object_store(nc, settings, bucket)
        for archive in archives:
            meta_name, data_name = _object_names(archive.stream)
            try:
                with open(archive.data_path, "rb") as data:
                    await store.put(data_name, data)
                await store.put(meta_name, (archive.directory / BACKUP_FILE).read_bytes())
            except NatsError as exc:  # e.g. the bucket's max_bytes
                why = str(exc) or type(exc).__name__
                raise BackupError(
                    f"upload of the backup of {archive.stream} to bucket {bucket} failed: {why}"
                ) from None

    run_async(_session(settings, body))


def download_archive(
    settings: ConnectSettings, bucket: str, stream: str, out_dir: str | Path
) -> Archive:
    """Fetch ``<stream>/`` of an Object Store bucket into ``out_dir/<stream>/``
    (the object store checks each object's digest) and check it."""
    from nats.js.errors import ObjectNotFoundError

    folder = Path(out_dir) / stream
    folder.mkdir(parents=True, exist_ok=True)

    async def body(nc: NatsClient) -> None:
        store = await _object_store(nc, settings, bucket)
        for name, file in zip(_object_names(stream), (BACKUP_FILE, DATA_FILE), strict=True):
            try:
                with open(folder / file, "wb") as out:
                    await store.get(name, writeinto=out)
            except ObjectNotFoundError:
                raise BackupError(f"bucket {bucket} has no object {name}") from None
            except NatsError as exc:  # e.g. a digest mismatch
                why = str(exc) or type(exc).__name__
                raise BackupError(
                    f"download of {name} from bucket {bucket} failed: {why}"
                ) from None

    run_async(_session(settings, body))
    return read_archive(folder)
