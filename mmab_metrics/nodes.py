"""Worker nodes: the descriptor an agent posts, and liveness by `node.ttl`."""

from __future__ import annotations

import json
from typing import Any

from mmab_metrics.jobs import ID_PATTERN
from mmab_metrics.timecodec import TimeFormatError, format_time, parse_time


class NodeError(ValueError):
    """An invalid node descriptor; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# The spec's node object, in its order, with the empty form of each field.
_STRINGS = ("hostName", "cloud", "arch", "cpuModel", "cpuVendor")
_INSTANCE_STRINGS = (
    "zone",
    "instanceId",
    "instanceType",
    "region",
    "createTime",
    "payType",
)
_MAX_INT = (1 << 53) - 1

CSV_COLUMNS = (
    "id",
    "hostName",
    "ips",
    "cloud",
    "arch",
    "cores",
    "cpuModel",
    "cpuVendor",
    "memoryInMB",
    "instance.zone",
    "instance.instanceId",
    "instance.instanceType",
    "instance.region",
    "instance.createTime",
    "instance.payType",
    "lastHeartbeat",
    "finishedAt",
)


def _optional(raw: dict[str, Any], name: str, empty: Any) -> Any:
    # Go's encoding/json sends a nil slice or pointer as `null` and reads
    # `null` as "leave the zero value", so null is the field's empty form.
    value = raw.get(name)
    return empty if value is None else value


def _invalid(field: str, value: Any, expected: str) -> NodeError:
    return NodeError(
        field, f"invalid `{field}` {json.dumps(value)}: expected {expected}"
    )


def _string(raw: dict[str, Any], name: str, prefix: str = "") -> str:
    value = _optional(raw, name, "")
    if not isinstance(value, str):
        raise _invalid(prefix + name, value, "a string")
    return value


def _count(raw: dict[str, Any], name: str) -> int:
    value = _optional(raw, name, 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= _MAX_INT
    ):
        raise _invalid(name, value, "a whole number, at least 0")
    return value


def parse_descriptor(raw: Any) -> dict[str, Any]:
    """Validate a posted node descriptor and fill in the empty forms.

    Fields beyond the spec's are kept as sent, after the known ones.
    """
    if not isinstance(raw, dict):
        raise NodeError("body", "invalid body: expected a JSON node descriptor")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not ID_PATTERN.fullmatch(node_id):
        raise _invalid(
            "id",
            node_id,
            "1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    ips = _optional(raw, "ips", [])
    if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
        raise _invalid("ips", ips, "a list of strings")

    descriptor: dict[str, Any] = {"id": node_id, "ips": list(ips)}
    descriptor["hostName"] = _string(raw, "hostName")
    descriptor["cloud"] = _string(raw, "cloud")
    descriptor["arch"] = _string(raw, "arch")
    descriptor["cores"] = _count(raw, "cores")
    descriptor["cpuModel"] = _string(raw, "cpuModel")
    descriptor["cpuVendor"] = _string(raw, "cpuVendor")
    descriptor["memoryInMB"] = _count(raw, "memoryInMB")

    instance_raw = _optional(raw, "instance", {})
    if not isinstance(instance_raw, dict):
        raise _invalid("instance", instance_raw, "an object")
    instance = {
        name: _string(instance_raw, name, "instance.") for name in _INSTANCE_STRINGS
    }
    if instance["createTime"]:
        try:
            created_ns = parse_time(instance["createTime"])
        except TimeFormatError as exc:
            raise NodeError(
                "instance.createTime", f"invalid `instance.createTime`: {exc}"
            ) from None
        instance["createTime"] = format_time(created_ns)
    instance.update({k: v for k, v in instance_raw.items() if k not in instance})
    descriptor["instance"] = instance

    for name, value in raw.items():
        if name == "lastHeartbeat" or name == "finishedAt":
            continue  # the server sets these
        descriptor.setdefault(name, value)
    return descriptor


def finished_at(last_heartbeat_ns: int, left_ns: int | None, ttl_ns: int) -> int:
    """Return the instant a node finished or will finish: when it left, else at TTL."""
    expiry = last_heartbeat_ns + ttl_ns
    if left_ns is not None:
        return min(left_ns, expiry)
    return expiry


def is_live(
    last_heartbeat_ns: int, left_ns: int | None, ttl_ns: int, now_ns: int
) -> bool:
    return now_ns < finished_at(last_heartbeat_ns, left_ns, ttl_ns)
