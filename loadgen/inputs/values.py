"""One tensor of one sample from what a user wrote: a JSON value, an array, raw bytes, lines.

perf_analyzer's JSON gives an input as a (flat or nested) list, as ``{"content": LIST,
"shape": [...]}``, as ``{"b64": "...", "shape": [...]}`` or as ``{"content": {"b64": "..."},
"shape": [...]}``. Anything else is refused here in one line naming the entry and the
input: a malformed file must never reach the server as a load of failing requests, nor
reach the user as a Python message.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from loadgen.errors import ConfigError
from loadgen.inputs.specs import NUMPY, InputSpec, Strings, Value

_OBJECT_KEYS = ("content", "b64", "shape")


def kind_of(value: object) -> str:
    """A JSON value's type as a user calls it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def decode(value: Any, spec: InputSpec, where: str) -> Value:
    """One input of a JSON data entry (``where``: the file and the entry, for errors)."""
    given: tuple[int, ...] | None = None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in _OBJECT_KEYS]
        if unknown:
            raise ConfigError(
                f"{where}: {spec.label} has unknown key(s) {', '.join(map(repr, unknown))}; "
                'expected "content" or "b64", and "shape"'
            )
        if "content" in value and "b64" in value:
            raise ConfigError(f'{where}: {spec.label} gives both "content" and "b64": give one')
        if "shape" in value:
            given = _shape(value["shape"], spec, where)
        if "b64" in value:
            return from_raw(_b64(value["b64"], spec, where), spec, given, where, "b64 data")
        if "content" not in value:
            raise ConfigError(f'{where}: {spec.label} needs "content" or "b64" beside "shape"')
        value = value["content"]
        if isinstance(value, dict):
            if list(value) != ["b64"]:
                raise ConfigError(
                    f'{where}: "content" of {spec.label} must be a list or {{"b64": "..."}}, '
                    f"got an object with key(s) {', '.join(map(repr, value))}"
                )
            return from_raw(_b64(value["b64"], spec, where), spec, given, where, "b64 data")
        if not isinstance(value, list):
            raise ConfigError(
                f'{where}: "content" of {spec.label} must be a list or {{"b64": "..."}}, got {kind_of(value)}'
            )
    elif not isinstance(value, list):
        raise ConfigError(
            f'{where}: {spec.label} needs a list, or an object with "content" or "b64", got {kind_of(value)}'
        )
    return from_list(value, spec, given, where)


def _shape(raw: Any, spec: InputSpec, where: str) -> tuple[int, ...]:
    """A ``"shape"``: sizes without the batch dimension that the model's dims accept."""
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw
    ):
        shown = kind_of(raw) if not isinstance(raw, list) else repr(raw)[:40]
        raise ConfigError(f'{where}: "shape" of {spec.label} must be a list of sizes >= 0, got {shown}')
    shape = tuple(raw)
    if not spec.fits(shape):
        hint = ""
        if len(shape) == len(spec.model_dims) + 1 and spec.fits(shape[1:]):
            hint = " (a data file's shapes leave out the batch dimension)"
        raise ConfigError(
            f'{where}: "shape" {list(shape)} of {spec.label} does not fit the model\'s '
            f"{spec.describe_model()}{hint}"
        )
    return shape


def _b64(raw: Any, spec: InputSpec, where: str) -> bytes:
    if not isinstance(raw, str):
        raise ConfigError(f'{where}: "b64" of {spec.label} must be a string, got {kind_of(raw)}')
    try:
        return base64.b64decode("".join(raw.split()), validate=True)
    except binascii.Error as exc:
        raise ConfigError(f'{where}: "b64" of {spec.label} is not valid base64 ({exc})') from None


def _settle(
    spec: InputSpec, given: tuple[int, ...] | None, natural: tuple[int, ...] | None, count: int, where: str
) -> tuple[int, ...]:
    """The sample's shape: the entry's ``"shape"``, else ``--shape``/the model's fixed dims, else the
    nested list's own shape, else (one variable dimension) as many as there are values."""
    if given is not None:
        return given
    if all(d >= 0 for d in spec.shape):
        return spec.shape
    if natural is not None and spec.fits(natural):
        return natural
    if len(spec.shape) == 1:
        return (count,)
    option = f" or its size with --shape {spec.name}:..." if spec.role == "input" else ""
    raise ConfigError(
        f'{where}: {spec.label} has variable dimensions ({spec.describe()}): give its "shape"{option}'
    )


