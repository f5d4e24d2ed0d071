"""A YAML loader that keeps the line of every value, so each problem can name its line.

``parse_yaml(text, file)`` returns plain Python values plus a :class:`LineDoc` that maps a key
path (``("markets", 0, "symbols")``) to its line and records keys given twice.
"""

from __future__ import annotations

from typing import Any

import yaml

from collector.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]


def dotted(path: KeyPath) -> str:
    """``("markets", 0, "symbols")`` -> ``"markets[0].symbols"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class LineDoc:
    """Plain Python values from a YAML file plus the line of every dotted path."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.key_lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int]] = []

    def build(self, loader: yaml.SafeLoader, node: yaml.Node, path: KeyPath) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                child = (*path, key)
                if key in out:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                self.key_lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(loader, value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(loader, n, (*path, i)) for i, n in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def line(self, path: KeyPath) -> int | None:
        while path:
            if path in self.key_lines:
                return self.key_lines[path]
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def parse_yaml(text: str, file: str) -> tuple[Any, LineDoc]:
    doc = LineDoc()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, doc
        return doc.build(loader, node, ()), doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(
            [ConfigProblem(file, line, "(yaml)", f"invalid YAML: {message}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, None, "(yaml)", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
