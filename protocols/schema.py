"""How message schemas are declared, validated, encoded and decoded.

A schema is a frozen dataclass whose fields are annotated with a `Spec`:

    @message("pool.heartbeat", version=1, open=True)
    class PoolHeartbeat(Message):
        peer_id: Annotated[bytes, Bytes(max_size=64)]
        load: Annotated[int, UInt(32)]

Construction validates every field (like h11's events), so a message object that exists is a valid one,
whether it was built locally or decoded from the network. On the wire a record is a msgpack map from field
name to value; a top-level message is the array `[type, version, fields]`. Rules:

- a missing required field, a wrong type, an out-of-range number or an over-long string is a SchemaError;
- an unknown field is a SchemaError, except in records declared `open=True`, where it is ignored — those are
  the gossiped messages, which newer peers may extend without breaking older ones (a new *required* field,
  or a changed meaning, takes a new version instead);
- `(type, version)` pairs are registered once; decoding an unregistered pair is a SchemaError.

Integers are exact (no floats anywhere on the wire): fractions travel as integers in stated units, e.g.
`decode_tps_milli`. Values of 2**64 and over (token amounts in wei) travel as 32-byte big-endian bin.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from protocols import codec
from protocols.errors import SchemaError

__all__ = [
    "U256",
    "Bool",
    "Bytes",
    "Choice",
    "Maybe",
    "Message",
    "Nested",
    "Record",
    "SInt",
    "Seq",
    "Spec",
    "Text",
    "UInt",
    "decode_message",
    "encode_message",
    "message",
    "message_types",
    "record",
]


class Spec:
    """How one field is checked and put on the wire. Subclasses override the three methods they need."""

    __slots__ = ()
    optional: ClassVar[bool] = False
    # True when the Python value is already its wire value (msgpack packs tuples as arrays), so encoding
    # can skip `to_wire` — the token-chunk path is hot enough for this to matter.
    wire_identity: bool = False

    def check(self, value: Any, path: str) -> Any:
        """Return `value` (normalised, e.g. list to tuple) or raise SchemaError naming `path`."""
        raise NotImplementedError

    def to_wire(self, value: Any) -> Any:
        return value

    def from_wire(self, raw: Any, path: str) -> Any:
        """Turn a decoded msgpack value into the field's Python value; `check` runs afterwards."""
        return raw


def _fail(path: str, expected: str, value: Any) -> typing.NoReturn:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise SchemaError(f"{path}: expected {expected}, got {type(value).__name__} {shown}")


class UInt(Spec):
    """An unsigned integer below 2**bits (bits <= 64), optionally at most `max_value`."""

    __slots__ = ("bits", "max_value")
    wire_identity = True

    def __init__(self, bits: int = 64, *, max_value: int | None = None) -> None:
        assert 1 <= bits <= 64
        self.bits = bits
        self.max_value = (1 << bits) - 1 if max_value is None else max_value

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int or not 0 <= value <= self.max_value:
            _fail(path, f"int in [0, {self.max_value}]", value)
        return value


class SInt(Spec):
    """A signed integer in [-2**(bits-1), 2**(bits-1))."""

    __slots__ = ("bits",)
    wire_identity = True

    def __init__(self, bits: int = 64) -> None:
        assert 2 <= bits <= 64
        self.bits = bits

    def check(self, value: Any, path: str) -> int:
        bound = 1 << (self.bits - 1)
        if type(value) is not int or not -bound <= value < bound:
            _fail(path, f"int in [-2**{self.bits - 1}, 2**{self.bits - 1})", value)
        return value


class U256(Spec):
    """An unsigned 256-bit integer (a Solidity uint256); on the wire, 32 bytes big-endian."""

    __slots__ = ()

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int or not 0 <= value < 1 << 256:
            _fail(path, "int in [0, 2**256)", value)
        return value

    def to_wire(self, value: int) -> bytes:
        return value.to_bytes(32, "big")

    def from_wire(self, raw: Any, path: str) -> int:
        if type(raw) is not bytes or len(raw) != 32:
            _fail(path, "32-byte bin (uint256)", raw)
        return int.from_bytes(raw, "big")