def length_prefixed(raw: bytes, spec: InputSpec, where: str) -> list[bytes]:
    """A serialized BYTES tensor: each element after its 4-byte little-endian length."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        if offset + 4 > len(raw) or offset + 4 + size > len(raw):
            raise ConfigError(
                f"{where}: b64 data for BYTES {spec.label} is not length-prefixed "
                f"(a 4-byte little-endian length before each element): element {len(elements)} "
                f"runs past the end"
            )
        elements.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return elements


def from_raw(raw: bytes, spec: InputSpec, given: tuple[int, ...] | None, where: str, source: str) -> Value:
    """Raw tensor bytes: little-endian row-major values, or a serialized BYTES tensor."""
    if spec.datatype == "BYTES":
        return from_list(length_prefixed(raw, spec, where), spec, given, where)
    itemsize = spec.itemsize()
    shape = _settle(spec, given, None, len(raw) // itemsize, where)
    if len(raw) != math.prod(shape) * itemsize:
        raise ConfigError(
            f"{where}: {source} for {spec.label} has {len(raw)} bytes, "
            f"{spec.datatype} {list(shape)} needs {math.prod(shape) * itemsize}"
        )
    if spec.datatype == "BF16":  # widen to FP32 (exactly), narrowed again when sent
        return (np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4").reshape(shape)
    return np.frombuffer(raw, np.dtype(NUMPY[spec.datatype]).newbyteorder("<")).reshape(shape)


def from_list(value: Any, spec: InputSpec, given: tuple[int, ...] | None, where: str) -> Value:
    """A (nested) list or an array: strings for BYTES inputs, numbers of the input's type otherwise."""
    if spec.datatype == "BYTES":
        array = np.asarray(value, dtype=object)
        flat = array.ravel().tolist()
        for element in flat:
            if not isinstance(element, str | bytes):
                raise ConfigError(
                    f"{where}: {spec.label} is BYTES: its values must be strings "
                    f"(in a regular nested list), found {kind_of(element)}"
                )
        try:
            elements = tuple(e.encode() if isinstance(e, str) else bytes(e) for e in flat)
        except UnicodeEncodeError as exc:  # JSON's "\ud800": a lone surrogate is no UTF-8
            raise ConfigError(
                f"{where}: {spec.label} has a string that is not valid Unicode ({exc.reason})"
            ) from None
        shape = _settle(spec, given, tuple(array.shape), len(elements), where)
        if len(elements) != math.prod(shape):
            raise ConfigError(
                f"{where}: {len(elements)} strings for {spec.label}, "
                f"which needs {math.prod(shape)} ({spec.datatype} {list(shape)})"
            )
        return Strings(elements, shape)
    try:
        array = np.asarray(value)
    except ValueError:
        raise ConfigError(
            f"{where}: data for {spec.label} is not a regular nested list (its rows differ in length)"
        ) from None
    converted = _converted(array, spec, where)
    shape = _settle(spec, given, tuple(array.shape), array.size, where)
    if array.size != math.prod(shape):
        raise ConfigError(
            f"{where}: {array.size} values for {spec.label}, which needs "
            f"{math.prod(shape)} ({spec.datatype} {list(shape)})"
        )
    return converted.reshape(shape)


def _converted(array: npt.NDArray[Any], spec: InputSpec, where: str) -> npt.NDArray[Any]:
    """The values as the input's type, refused where that would change them (strings, 1.5 as an
    integer, 300 as INT8, 2 as BOOL) rather than sent silently wrong."""
    target = np.dtype(NUMPY[spec.datatype])
    kind = array.dtype.kind
    problem = ""
    if array.size == 0 or (kind == target.kind == "b"):
        pass
    elif kind in "US":
        problem = "strings"
    elif kind not in "biuf":
        problem = "values that are not numbers"
    elif target.kind in "biu":
        if kind == "b" and target.kind != "b":
            problem = "true/false"
        elif kind == "f" and not (np.all(np.isfinite(array)) and np.all(array == np.round(array))):
            problem = "numbers that are not whole"
        else:
            info = np.iinfo(target) if target.kind != "b" else None  # type: ignore[type-var]
            low, high = (0, 1) if info is None else (int(info.min), int(info.max))
            if kind != "b" and (int(array.min()) < low or int(array.max()) > high):
                problem = f"numbers outside [{low}, {high}]"
    elif kind == "b":
        problem = "true/false"
    if problem:
        raise ConfigError(f"{where}: data for {spec.label} is not {spec.datatype}: found {problem}")
    with np.errstate(over="ignore"):  # FP16 overflows to inf, as the user's framework would
        return array.astype(target)
