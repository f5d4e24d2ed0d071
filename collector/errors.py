"""The exception tree of btse-collector.

Every error the collector raises on purpose derives from :class:`CollectorError` and
carries its context as attributes, so logs and tests can read them without parsing text::

    CollectorError
    ├── FatalError                 the process cannot run: exit code 78 (EX_CONFIG)
    │   ├── ConfigError            a bad config file (collects every problem at once)
    │   ├── SpecError              a broken or incomplete AsyncAPI file in specs/
    │   ├── SchemaError            a broken table schema in schemas/ (file and key)
    │   └── CredentialsError       a credential the config needs is missing or unreadable
    ├── SpecLookupError            a product/server/channel/message name the specs lack (lists valid)
    ├── TopicError                 a topic that cannot be rendered from its parameters
    ├── SpecValidationError        a decoded frame that violates its payload schema (JSON path)
    ├── FeedError                  recoverable: the connection or topic is resynced
    │   ├── ConnectionLost         the socket closed or failed
    │   ├── StaleFeed              no pong or no data within the deadline
    │   ├── ExchangeError          BTSE sent an error frame (code, message, topic)
    │   │   └── AuthLost           BTSE logged an authenticated connection out (10002, -7)
    │   ├── AuthError              authKeyExpires was refused
    │   └── BookInconsistency      gap, crossed book: resubscribe that topic only
    ├── SpeedupsUnavailable        the C speedups were required but are not built or disabled
    ├── DecodeError                a frame that does not decode or match the spec (kept raw)
    │   └── InexactNumber          a price/amount float64 cannot hold exactly (> 15 digits)
    └── StorageError               the store cannot be written (disk full, permissions)
        ├── UnsafePathError        a symbol or name that would escape the data folder
        ├── RowsRejected           a column batch that does not match its table schema
        └── StoreWriteError        a write, fsync or rename failed (rows kept for retry)

Exit codes used by the CLI: 0 ok, 1 runtime failure, 2 usage, 78 configuration error.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


class CollectorError(Exception):
    """Base class of every error btse-collector raises on purpose."""


class FatalError(CollectorError):
    """An error that stops the process with exit code 78; restarting does not help."""

    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int | None
    key: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.key}: {self.message}"
        if self.suggestion:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


class ConfigError(FatalError):
    """A config file with one or more problems; ``problems`` lists them all."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid config")


class SpecError(FatalError):
    """A spec file in ``specs/`` is broken: names the file and the JSON path."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message
        super().__init__(f"{file}: {path}: {message}")


class SpecLookupError(CollectorError, LookupError):
    """A product, server, channel or message name the specs do not have; lists the valid ones."""

    def __init__(self, what: str, name: str, valid: tuple[str, ...]) -> None:
        self.what = what
        self.name = name
        self.valid = tuple(valid)
        super().__init__(f"unknown {what} {name!r}; valid: {', '.join(self.valid) or '(none)'}")

    def __str__(self) -> str:  # LookupError would repr() a single argument
        return str(self.args[0])


class TopicError(CollectorError, ValueError):
    """A topic cannot be rendered: wrong parameters, or a value its pattern rejects."""

    def __init__(self, template: str, message: str) -> None:
        self.template = template
        self.message = message
        super().__init__(f"topic {template!r}: {message}")


class SpecValidationError(CollectorError):
    """A decoded frame that does not match its message's payload schema in ``specs/``.

    ``path`` is a JSON path into the frame (``$.data.seqNum``); ``schema`` names the message
    (``futures:orderbookUpdate``).
    """

    def __init__(self, message: str, path: str, schema: str = "") -> None:
        self.message = message
        self.path = path
        self.schema = schema
        super().__init__(f"{schema + ': ' if schema else ''}{path}: {message}")


class CredentialsError(FatalError):
    """A credential is missing or unreadable. Never carries the secret itself."""


class FeedError(CollectorError):
    """A recoverable problem with a connection or a topic."""


class ConnectionLost(FeedError):
    def __init__(self, conn: str, reason: str, code: int | None = None) -> None:
        self.conn = conn
        self.reason = reason
        self.code = code
        super().__init__(f"{conn}: connection lost ({reason}, code={code})")


class StaleFeed(FeedError):
    def __init__(self, conn: str, silent_for: float, deadline: float) -> None:
        self.conn = conn
        self.silent_for = silent_for
        self.deadline = deadline
        super().__init__(f"{conn}: stale, silent for {silent_for:.1f}s (deadline {deadline:.1f}s)")


class ExchangeError(FeedError):
    """An error frame from BTSE, e.g. ``{"severity":"ERROR","errors":[...]}``."""

    def __init__(self, code: int | None, message: str, topic: str | None = None) -> None:
        self.code = code
        self.message = message
        self.topic = topic
        super().__init__(f"BTSE error {code}: {message}" + (f" (topic {topic})" if topic else ""))


class AuthError(FeedError):
    def __init__(self, server: str, detail: str) -> None:
        self.server = server
        self.detail = detail
        super().__init__(f"authentication refused by {server}: {detail}")


class AuthLost(ExchangeError):
    """BTSE logged an authenticated connection out mid-session (REST-style error object with
    ``errorCode`` 10002 "User session is expired" or -7 "Authenticate failed", reference §2.4):
    quote ids come back null from then on; the connection must log in again."""

    def __init__(self, conn: str, code: int, message: str) -> None:
        self.conn = conn
        super().__init__(code, message)


class BookInconsistency(FeedError):
    """A sequence gap or a crossed book; the topic must be resubscribed."""

    def __init__(self, kind: str, topic: str, expected: int | None, received: int | None) -> None:
        self.kind = kind
        self.topic = topic
        self.expected = expected
        self.received = received
        super().__init__(f"{kind} on {topic}: expected {expected}, received {received}")


class SpeedupsUnavailable(CollectorError):
    """The C speedups (collector.protocol._speedups) were required but cannot be used."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the C speedups collector.protocol._speedups are {reason}")


class DecodeError(CollectorError):
    """A frame that does not decode or does not match its spec schema."""

    def __init__(self, reason: str, raw: str | bytes, topic: str | None = None) -> None:
        self.reason = reason
        self.raw = raw
        self.topic = topic
        super().__init__(f"undecodable frame ({reason})" + (f" on {topic}" if topic else ""))


class InexactNumber(DecodeError):
    """A decimal that float64 cannot hold exactly (more than 15 significant digits, NaN...)."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"inexact number {text!r}: {problem}", text)


class StorageError(CollectorError):
    """The store cannot be written; what was already written stays intact."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


class UnsafePathError(StorageError):
    """A name (symbol, table) that would escape the data folder or is not a plain name."""


class RowsRejected(StorageError):
    """A column batch that does not match ``schemas/<table>.yaml``: names the table and column."""

    def __init__(self, table: str, column: str | None, message: str) -> None:
        self.table = table
        self.column = column
        where = f"{table}.{column}" if column else table
        super().__init__(where, message)


class StoreWriteError(StorageError):
    """Writing, fsyncing or renaming a store file failed (disk full, permissions).

    Files already published are untouched and the rows are kept in memory for the next flush
    (within the store's buffer bound). ``errno`` is the OS error number when there is one.
    """

    def __init__(self, path: str, message: str, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(path, message)


class SchemaError(FatalError):
    """A table schema file in ``schemas/`` is broken: ``file`` is the file, ``key`` the entry."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}")
