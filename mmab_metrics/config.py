"""The server configuration: its keys, their types and rules, and its file.

Every leaf of `GET /api/v1/config` is declared once in `KEYS` with its type,
default and bounds. Values are held by dotted path in a flat mapping:
durations as int nanoseconds, metric levels as `(interval, retention)`
pairs, everything else as its JSON value. Three ways of changing it share the
same rules: `PUT /api/v1/configKV` (every value a string), the typed partial
updates of `ckptConfig` and `log/config`, and loading `config.json`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mmab_metrics.durations import (
    SECOND,
    DurationError,
    format_duration,
    parse_duration,
)

_INT64_MAX = (1 << 63) - 1
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_LOG_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", re.ASCII)
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ConfigError(ValueError):
    """An invalid key or value; `key` names the dotted path concerned."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Key:
    """One configuration leaf: its dotted path, type, default and bounds.

    `kind` is one of `duration`, `bool`, `int`, `enum`, `string`, `list`,
    `map` and `levels`. `minimum` and `maximum` bound ints and durations (in
    nanoseconds). `restart` marks keys that take effect at the next start.
    """

    path: str
    kind: str
    default: Any
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    read_only: bool = False
    restart: bool = False


def _duration(path: str, default: str, minimum: int = 0, **kw: Any) -> Key:
    return Key(path, "duration", parse_duration(default), minimum=minimum, **kw)


def _int(
    path: str, default: int, minimum: int = 0, maximum: int = 1 << 31, **kw: Any
) -> Key:
    return Key(path, "int", default, minimum=minimum, maximum=maximum, **kw)


DEFAULT_LEVELS = (
    (parse_duration("1m"), parse_duration("168h")),
    (parse_duration("30m"), parse_duration("2160h")),
    (parse_duration("24h"), parse_duration("18000h")),
)

# Durations that schedule work must be at least this long.
_MIN_INTERVAL = SECOND

# The order here is the order of the document: the spec's sample first, then
# the keys this server adds, each in the section it belongs to.
KEYS: tuple[Key, ...] = (
    Key("addr", "string", "https://0.0.0.0:8081", restart=True),
    Key("id", "string", "", read_only=True),
    Key("staticFolder", "string", "mmabWeb", read_only=True),
    Key("security.certFile", "string", "", restart=True),
    Key("security.keyFile", "string", "", restart=True),
    Key("security.cognito.enabled", "bool", False),
    Key("security.cognito.userPoolID", "string", ""),
    Key("security.cognito.identityPoolID", "string", ""),
    Key("security.cognito.clientID", "string", ""),
    Key("security.cognito.adminGroups", "list", ["admin"]),
    Key("security.cognito.jwksURL", "string", ""),
    _int("security.limits.maxBodyMB", 1, minimum=1, maximum=1024),
    _int("security.limits.maxIngestBodyMB", 64, minimum=1, maximum=4096),
    _int("security.limits.maxPoints", 1_000_000, minimum=1, maximum=100_000_000),
    _int("security.limits.maxInFlight", 256, minimum=1, maximum=100_000),
    Key("ckpt.ckptMode", "enum", "iterative", choices=("iterative", "none")),
    Key("ckpt.ckptImagePath", "string", "/mmc-checkpoint"),
    _duration("ckpt.ckptInterval", "1h", minimum=_MIN_INTERVAL),
    Key("ckpt.ckptFiles", "list", []),
    Key("ckpt.IRMapScanPaths", "list", []),
    Key("ckpt.ckptOnSigTerm", "bool", False),
    Key("ckpt.diagnosisMode", "bool", True),
    Key("ckpt.rootFSDiff", "bool", False),
    Key("ckpt.cloudWatchMode", "bool", False),
    Key("ckpt.tcpClose", "bool", False),
    _duration("node.heartbeat", "30s", minimum=_MIN_INTERVAL),
    _duration("node.ttl", "5m"),
    _int("node.maxPerLogSizeMB", 2, minimum=1, maximum=1024),
    _int("node.maxNodeLogTotalMB", 1024, minimum=1, maximum=1 << 20),
    _duration("node.cleanLogInterval", "12h", minimum=_MIN_INTERVAL),
    Key("job.ebsPerJob", "bool", True),
    Key("job.customTags", "map", {}),
    Key("job.ebsMountPath", "string", "/mnt/mmab"),
    Key(
        "job.diskType",
        "enum",
        "gp3",
        choices=("gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"),
    ),
    _int("job.diskSizeGB", 100, maximum=65_536),
    _int("job.diskThroughputMB", 125, maximum=100_000),
    _duration("job.storCleanIntvl", "24h", minimum=_MIN_INTERVAL),
    Key("job.retentionPolicy", "enum", "time", choices=("time", "memory")),
    _duration("job.retentionInterval", "1h", minimum=_MIN_INTERVAL),
    _duration("job.successTTL", "72h"),
    _duration("job.failureTTL", "168h"),
    Key("log.level", "enum", "info", choices=("debug", "info", "warn", "error")),
    _int("log.maxSizeMB", 10, minimum=1, maximum=1 << 20),
    _int("log.maxBackups", 10, maximum=1_000_000),
    Key("log.fileName", "string", "mmab"),
    Key("metrics.levels", "levels", DEFAULT_LEVELS, restart=True),
    _duration("metrics.rawRetention", "168h"),
    _int("storage.memoryLimitMB", 2048, minimum=64, maximum=1 << 24),
)

