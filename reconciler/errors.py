"""Errors and diagnostics.

Every error jsops reports to a user is a :class:`JsopsError`; the CLI turns it into
one line per message on stderr and exit 1 (``cli.main`` is the only place that does).

    JsopsError                    anything a user can act on (exit 1)
    ├── UsageError                bad command line or project file option
    ├── ManifestError             one or more located Diagnostics (validation)
    ├── ConnectionFailed          server unreachable, bad credentials, no JetStream
    ├── CapacityError             the plan does not fit the account's JetStream limits
    ├── LiveUnavailable           the server lists streams it cannot report (servers down)
    ├── ApiError                  the JetStream API answered with an error
    ├── StalePlanError            a saved plan is not what jsops would plan now
    ├── TargetMismatch            the servers are not those the environment expects
    ├── PlanRefused               a plan that must not be made (prune with nothing declared)
    └── ApplyRefused / ApplyFailed  refusals before writing, failures during apply
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from reconciler.printable import one_line

KeyPath = tuple[str | int, ...]
"""Where a value is inside a document: mapping keys and list indexes (``spec.sources.0``)."""


@dataclass(frozen=True, order=True, slots=True)
class Location:
    """A place in a manifest file: 1-based line and column (0 when unknown).

    ``rendered`` is True when line and column refer to the rendered text of a
    template rather than to the file as written (see ``reconciler.load``); a
    Diagnostic located there says so.
    """

    file: str
    line: int = 0
    col: int = 0
    rendered: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        # A file name comes from a pull request: a newline in it must not start a line
        # of its own (``::notice::`` in a CI log), see reconciler.printable.
        file = one_line(self.file)
        if not self.line:
            return file
        return f"{file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the manifests, with where it is.

    ``code`` is a stable slug for programs (``unknown_field``, ``bad_duration``...);
    ``message`` is for people; ``hint`` is an optional "did you mean" suggestion,
    already included in ``str()``, as is the "(line in rendered template)" note of
    a location in rendered text. ``str()`` is the one line printed on stderr::

        file:line:col: message (hint) (line in rendered template)
    """

    location: Location
    message: str
    code: str = "invalid"
    hint: str | None = None
    related: tuple[Location, ...] = field(default=())

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        if self.location.rendered:
            text += " (line in rendered template)"
        return text

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.location
        return (loc.file, loc.line, loc.col, self.message)


class JsopsError(Exception):
    """An error meant for the user: printed as one line per message, exit 1."""

    def lines(self) -> list[str]:
        return [str(self)]


class UsageError(JsopsError):
    """Bad command-line usage or project configuration."""


class ManifestError(JsopsError):
    """Manifests did not validate; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__(f"{len(self.diagnostics)} error(s) in manifests")

    def lines(self) -> list[str]:
        return [str(d) for d in self.diagnostics]


class ConnectionFailed(JsopsError):
    """The server could not be reached, refused our credentials, or has no JetStream."""


class ErrCode(IntEnum):
    """JetStream API ``err_code`` values jsops acts on or expects, as nats-server's
    ``server/errors.json`` names them (``JSStreamNotFoundErr`` and so on). The HTTP-like
    ``code`` of each is in the comment; ``reference/jetstream-api.md`` section 3.2 lists
    more. Compare ``ApiError.err_code`` with these, never with bare numbers."""

    NO_SUITABLE_PEERS = 10005  # 400 JSClusterNoPeersErrF: replicas cannot be placed (now)
    JETSTREAM_UNAVAILABLE = 10008  # 503 JSClusterNotAvailErr: no meta leader (yet)
    CONSUMER_CREATE = 10012  # 500 JSConsumerCreateErrF: free text (consumer update refusals)
    CONSUMER_NOT_FOUND = 10014  # 404 JSConsumerNotFoundErr
    NO_MESSAGE_FOUND = 10037  # 404 JSNoMessageFoundErr (STREAM.MSG.GET)
    NOT_ENABLED_FOR_ACCOUNT = 10039  # 503 JSNotEnabledForAccountErr
    INSUFFICIENT_RESOURCES = 10023  # 503 JSInsufficientResourcesErr
    STREAM_INVALID_CONFIG = 10052  # 500 JSStreamInvalidConfigF: nearly every config refusal
    MIRROR_NOT_UPDATABLE = 10055  # 400 JSStreamMirrorNotUpdatableErr
    STREAM_NAME_IN_USE = 10058  # 400 JSStreamNameExistErr: same name, different config
    STREAM_NOT_FOUND = 10059  # 404 JSStreamNotFoundErr
    SUBJECT_OVERLAP = 10065  # 400 JSStreamSubjectOverlapErr
    STREAM_UPDATE = 10069  # 500 JSStreamUpdateErrF: free text
    WRONG_LAST_SEQUENCE = 10071  # 400 JSStreamWrongLastSequenceErrF: an expected-sequence CAS
    NOT_ENABLED = 10076  # 503 JSNotEnabledErr
    STREAM_SNAPSHOT = 10064  # 500 JSStreamSnapshotErrF: e.g. a memory stream before 2.15
    STREAM_EXISTS_RESTORE = 10130  # 400 JSStreamNameExistRestoreFailedErr
    CONSUMER_ALREADY_EXISTS = 10148  # 400 JSConsumerAlreadyExists (action: create)
    CONSUMER_DOES_NOT_EXIST = 10149  # 400 JSConsumerDoesNotExist (action: update)


class CapacityError(JsopsError):
    """A plan that does not fit the account's JetStream limits; one line per shortfall."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"the plan does not fit the account's JetStream limits ({len(problems)})")

    def lines(self) -> list[str]:
        return [*self.problems, "nothing was changed (raise the limits or lower the plan)"]


class LiveUnavailable(JsopsError):
    """The server lists resources it cannot report now (their servers are down)."""


class ApiError(JsopsError):
    """The JetStream API answered with an error object."""

    def __init__(
        self, description: str, *, code: int = 0, err_code: int = 0, subject: str = ""
    ) -> None:
        self.description = description
        self.code = code
        self.err_code = err_code
        self.subject = subject
        shown = one_line(description)  # the server's words: one line, see printable
        super().__init__(f"{shown} (err_code {err_code})" if err_code else shown)


class StalePlanError(JsopsError):
    """A saved plan was made against a live state that has changed since."""


class TargetMismatch(JsopsError):
    """The servers reached are not the ones the environment pins (``expect``)."""


class PlanRefused(JsopsError):
    """A plan that is refused outright (its wording says which flag would allow it)."""


class ApplyRefused(JsopsError):
    """apply refused to start: nothing was written."""


class ApplyFailed(JsopsError):
    """Some changes failed during apply; the summary says what was and was not done."""
