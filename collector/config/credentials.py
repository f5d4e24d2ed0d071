"""BTSE API credentials: read from the environment or a ``KEY=value`` file, never the YAML.

The ``otc.credentials`` section only names where they come from (environment variables, a
file, or systemd's ``$CREDENTIALS_DIRECTORY/btse``); :func:`resolve_credentials` reads them and
raises :class:`~collector.errors.CredentialsError` when one is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from collector.config.model import CredentialsConfig
from collector.errors import CredentialsError

CREDENTIALS_NAME = "btse"  # systemd: LoadCredential=btse:/etc/btse-collector/credentials


@dataclass(frozen=True)
class Credentials:
    """A BTSE API key and secret. ``repr`` and ``str`` never show the secret."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Credentials(api_key={mask(self.api_key)}, api_secret=***, source={self.source!r})"

    __str__ = __repr__


def mask(value: str) -> str:
    """Show at most the first 4 characters of a key: ``abcd…`` (``***`` if shorter than 12)."""
    return f"{value[:4]}…" if len(value) >= 12 else "***"


def _read_credentials_file(path: Path, cfg: CredentialsConfig) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise CredentialsError(f"{path}:{n}: expected NAME=value (value not shown)")
        name, _, value = stripped.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export ") :].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def resolve_credentials(
    cfg: CredentialsConfig, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The API key and secret, from the first source that has both.

    Order: the environment variables ``cfg.api_key_env`` / ``cfg.api_secret_env``; the file
    ``cfg.file``; ``$CREDENTIALS_DIRECTORY/btse`` (systemd ``LoadCredential=btse:...``). Files
    hold ``NAME=value`` lines with the same names as the environment variables.
    """
    env = os.environ if environ is None else environ
    key, secret = env.get(cfg.api_key_env, ""), env.get(cfg.api_secret_env, "")
    tried = [f"environment variables {cfg.api_key_env}/{cfg.api_secret_env}"]
    if key and secret:
        return Credentials(key, secret, "environment")
    files: list[Path] = []
    if cfg.file is not None:
        files.append(cfg.file)
    if env.get("CREDENTIALS_DIRECTORY"):
        files.append(Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIALS_NAME)
    for path in files:
        if path == cfg.file or path.exists():
            values = _read_credentials_file(path, cfg)
            k, s = values.get(cfg.api_key_env, ""), values.get(cfg.api_secret_env, "")
            if k and s:
                return Credentials(k, s, str(path))
            missing = [n for n, v in ((cfg.api_key_env, k), (cfg.api_secret_env, s)) if not v]
            raise CredentialsError(f"credentials file {path} has no {' or '.join(missing)}")
        tried.append(str(path))
    raise CredentialsError(
        "OTC quotes need BTSE API credentials, none found (tried " + ", ".join(tried) + "); "
        "see deploy/credentials.example"
    )