KEY_BY_PATH: dict[str, Key] = {key.path: key for key in KEYS}
_SECTIONS = frozenset(
    path.rsplit(".", 1)[0] for path in KEY_BY_PATH if "." in path
) | frozenset(path.split(".", 1)[0] for path in KEY_BY_PATH if "." in path)


# ---------------------------------------------------------------- parsing --


def _parse_go_bool(key: Key, text: str) -> bool:
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ConfigError(
        key.path,
        f"invalid value {text!r} for `{key.path}`: expected a boolean "
        "(true, false, 1, 0, t, f, TRUE, FALSE, True, False)",
    )


def _int_range(key: Key) -> tuple[int, int]:
    return key.minimum or 0, key.maximum or _INT64_MAX


def _parse_int_text(key: Key, text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise ConfigError(
            key.path,
            f"invalid value {text!r} for `{key.path}`: expected a whole number "
            "of decimal digits",
        )
    digits = text.lstrip("0") or "0"
    # Every bound fits in 19 digits. int() raises ValueError for a string of
    # more than 4300 digits, the default limit of Python 3.11.
    if len(digits) > 19:
        low, high = _int_range(key)
        raise ConfigError(
            key.path,
            f"invalid value for `{key.path}`: a number of {len(digits)} digits is "
            f"out of range; it must be between {low} and {high}",
        )
    return int(digits)


def _parse_duration_text(key: Key, text: str) -> int:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise ConfigError(
            key.path,
            f"invalid value {text!r} for `{key.path}`: {exc}; expected a Go "
            "duration such as 30s, 5m or 1h30m",
        ) from None


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_map_text(key: Key, text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        name, sep, value = pair.partition(":")
        name = name.strip()
        if not sep:
            raise ConfigError(
                key.path,
                f"invalid value {text!r} for `{key.path}`: entry {pair!r} has no "
                "`:`; expected key:value pairs separated by commas",
            )
        if not name:
            raise ConfigError(
                key.path,
                f"invalid value {text!r} for `{key.path}`: empty key in {pair!r}",
            )
        if name in result:
            raise ConfigError(
                key.path,
                f"invalid value {text!r} for `{key.path}`: duplicate key {name!r}",
            )
        result[name] = value.strip()
    return result


def _parse_levels_text(key: Key, text: str) -> tuple[tuple[int, int], ...]:
    levels = []
    for item in _split_list(text):
        interval, sep, retention = item.partition(":")
        if not sep:
            raise ConfigError(
                key.path,
                f"invalid value {text!r} for `{key.path}`: entry {item!r} is not "
                "interval:retention, e.g. 1m:168h",
            )
        levels.append(
            (_parse_duration_text(key, interval), _parse_duration_text(key, retention))
        )
    return tuple(levels)


def parse_text(key: Key, text: str) -> Any:
    """Parse the string form of a value, as `configKV` sends it."""
    if key.kind == "duration":
        return _parse_duration_text(key, text)
    if key.kind == "bool":
        return _parse_go_bool(key, text)
    if key.kind == "int":
        return _parse_int_text(key, text)
    if key.kind == "list":
        return _split_list(text)
    if key.kind == "map":
        return _parse_map_text(key, text)
    if key.kind == "levels":
        return _parse_levels_text(key, text)
    return text  # enum and string; `check_value` validates them


def _type_error(key: Key, value: Any, expected: str) -> ConfigError:
    shown = json.dumps(value) if _is_json(value) else repr(value)
    return ConfigError(
        key.path, f"invalid value {shown} for `{key.path}`: expected {expected}"
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_typed(key: Key, value: Any) -> Any:
    """Parse a typed JSON value, as `config.json` and the typed updates hold it."""
    if key.kind == "duration":
        if not isinstance(value, str):
            raise _type_error(key, value, 'a Go duration string such as "5m"')
        return _parse_duration_text(key, value)
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(key, value, "true or false")
        return value
    if key.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(key, value, "a whole number")
        return value
    if key.kind in ("enum", "string"):
        if not isinstance(value, str):
            raise _type_error(key, value, "a string")
        return value
    if key.kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(key, value, "a list of strings")
        return list(value)
    if key.kind == "map":
        if not isinstance(value, dict) or not all(
            isinstance(v, str) for v in value.values()
        ):
            raise _type_error(key, value, "an object of string values")
        if any(not name for name in value):
            raise _type_error(key, value, "an object without empty keys")
        return dict(value)
    if key.kind == "levels":
        if not isinstance(value, list) or not all(
            isinstance(v, dict)
            and set(v) == {"interval", "retention"}
            and all(isinstance(x, str) for x in v.values())
            for v in value
        ):
            raise _type_error(
                key, value, 'a list of {"interval": "1m", "retention": "168h"}'
            )
        return tuple(
            (
                _parse_duration_text(key, v["interval"]),
                _parse_duration_text(key, v["retention"]),
            )
            for v in value
        )
    raise AssertionError(f"unknown kind {key.kind}")


# ------------------------------------------------------------- validation --


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        # Both raise ValueError: urlsplit for a malformed IPv6 host such as
        # `[::1`, and `port` for a port that is not a number from 0 to 65535.
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_url(key: Key, text: str, *, empty_ok: bool) -> None:
    if not text and empty_ok:
        return
    if not _is_http_url(text):
        raise ConfigError(
            key.path,
            f"invalid value {text!r} for `{key.path}`: expected an http:// or "
            "https:// URL with a host",
        )


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_value(key: Key, value: Any) -> None:
    """Check the rules of one key that do not depend on other keys."""
    if key.kind == "duration":
        if value < 0:
            raise ConfigError(
                key.path,
                f"invalid value {format_duration(value)!r} for `{key.path}`: "
                "negative durations are not allowed",
            )
        if key.minimum and value < key.minimum:
            raise ConfigError(
                key.path,
                f"invalid value {format_duration(value)!r} for `{key.path}`: must "
                f"be at least {format_duration(key.minimum)}",
            )
    elif key.kind == "int":
        low, high = _int_range(key)
        if not low <= value <= high:
            raise ConfigError(
                key.path,
                f"invalid value {value} for `{key.path}`: must be between {low} "
                f"and {high}",
            )
    elif key.kind == "enum":
        if value not in key.choices:
            raise ConfigError(
                key.path,
                f"invalid value {value!r} for `{key.path}`: expected one of "
                + ", ".join(key.choices),
            )
    elif key.kind == "levels":
        _check_levels(key, value)

    if key.path == "log.fileName" and not _LOG_FILE_NAME.fullmatch(value):
        raise ConfigError(
            key.path,
            f"invalid value {value!r} for `log.fileName`: expected 1 to 64 letters, "
            "digits, `-` or `_`, starting with a letter or digit",
        )
    if key.path == "addr":
        _check_url(key, value, empty_ok=False)
    if key.path == "security.cognito.jwksURL":
        _check_url(key, value, empty_ok=True)
        parts = urlsplit(value)
        if (
            value
            and parts.scheme == "http"
            and not _is_loopback_host(parts.hostname or "")
        ):
            raise ConfigError(
                key.path,
                f"invalid value {value!r} for `{key.path}`: http:// is allowed only "
                "for a loopback host; use https://",
            )


def _check_levels(key: Key, levels: tuple[tuple[int, int], ...]) -> None:
    if not 1 <= len(levels) <= 8:
        raise ConfigError(key.path, f"`{key.path}` must have between 1 and 8 levels")
    previous = None
    for interval, retention in levels:
        shown = f"{format_duration(interval)}:{format_duration(retention)}"
        if interval < SECOND or interval % SECOND:
            raise ConfigError(
                key.path,
                f"invalid level {shown!r} in `{key.path}`: the interval must be a "
                "whole number of seconds, at least 1s",
            )
        if retention < interval:
            raise ConfigError(
                key.path,
                f"invalid level {shown!r} in `{key.path}`: the retention must be "
                "at least the interval",
            )
        if previous is not None and (interval <= previous or interval % previous):
            raise ConfigError(
                key.path,
                f"invalid level {shown!r} in `{key.path}`: each interval must be a "
                f"multiple of the previous one ({format_duration(previous)}), "
                "in ascending order",
            )
        previous = interval


def check_document(values: Mapping[str, Any]) -> None:
    """Check the rules that span several keys."""
    levels = values["metrics.levels"]
    raw = values["metrics.rawRetention"]
    if raw < levels[0][1]:
        raise ConfigError(
            "metrics.rawRetention",
            f"invalid value {format_duration(raw)!r} for `metrics.rawRetention`: must "
            f"be at least the finest level's retention ({format_duration(levels[0][1])})",
        )


# ---------------------------------------------------------- the document --


def render_value(key: Key, value: Any) -> Any:
    if key.kind == "duration":
        return format_duration(value)
    if key.kind == "levels":
        return [
            {"interval": format_duration(i), "retention": format_duration(r)}
            for i, r in value
        ]
    if key.kind == "list":
        return list(value)
    if key.kind == "map":
        return dict(value)
    return value


def render(values: Mapping[str, Any]) -> dict[str, Any]:
    """Build the nested JSON document, in the order of `KEYS`."""
    document: dict[str, Any] = {}
    for key in KEYS:
        node = document
        *sections, leaf = key.path.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = render_value(key, values[key.path])
    return document


def flatten(document: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in document.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and path in _SECTIONS:
            yield from flatten(value, path + ".")
        else:
            yield path, value


def defaults(data_dir: Path) -> dict[str, Any]:
    values = {key.path: key.default for key in KEYS}
    values["id"] = str(uuid.uuid4())
    values["security.certFile"] = str(data_dir / "server.crt")
    values["security.keyFile"] = str(data_dir / "server.pem")
    return values


def unknown_key_error(path: str) -> ConfigError:
    if path in _SECTIONS:
        return ConfigError(
            path, f"`{path}` is a section, not a key; set one of its keys by full path"
        )
    return ConfigError(path, f"unknown configuration key `{path}`")


# --------------------------------------------------------------- updates --


@dataclass(frozen=True)
class Change:
    """The result of an accepted update."""

    values: dict[str, Any]
    changed: tuple[str, ...]

    @property
    def restart_required(self) -> tuple[str, ...]:
        return tuple(p for p in self.changed if KEY_BY_PATH[p].restart)


def _apply(current: Mapping[str, Any], updates: Mapping[str, Any]) -> Change:
    values = dict(current)
    for path, value in updates.items():
        key = KEY_BY_PATH[path]
        if key.read_only and value != current[path]:
            raise ConfigError(path, f"`{path}` is read-only")
        check_value(key, value)
        values[path] = value
    check_document(values)
    changed = tuple(p for p in updates if values[p] != current[p])
    return Change(values, changed)


def apply_kv(current: Mapping[str, Any], kv_map: Any) -> Change:
    """Validate and apply a `configKV` map of dotted paths to string values."""
    if not isinstance(kv_map, dict):
        raise ConfigError(
            "kvMap", "missing or invalid `kvMap`: expected an object of key to string"
        )
    updates: dict[str, Any] = {}
    for path, text in kv_map.items():
        key = KEY_BY_PATH.get(path)
        if key is None:
            raise unknown_key_error(path)
        if key.read_only:
            raise ConfigError(path, f"`{path}` is read-only")
        if not isinstance(text, str):
            raise ConfigError(
                path,
                f"invalid value {json.dumps(text)} for `{path}`: configKV values "
                'must be strings, e.g. "500" or "true"',
            )
        updates[path] = parse_text(key, text)
    return _apply(current, updates)


def apply_typed(current: Mapping[str, Any], section: str, body: Any) -> Change:
    """Validate and apply a typed partial update of one section."""
    if not isinstance(body, dict):
        raise ConfigError(
            section, f"invalid body: expected a JSON object of `{section}` keys"
        )
    updates: dict[str, Any] = {}
    for name, value in body.items():
        path = f"{section}.{name}"
        key = KEY_BY_PATH.get(path)
        if key is None:
            raise ConfigError(path, f"unknown `{section}` key `{name}`")
        updates[path] = parse_typed(key, value)
    return _apply(current, updates)


def section(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    return render(values)[name]


# ------------------------------------------------------------ the store --


class ConfigStore:
    """The live configuration and `config.json`, updated one writer at a time.

    Each update validates against the latest values under a lock and writes
    the file before the new values become visible, so concurrent requests
    never undo each other and a crash leaves the old or the new file.
    """

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        self.path = path
        self._values = values
        self._lock = threading.Lock()
        self._listeners: list[Callable[[dict[str, Any], tuple[str, ...]], None]] = []

    @classmethod
    def open(cls, data_dir: Path) -> tuple[ConfigStore, list[str]]:
        """Load `config.json`, or write the defaults on first start.

        Returns the store and warnings about keys of the file that were ignored.
        """
        path = data_dir / "config.json"
        values = defaults(data_dir)
        warnings: list[str] = []
        if path.exists():
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError("config.json", f"cannot read {path}: {exc}") from None
            if not isinstance(document, dict):
                raise ConfigError("config.json", f"{path} does not hold a JSON object")
            for key_path, value in flatten(document):
                key = KEY_BY_PATH.get(key_path)
                if key is None:
                    warnings.append(f"ignored unknown key `{key_path}` in {path}")
                    continue
                try:
                    parsed = parse_typed(key, value)
                    check_value(key, parsed)
                except ConfigError as exc:
                    raise ConfigError(key_path, f"{path}: {exc.message}") from None
                values[key_path] = parsed
            check_document(values)
        store = cls(path, values)
        store._write(values)
        return store, warnings

    @property
    def values(self) -> dict[str, Any]:
        return self._values

    def get(self, path: str) -> Any:
        return self._values[path]

    def document(self) -> dict[str, Any]:
        return render(self._values)

    def subscribe(
        self, listener: Callable[[dict[str, Any], tuple[str, ...]], None]
    ) -> None:
        """Call `listener(values, changed)` after every accepted change."""
        self._listeners.append(listener)

    def update(self, change: Callable[[dict[str, Any]], Change]) -> Change:
        """Apply `change` to the latest values, persist, and publish them."""
        with self._lock:
            result = change(self._values)
            if result.changed:
                self._write(result.values)
                self._values = result.values
        if result.changed:
            for listener in self._listeners:
                listener(result.values, result.changed)
        return result

    def _write(self, values: Mapping[str, Any]) -> None:
        text = json.dumps(render(values), indent=2, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=".config.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