class Bool(Spec):
    __slots__ = ()
    wire_identity = True

    def check(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            _fail(path, "bool", value)
        return value


class Bytes(Spec):
    """Binary data of exactly `size` bytes, or of at most `max_size` bytes."""

    __slots__ = ("max_size", "min_size")
    wire_identity = True

    def __init__(self, size: int | None = None, *, max_size: int | None = None, min_size: int = 0) -> None:
        if size is not None:
            assert max_size is None
            self.min_size = self.max_size = size
        else:
            assert max_size is not None
            self.min_size, self.max_size = min_size, max_size

    def check(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes or not self.min_size <= len(value) <= self.max_size:
            if self.min_size == self.max_size:
                _fail(path, f"{self.max_size} bytes", value)
            _fail(path, f"{self.min_size} to {self.max_size} bytes", value)
        return value


class Text(Spec):
    """A UTF-8 string of at most `max_bytes` encoded bytes (and at least `min_bytes`)."""

    __slots__ = ("max_bytes", "min_bytes")
    wire_identity = True

    def __init__(self, max_bytes: int, *, min_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes

    def check(self, value: Any, path: str) -> str:
        if type(value) is not str:
            _fail(path, "str", value)
        if value.isascii():
            size = len(value)  # one byte a character: no need to encode it
        else:
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError:
                _fail(path, "str encodable as UTF-8", value)
        if not self.min_bytes <= size <= self.max_bytes:
            _fail(path, f"str of {self.min_bytes} to {self.max_bytes} UTF-8 bytes", value)
        return value


class Choice(Spec):
    """One of a fixed set of short strings (an enum that reads well in a hex dump)."""

    __slots__ = ("values",)
    wire_identity = True

    def __init__(self, *values: str) -> None:
        self.values = frozenset(values)

    def check(self, value: Any, path: str) -> str:
        if type(value) is not str or value not in self.values:
            _fail(path, f"one of {sorted(self.values)}", value)
        return value


class Seq(Spec):
    """A tuple of at most `max_len` items of one spec (a list is accepted and becomes a tuple)."""

    __slots__ = ("item", "max_len", "min_len", "wire_identity")

    def __init__(self, item: Spec, *, max_len: int, min_len: int = 0) -> None:
        self.item = item
        self.max_len = max_len
        self.min_len = min_len
        self.wire_identity = item.wire_identity

    def check(self, value: Any, path: str) -> tuple[Any, ...]:
        if type(value) not in (tuple, list) or not self.min_len <= len(value) <= self.max_len:
            _fail(path, f"sequence of {self.min_len} to {self.max_len} items", value)
        check = self.item.check
        try:
            if self.wire_identity and type(value) is tuple:  # nothing to normalise: keep the tuple
                for v in value:
                    check(v, path)
                return value
            return tuple([check(v, path) for v in value])
        except SchemaError:  # say which item: worth formatting a path for each only when one is wrong
            return tuple([check(v, f"{path}[{i}]") for i, v in enumerate(value)])

    def to_wire(self, value: tuple[Any, ...]) -> list[Any]:
        to_wire = self.item.to_wire
        return [to_wire(v) for v in value]

    def from_wire(self, raw: Any, path: str) -> tuple[Any, ...]:
        if type(raw) is not tuple:
            _fail(path, "array", raw)
        if len(raw) > self.max_len:
            _fail(path, f"at most {self.max_len} items", raw)
        if self.wire_identity:
            return raw  # items are checked when the record is constructed
        from_wire = self.item.from_wire
        return tuple([from_wire(v, f"{path}[{i}]") for i, v in enumerate(raw)])


class Nested(Spec):
    """A record (see `record`) inside another."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Record]) -> None:
        self.cls = cls

    def check(self, value: Any, path: str) -> Record:
        if type(value) is not self.cls:
            _fail(path, self.cls.__name__, value)
        return value

    def to_wire(self, value: Record) -> dict[str, Any]:
        return value.to_wire()

    def from_wire(self, raw: Any, path: str) -> Record:
        return self.cls.from_wire(raw, path)


class Maybe(Spec):
    """An optional field: None in Python, absent on the wire (so encodings stay canonical)."""

    __slots__ = ("inner",)
    optional = True

    def __init__(self, inner: Spec) -> None:
        self.inner = inner

    def check(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)

    def to_wire(self, value: Any) -> Any:
        return self.inner.to_wire(value)

    def from_wire(self, raw: Any, path: str) -> Any:
        if raw is None:
            _fail(path, "a value (absent, not nil, when unset)", raw)
        return self.inner.from_wire(raw, path)


class Record:
    """Base of schema records; subclasses are made with `record` or `message`, never by hand."""

    __slots__ = ()
    __specs__: ClassVar[dict[str, Spec]] = {}
    __wire_plan__: ClassVar[tuple[tuple[str, Spec, bool], ...]] = ()
    __open__: ClassVar[bool] = False

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field, spec in self.__specs__.items():
            value = getattr(self, field)
            checked = spec.check(value, f"{name}.{field}")
            if checked is not value:
                object.__setattr__(self, field, checked)
        self._check()

    def _check(self) -> None:
        """Rules across fields; runs after every field passed. Raise SchemaError. (A hook, because
        zero-argument super() does not work in slotted dataclasses.)"""

    def to_wire(self) -> dict[str, Any]:
        """This record as a msgpack-ready map (absent optionals left out)."""
        out = {}
        for field, spec, identity in self.__wire_plan__:
            value = getattr(self, field)
            if value is not None:
                out[field] = value if identity else spec.to_wire(value)
        return out

    @classmethod
    def from_wire(cls, raw: Any, path: str | None = None) -> typing.Self:
        """Build a record from its decoded wire map. Raises SchemaError for any mismatch."""
        path = path or cls.__name__
        if type(raw) is not dict:
            _fail(path, f"map for {cls.__name__}", raw)
        specs = cls.__specs__
        if not cls.__open__:
            unknown = [k for k in raw if k not in specs]
            if unknown:
                raise SchemaError(f"{path}: unknown field(s) {sorted(map(repr, unknown))[:5]}")
        values = {}
        for field, spec, identity in cls.__wire_plan__:
            if field in raw:
                value = raw[field]
                values[field] = value if identity else spec.from_wire(value, f"{path}.{field}")
            elif not spec.optional:
                raise SchemaError(f"{path}: missing field {field!r}")
        try:
            return cls(**values)
        except TypeError as exc:  # only reachable through a schema bug, but keep the promise
            raise SchemaError(f"{path}: {exc}") from exc


class Message(Record):
    """A top-level message: has a registered (TYPE, VERSION) and a validity bound for its signed form."""

    __slots__ = ()
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    # The longest a signed envelope of this type may stay valid; bounds how long replay caches keep nonces.
    MAX_TTL_MS: ClassVar[int] = 10 * 60 * 1000
    # The shortest lifetime a signer may give it (`envelope.sign` refuses less): for messages that must
    # survive gossip hops and receivers whose clocks run ahead.
    MIN_TTL_MS: ClassVar[int] = 1


_REGISTRY: dict[tuple[str, int], type[Message]] = {}
R = TypeVar("R", bound=type[Record])
MR = TypeVar("MR", bound=type[Message])


def _make_record(cls: R, open_: bool) -> R:
    hints = typing.get_type_hints(cls, include_extras=True)
    specs: dict[str, Spec] = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) is ClassVar:
            continue
        metadata = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Spec)]
        if len(metadata) != 1:
            raise TypeError(f"{cls.__name__}.{name}: annotate with Annotated[type, <one Spec>]")
        specs[name] = metadata[0]
    made = typing.cast(R, dataclasses.dataclass(frozen=True, kw_only=True, slots=True)(cls))
    made.__specs__ = specs
    made.__wire_plan__ = tuple((name, spec, spec.wire_identity) for name, spec in specs.items())
    made.__open__ = open_
    return made


@typing.overload
def record(cls: R, *, open: bool = False) -> R: ...
@typing.overload
def record(cls: None = None, *, open: bool = False) -> Callable[[R], R]: ...
@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def record(cls: R | None = None, *, open: bool = False) -> R | Callable[[R], R]:
    """Class decorator: a frozen, validating, wire-mappable record (for use inside messages)."""

    def wrap(c: R) -> R:
        return _make_record(c, open)

    return wrap if cls is None else wrap(cls)


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def message(type_name: str, version: int, *, open: bool = False) -> Callable[[MR], MR]:
    """Class decorator: a record registered as the top-level message `(type_name, version)`."""

    def wrap(cls: MR) -> MR:
        key = (type_name, version)
        if key in _REGISTRY:
            raise TypeError(f"message {key} registered twice")
        cls.TYPE = type_name
        cls.VERSION = version
        made = _make_record(cls, open)
        _REGISTRY[key] = made
        return made

    return wrap


def message_types() -> dict[tuple[str, int], type[Message]]:
    """Every registered message class by (type, version)."""
    return dict(_REGISTRY)


def lookup(type_name: Any, version: Any) -> type[Message]:
    """The class registered for `(type_name, version)`. Raises SchemaError when there is none."""
    cls = _REGISTRY.get((type_name, version)) if type(type_name) is str and type(version) is int else None
    if cls is None:
        raise SchemaError(f"unknown message type {type_name!r} version {version!r}")
    return cls


def check_expected(cls: type[Message], expected: type[Message] | tuple[type[Message], ...] | None) -> None:
    if expected is None:
        return
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if cls not in allowed:
        names = ", ".join(f"{c.TYPE}/v{c.VERSION}" for c in allowed)
        raise SchemaError(f"got message {cls.TYPE}/v{cls.VERSION}, expected {names}")


def encode_message(msg: Message) -> bytes:
    """The unsigned wire form `[type, version, fields]` of `msg`."""
    if not isinstance(msg, Message):
        raise SchemaError(f"not a message: {type(msg).__name__}")
    return codec.pack([msg.TYPE, msg.VERSION, msg.to_wire()])


M = TypeVar("M", bound=Message)


@typing.overload
def decode_message(data: bytes, expected: type[M], *, limits: codec.Limits = ...) -> M: ...
@typing.overload
def decode_message(
    data: bytes, expected: tuple[type[Message], ...] | None = None, *, limits: codec.Limits = ...
) -> Message: ...
def decode_message(
    data: bytes,
    expected: type[Message] | tuple[type[Message], ...] | None = None,
    *,
    limits: codec.Limits = codec.DEFAULT_LIMITS,
) -> Message:
    """Decode an unsigned message; with `expected`, any other type is refused.

    Raises DecodeError/LimitError for bad bytes and SchemaError for a bad message; nothing else.
    """
    value = codec.unpack(data, limits)
    if type(value) is not tuple or len(value) != 3:
        raise SchemaError("a message is the array [type, version, fields]")
    cls = lookup(value[0], value[1])
    check_expected(cls, expected)
    return cls.from_wire(value[2])
