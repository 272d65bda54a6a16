"""msgpack with hard limits, and zstd with a bounded output: the two byte-level codecs of the wire format.

`unpack` is the only way bytes from the network become Python values in this package. It accepts exactly
the msgpack subset the schemas use — nil, bool, integers, UTF-8 str, bin, arrays and maps with str/bytes
keys — and refuses floats (no NaN, no rounding differences between implementations), ext types (including
the timestamp ext), duplicate map keys (two parsers could pick different values), trailing bytes, and
anything over the size, depth, container-length or object-count limits. Arrays decode to tuples, so decoded
values can sit inside frozen dataclasses as they are.

The object budget is what bounds memory: a byte limit alone does not, since one input byte (0x80, an empty
map) becomes a 64-byte dict — 520 KB of them peaked at 36 MiB, all before any signature was checked. Every
array and map is counted as msgpack finishes it (itself plus its items, map keys included), so decoding stops
within one container of the budget.

`decompress` only accepts zstd frames that declare their content size, and checks that size against the
caller's limit *before* allocating: a 40-byte decompression bomb is refused without inflating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import zstandard

from protocols.errors import DecodeError, LimitError, SchemaError

__all__ = ["DEFAULT_LIMITS", "Limits", "compress", "decompress", "pack", "unpack"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# The decoder's window bounds its working memory whatever a frame asks for (zstd's own default is 128 MiB).
_ZSTD_MAX_WINDOW = 1 << 23


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one decode. The defaults suit any single message of the protocol; gossip uses smaller ones.

    max_bytes: encoded input; max_depth: nesting of arrays/maps (the top level is depth 1);
    max_container: items in one array or pairs in one map; max_objects: decoded values in all (a response
    chunk of 4096 token ids and logprobs has about 8,200); max_decompressed:
    output of one zstd body.
    """

    max_bytes: int = 2 << 20
    max_depth: int = 12
    max_container: int = 8192
    max_objects: int = 1 << 15
    max_decompressed: int = 4 << 20

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_container", "max_objects", "max_decompressed"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise SchemaError(f"Limits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()


def pack(obj: object) -> bytes:
    """Encode `obj` as msgpack (str as str, bytes as bin). Raises SchemaError for what msgpack cannot hold."""
    try:
        return msgpack.packb(obj, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SchemaError(f"cannot encode value: {exc}") from exc


class _ObjectBudget:
    """The msgpack hooks of one decode: each finished array or map spends 1 + its items (+ keys)."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def _spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise LimitError(f"more than {self.limit} decoded values")

    def array(self, items: tuple[object, ...]) -> tuple[object, ...]:
        self._spend(1 + len(items))
        return items

    def map(self, pairs: list[tuple[object, object]]) -> dict[object, object]:
        self._spend(1 + 2 * len(pairs))
        result = dict(pairs)
        if len(result) != len(pairs):
            raise DecodeError("duplicate key in map")
        return result


def _refuse_ext(code: int, data: bytes) -> object:
    raise DecodeError(f"msgpack ext type {code} is not part of this protocol")


_SCALAR_TYPES = frozenset({str, bytes, int, bool, type(None)})


def _check_shape(value: object, limits: Limits) -> None:
    # Iterative, so a hostile nesting depth can never reach Python's recursion limit; scalars are checked
    # where they sit, containers go on the stack (this walk is on every decode, so it is kept lean).
    if type(value) in _SCALAR_TYPES:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is not tuple and kind is not dict:
            raise DecodeError(f"msgpack value of type {kind.__name__} is not part of this protocol")
        if depth > limits.max_depth:
            raise LimitError(f"nesting deeper than {limits.max_depth}")
        for child in item if kind is tuple else item.values():
            if type(child) not in _SCALAR_TYPES:
                stack.append((child, depth + 1))


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode exactly one msgpack value from `data`, enforcing `limits`.

    Raises LimitError (over a limit) or DecodeError (anything else wrong); nothing else.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise LimitError(f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    budget = _ObjectBudget(limits.max_objects)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            list_hook=budget.array,
            object_pairs_hook=budget.map,
            ext_hook=_refuse_ext,
            max_array_len=limits.max_container,
            max_map_len=limits.max_container,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except (ValueError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}: {exc}") from exc
    _check_shape(value, limits)
    return value


def compress(data: bytes, level: int = 3) -> bytes:
    """One zstd frame holding `data`, with its content size in the header (which `decompress` requires)."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)


def decompress(data: bytes, max_size: int) -> bytes:
    """Inflate exactly one zstd frame of at most `max_size` output bytes; nothing may follow it.

    Raises LimitError when the declared size is over `max_size`, DecodeError for anything malformed.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.startswith(_ZSTD_MAGIC):
        raise DecodeError("not a zstd frame")
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"bad zstd frame header: {exc}") from exc
    if declared < 0:
        raise DecodeError("zstd frame does not declare its content size")
    if declared > max_size:
        raise LimitError(f"zstd frame declares {declared} bytes, over the limit of {max_size}")
    try:
        out = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).decompress(
            data, max_output_size=max_size, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise DecodeError(f"bad zstd frame: {exc}") from exc
    if len(out) != declared:
        raise DecodeError("zstd frame content does not match its declared size")
    return out
