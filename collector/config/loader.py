"""``load_config(path)``: read, check and build the config, or one ConfigError listing every problem.

Also :func:`data_dir_problem`, the check on this machine that ``run`` and ``check-config`` do
after loading (can the collector write its data folder?).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from collector.config import validate
from collector.config.checker import Checker
from collector.config.model import (
    ENVIRONMENTS,
    BookConfig,
    Config,
    ConnectionConfig,
    PipelineConfig,
    StorageConfig,
)
from collector.config.validate import SpecCatalog
from collector.config.yaml_lines import dotted, parse_yaml
from collector.errors import ConfigError, ConfigProblem, SpecError

TOP_LEVEL = tuple(f.name for f in fields(Config) if f.name != "source")


def load_config(
    path: str | os.PathLike[str],
    *,
    catalog: SpecCatalog | None = None,
    load_catalog: Callable[[Path | None], SpecCatalog] | None = None,
) -> Config:
    """Load and check ``path``; raise :class:`ConfigError` with every problem found.

    Products, channels and server names are checked against ``catalog`` (default: built from
    the spec registry in ``specs_dir``; a broken spec directory is reported as a problem).
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem(file, None, "(file)", f"cannot read config: {exc}")]
        ) from None
    data, doc = parse_yaml(text, file)
    ck = Checker(file, doc)
    for dup_path, line in doc.duplicates:
        ck.problems.append(ConfigProblem(file, line, dotted(dup_path), "key given twice"))
    if data is None:
        data = {}
    top = ck.mapping((), data, TOP_LEVEL, required=("data_dir",))

    kwargs: dict[str, Any] = {"source": Path(path)}
    data_dir = ck.path_value(("data_dir",), top["data_dir"]) if "data_dir" in top else None
    environment = "production"
    if "environment" in top:
        environment = (
            ck.choice(("environment",), top["environment"], ENVIRONMENTS, "environment")
            or environment
        )
    kwargs["environment"] = environment
    specs_dir = (
        ck.path_value(("specs_dir",), top["specs_dir"])
        if top.get("specs_dir") is not None
        else None
    )
    kwargs["specs_dir"] = specs_dir

    if catalog is None:
        try:
            catalog = (load_catalog or validate.load_catalog)(specs_dir)
        except SpecError as exc:
            ck.problem(("specs_dir",), f"cannot load the specs: {exc}")
        except OSError as exc:
            ck.problem(("specs_dir",), f"cannot read the specs: {exc}")

    kwargs["endpoints"] = validate.check_endpoints(ck, top.get("endpoints"), catalog)
    markets = validate.check_markets(ck, top.get("markets"), catalog)
    kwargs["markets"] = markets
    kwargs["otc"] = otc = validate.check_otc(ck, top.get("otc"))
    if otc is not None and otc.quotes and catalog is not None and not catalog.has_otc:
        ck.problem(("otc", "quotes"), "the specs in use describe no OTC product")
    for name, cls in (
        ("storage", StorageConfig),
        ("book", BookConfig),
        ("connection", ConnectionConfig),
        ("pipeline", PipelineConfig),
    ):
        kwargs[name] = ck.section((name,), top.get(name), cls)
    kwargs["health"] = validate.check_health(ck, top.get("health"), markets)
    kwargs["logging"] = validate.check_logging(ck, top.get("logging"))
    if data_dir is None:
        data_dir = Path(".")  # reported above as missing; keeps building for more problems
    kwargs["data_dir"] = data_dir
    cfg = Config(**kwargs)
    validate.cross_checks(ck, cfg, bool(top.get("markets")) or bool(cfg.otc and top.get("otc")))
    if ck.problems:
        ck.problems.sort(key=lambda p: (p.line or 0, p.key))
        raise ConfigError(ck.problems)
    return cfg


def data_dir_problem(path: Path) -> str | None:
    """Why the collector could not write ``path`` (or create it), or ``None`` if it can."""
    target = path.resolve()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            return f"{target}: no existing parent directory"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} exists and is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == target:
            return f"{target} is not writable by this user"
        return f"cannot create {target}: {probe} is not writable by this user"
    return None
