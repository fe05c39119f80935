"""Reading config.yaml: YAML with line numbers, validation into the typed sections, and every problem
turned into a ConfigIssue (unknown keys get a did-you-mean, duplicate keys are caught)."""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgecam.config.errors import ConfigError, ConfigIssue
from edgecam.config.sections import Config


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None

    def resolve(self, value: str | Path) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        path = Path(value).expanduser()
        if path.is_absolute() or self.path is None:
            return path
        return self.path.parent / path


MAX_CONFIG_BYTES = 256 * 1024  # a real config is a few KiB; beyond this it is not a config


@dataclass(frozen=True)
class FileIssue(ConfigIssue):
    """A problem with the file as a whole (no line to point at)."""

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def read_config_text(path: Path) -> str:
    """The file's text, refusing what is not a small regular file: a FIFO would block the reader (and
    with it a reload and SIGTERM), a link to /dev/zero would fill the memory."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError([FileIssue(name, 0, "", f"cannot read the config file ({exc.strerror})")]) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([FileIssue(name, 0, "", "not a regular file (a FIFO, device or folder?)")])
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                [
                    FileIssue(
                        name, 0, "", f"file is too big ({info.st_size} bytes; at most {MAX_CONFIG_BYTES})"
                    )
                ]
            )
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([FileIssue(name, 0, "", f"cannot read the config file ({exc.strerror})")]) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:  # grew while read
        raise ConfigError([FileIssue(name, 0, "", f"file is too big (at most {MAX_CONFIG_BYTES} bytes)")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [FileIssue(name, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None


def load_config(path: Path | None) -> LoadedConfig:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return LoadedConfig(Config(), None)
    text = read_config_text(path)
    return LoadedConfig(parse_config(text, str(path)), path.resolve())


def parse_config(text: str, filename: str = "config.yaml") -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_alias_bombs(root, filename)  # before anything walks the values with their aliases expanded
        data = yaml.safe_load(text)
    except RecursionError:  # [[[[… thousands deep: the YAML parser itself recurses
        raise ConfigError([FileIssue(filename, 0, "", "nested too deeply to be a config")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [
                ConfigIssue(
                    filename,
                    line,
                    "",
                    f"YAML syntax error: {problem} (check the indentation and colons here or just above)",
                )
            ]
        ) from None
    if data is None:  # empty, only comments, or cut off before its first key: never "all defaults"
        raise ConfigError(
            [FileIssue(filename, 0, "", "file is empty (or only comments); write {} for all defaults")]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue(filename, 1, "", "the config must be a mapping of sections (camera:, detector:, …)")]
        )
    issues = _duplicate_keys(root, filename)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues += [_issue(error, root, filename) for error in exc.errors()]
        config = None
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: i.line))
    assert config is not None
    return config


MAX_CONFIG_VALUES = 100_000  # keys and values with YAML aliases expanded; a real config has a few thousand


def _refuse_alias_bombs(root: yaml.Node | None, filename: str) -> None:
    """A YAML alias (``*name``) repeats the node its anchor names, so a few hundred bytes of aliases to
    aliases stand for billions of values: whatever walks them (validation, dumps, comparisons) would take
    hours. Counted once per node, the expanded size is known in no time; too big, or a loop, is refused,
    naming the top-level key where it happens."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise _Loop
        busy.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        busy.discard(key)
        sizes[key] = total
        return total

    entries = root.value if isinstance(root, yaml.MappingNode) else [(None, root)] if root else []
    total = 0
    for key_node, value_node in entries:
        where = key_node or value_node
        name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
        try:
            total += size(value_node) + (size(key_node) if key_node else 0)
        except _Loop:
            message = "a YAML alias (*name) inside the value its anchor (&name) names: a loop, never a config"
            raise ConfigError([ConfigIssue(filename, where.start_mark.line + 1, name, message)]) from None
        if total > MAX_CONFIG_VALUES:
            message = (
                f"the file holds more than {MAX_CONFIG_VALUES} values"
                + (" once its YAML aliases (*name) are expanded" if total > len(sizes) else "")
                + ", not a config (a real one has a few thousand)"
            )
            raise ConfigError([ConfigIssue(filename, where.start_mark.line + 1, name, message)])


class _Loop(Exception):
    pass


def _duplicate_keys(
    node: yaml.Node | None, filename: str, path: str = "", visited: set[int] | None = None
) -> list[ConfigIssue]:
    """Each node is looked at once: one reached again through an alias has been checked already."""
    visited = set() if visited is None else visited
    if node is None or id(node) in visited:
        return []
    visited.add(id(node))
    issues: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            if key in seen:
                issues.append(
                    ConfigIssue(
                        filename,
                        key_node.start_mark.line + 1,
                        dotted,
                        "duplicate key (the later one would win silently)",
                    )
                )
            seen.add(key)
            issues += _duplicate_keys(value_node, filename, dotted, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            issues += _duplicate_keys(item, filename, f"{path}[{i}]", visited)
    return issues


def _issue(error: Any, root: yaml.Node | None, filename: str) -> ConfigIssue:
    loc = [
        part
        for part in error["loc"]
        if not (isinstance(part, str) and part.startswith(("function-", "list[", "literal[")))
    ]
    message = _message(error, loc)
    # A model-level rule names its own key ("edgetpu_device: …", "max_age_s: …"): attach it to the path.
    if error["type"] == "value_error" and isinstance(error.get("input"), dict):
        key, sep, rest = message.partition(": ")
        if sep and key in error["input"]:  # show the value as written, not as converted
            loc, message = (
                [*loc, key],
                re.sub(r" \(got .*\)$", "", rest) + f" (got {_show(error['input'][key])})",
            )
    return ConfigIssue(filename, _line_of(root, loc), _dotted(loc), message)


def _message(error: Any, loc: list[Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "value_error":
        text = str(error["msg"]).removeprefix("Value error, ")
        shown = _show(value)
        return text if "(got" in text or shown in text or isinstance(value, dict) else f"{text} (got {shown})"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']} (got {_show(value)})"
    readable = {
        "float_parsing": "must be a number", "float_type": "must be a number",
        "int_parsing": "must be a whole number", "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_parsing": "must be true or false", "bool_type": "must be true or false",
        "string_type": "must be text", "list_type": "must be a list",
        "dict_type": "must be a mapping", "model_type": "must be a mapping of keys", "tuple_type": "must be a list",
    }  # fmt: skip
    return f"{readable.get(kind, error['msg'])} (got {_show(value)})"


def _unknown_key(loc: list[Any]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        annotation = (
            model.model_fields.get(part) if isinstance(part, str) and hasattr(model, "model_fields") else None
        )
        model = annotation.annotation if annotation else None
    known = list(model.model_fields) if model is not None and hasattr(model, "model_fields") else []
    guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else (f" (known: {', '.join(known)})" if known else "")
    return f"unknown key{hint}"


def _show(value: Any) -> str:
    return (
        repr(value)
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    )


def _dotted(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: yaml.Node | None, loc: list[Any]) -> int:
    """The line of the deepest node along ``loc`` that exists in the file (1-based)."""
    node, line = root, (root.start_mark.line + 1) if root else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            key_node, node = match
            line = (
                key_node.start_mark.line + 1
                if isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
                else node.start_mark.line + 1
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
