"""TF Serving ``PredictRequest`` encoder and ``PredictResponse`` decoder, by hand.

The engine never imports TensorFlow, so the protobuf wire format is written here directly (field
numbers: ``tensorflow_serving/apis/{model,predict}.proto`` and ``tensorflow/core/framework/
{tensor,tensor_shape}.proto``; see ``docs/inference.md``). The encoder's bytes equal
``predict_pb2.PredictRequest(...).SerializeToString(deterministic=True)`` for the same request:
fields in field-number order, map entries sorted by key, float32 tensors as ``tensor_content``.

Everything that does not depend on the batch size is encoded once at construction; what depends
on it is cached per batch size; a call only joins the cached pieces with the arrays' bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

DT_FLOAT: Final = 1
SERVING_DEFAULT: Final = "serving_default"

_U64: Final = (1 << 64) - 1


class WireError(ValueError):
    """Bytes that are not a valid message of the expected type, or a tensor we cannot use."""


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative values as their 64-bit two's complement (10 bytes)."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_bytes(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + encode_varint(len(payload)) + payload


def encode_model_spec(
    name: str,
    *,
    version: int | None = None,
    version_label: str | None = None,
    signature_name: str = SERVING_DEFAULT,
) -> bytes:
    """Body of a ``ModelSpec`` (name=1, version=2 Int64Value, signature_name=3, version_label=4)."""
    if version is not None and version_label is not None:
        raise ValueError("model spec takes a version or a version_label, not both (proto oneof)")
    body = b""
    if name:
        body += _field_bytes(0x0A, name.encode())
    if version is not None:
        inner = b"\x08" + encode_varint(version) if version else b""
        body += _field_bytes(0x12, inner)
    if signature_name:
        body += _field_bytes(0x1A, signature_name.encode())
    if version_label is not None:
        body += _field_bytes(0x22, version_label.encode())
    return body


def _shape_bytes(dims: Sequence[int]) -> bytes:
    body = b""
    for size in dims:
        body += _field_bytes(0x12, b"\x08" + encode_varint(size) if size else b"")
    return body


class PredictRequestEncoder:
    """Encodes ``PredictRequest`` messages for one model spec and a fixed set of float32 inputs.

    Parameters
    ----------
    model_name:
        ``model_spec.name``.
    inputs:
        Input name -> shape of one row (the batch dimension is added per call), in the order the
        arrays are passed to :meth:`encode`. On the wire, entries are sorted by name.
    version, version_label:
        At most one: select a version number or a label (``stable``/``canary``); neither means
        the latest version.
    signature_name:
        Written when non-empty (``serving_default`` by default).
    output_filter:
        Optional output aliases to return.
    """

    __slots__ = ("_cache", "_head", "_inputs", "_order", "_row_bytes", "_tail", "input_names")

    def __init__(
        self,
        model_name: str,
        inputs: Mapping[str, Sequence[int]],
        *,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = SERVING_DEFAULT,
        output_filter: Sequence[str] = (),
    ) -> None:
        if not inputs:
            raise ValueError("a PredictRequest needs at least one input")
        self.input_names: tuple[str, ...] = tuple(inputs)
        self._inputs = {name: tuple(int(d) for d in shape) for name, shape in inputs.items()}
        for name, shape in self._inputs.items():
            if any(d < 0 for d in shape):
                raise ValueError(f"input {name!r}: row shape {shape} must be fully known")
        self._row_bytes = tuple(4 * int(np.prod(self._inputs[n], dtype=np.int64)) for n in inputs)
        # Wire order (sorted keys) as positions into the caller's argument order.
        self._order = tuple(self.input_names.index(n) for n in sorted(self.input_names))
        spec = encode_model_spec(
            model_name,
            version=version,
            version_label=version_label,
            signature_name=signature_name,
        )
        self._head = _field_bytes(0x0A, spec)
        self._tail = b"".join(_field_bytes(0x1A, alias.encode()) for alias in output_filter)
        self._cache: dict[int, tuple[bytes, ...]] = {}

    def _pieces(self, batch: int) -> tuple[bytes, ...]:
        """Bytes before each tensor's content, wire order; the first also carries the spec."""
        pieces = []
        for pos in self._order:
            name = self.input_names[pos]
            n_bytes = batch * self._row_bytes[pos]
            tensor_head = (
                b"\x08\x01"
                + _field_bytes(0x12, _shape_bytes((batch, *self._inputs[name])))
                + b"\x22"
                + encode_varint(n_bytes)
            )
            tensor_len = len(tensor_head) + n_bytes
            key = _field_bytes(0x0A, name.encode())
            entry_head = key + b"\x12" + encode_varint(tensor_len) + tensor_head
            entry_len = len(entry_head) + n_bytes
            pieces.append(b"\x12" + encode_varint(entry_len) + entry_head)
        pieces[0] = self._head + pieces[0]
        return tuple(pieces)

    def encode(self, *arrays: npt.NDArray[np.float32]) -> bytes:
        """Serialise one request; arrays in the constructor's input order, sharing dim 0."""
        if len(arrays) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} arrays, got {len(arrays)}")
        batch = arrays[0].shape[0]
        pieces = self._cache.get(batch)
        if pieces is None:
            pieces = self._cache[batch] = self._pieces(batch)
        parts: list[bytes | memoryview] = []
        for piece, pos in zip(pieces, self._order, strict=True):
            arr = arrays[pos]
            if arr.dtype != _F32 or not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr, dtype=_F32)
            if arr.nbytes != batch * self._row_bytes[pos]:
                name = self.input_names[pos]
                raise ValueError(
                    f"input {name!r}: shape {arr.shape} does not match "
                    f"({batch}, *{self._inputs[name]})"
                )
            parts.append(piece)
            parts.append(arr.data.cast("B"))
        parts.append(self._tail)
        return b"".join(parts)


_F32: Final = np.dtype("<f4")

# DataType enum -> (numpy dtype of tensor_content, typed field number, its element reader)
_FIXED32, _FIXED64, _VARINT = "f32", "f64", "var"
_DTYPES: Final[dict[int, tuple[str, int, str]]] = {
    1: ("<f4", 5, _FIXED32),  # DT_FLOAT / float_val
    2: ("<f8", 6, _FIXED64),  # DT_DOUBLE / double_val
    3: ("<i4", 7, _VARINT),  # DT_INT32 / int_val
    4: ("u1", 7, _VARINT),  # DT_UINT8
    5: ("<i2", 7, _VARINT),  # DT_INT16
    6: ("i1", 7, _VARINT),  # DT_INT8
    9: ("<i8", 10, _VARINT),  # DT_INT64 / int64_val
    10: ("?", 11, _VARINT),  # DT_BOOL / bool_val
    17: ("<u2", 7, _VARINT),  # DT_UINT16
    19: ("<f2", 13, _VARINT),  # DT_HALF / half_val (bit patterns)
    22: ("<u4", 16, _VARINT),  # DT_UINT32 / uint32_val
    23: ("<u8", 17, _VARINT),  # DT_UINT64 / uint64_val
}
_DT_BFLOAT16: Final = 14
_DT_STRING: Final = 7
_DT_HALF: Final = 19


@dataclass(frozen=True, slots=True)
class ModelSpecInfo:
    """The ``model_spec`` a server echoes in its response."""

    name: str = ""
    version: int | None = None
    version_label: str = ""
    signature_name: str = ""


@dataclass(frozen=True, slots=True)
class PredictResponseData:
    """A decoded ``PredictResponse``: named output arrays and the echoed model spec."""

    outputs: dict[str, np.ndarray]
    model_spec: ModelSpecInfo


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _fields(buf: bytes | memoryview) -> list[tuple[int, int, int | memoryview]]:
    """Split one message into ``(field, wire_type, value)``; length-delimited values are views."""
    view = memoryview(buf)
    out: list[tuple[int, int, int | memoryview]] = []
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _read_varint(view, pos)
            out.append((field, wire, value))
        elif wire == 2:
            length, pos = _read_varint(view, pos)
            if pos + length > end:
                raise WireError(f"field {field}: length {length} runs past the message")
            out.append((field, wire, view[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise WireError(f"field {field}: truncated fixed{size * 8}")
            out.append((field, wire, view[pos : pos + size]))
            pos += size
        else:
            raise WireError(f"field {field}: unsupported wire type {wire}")
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_shape(buf: memoryview) -> tuple[int, ...] | None:
    dims: list[int] = []
    unknown_rank = False
    for field, wire, value in _fields(buf):
        if field == 2 and isinstance(value, memoryview):
            size = 0
            for f2, w2, v2 in _fields(value):
                if f2 == 1 and w2 == 0 and isinstance(v2, int):
                    size = _signed64(v2)
            dims.append(size)
        elif field == 3 and wire == 0:
            unknown_rank = bool(value)
    return None if unknown_rank else tuple(dims)


def _varint_values(chunks: list[tuple[int, int | memoryview]]) -> list[int]:
    values: list[int] = []
    for wire, value in chunks:
        if wire == 0 and isinstance(value, int):
            values.append(value)
        elif isinstance(value, memoryview):
            pos = 0
            while pos < len(value):
                v, pos = _read_varint(value, pos)
                values.append(v)
    return values


def _typed_values(kind: str, chunks: list[tuple[int, int | memoryview]]) -> np.ndarray:
    if kind == _VARINT:
        return np.array([_signed64(v) for v in _varint_values(chunks)], dtype=np.int64)
    raw = b"".join(bytes(v) for _, v in chunks if isinstance(v, memoryview))
    return np.frombuffer(raw, dtype="<f4" if kind == _FIXED32 else "<f8").copy()


def _fill(values: np.ndarray, count: int, dtype: npt.DTypeLike, what: str) -> np.ndarray:
    """TF's rule: fewer values than elements repeat the last one; none means zeros."""
    if values.size == count:
        return values.astype(dtype, copy=False)
    if values.size == 0:
        return np.zeros(count, dtype=dtype)
    if values.size > count:
        raise WireError(f"{what}: {values.size} values for {count} elements")
    out = np.empty(count, dtype=dtype)
    out[: values.size] = values
    out[values.size :] = values[-1]
    return out


def decode_tensor(buf: bytes | memoryview, what: str = "tensor") -> np.ndarray:
    """Decode a ``TensorProto`` into a numpy array (owning its memory).

    Accepts ``tensor_content`` and the typed ``*_val`` fields, packed or not. float16 and
    bfloat16 are returned as float32; strings as an object array of bytes.
    """
    parsed = _parse_tensor(buf)
    shape = parsed.shape
    if shape is None or any(d < 0 for d in shape):
        raise WireError(f"{what}: shape must be fully known, got {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    if parsed.dtype == _DT_STRING:
        arr = np.empty(count, dtype=object)
        arr[:] = _fill_strings(parsed.strings, count, what)
        return arr.reshape(shape)
    if parsed.dtype == _DT_BFLOAT16:
        if parsed.content is not None:
            bits = np.frombuffer(parsed.content, dtype="<u2").astype(np.uint32)
        else:
            bits = _typed_values(_VARINT, parsed.typed.get(13, [])).astype(np.uint32)
        bits = _fill(bits, count, np.uint32, what)
        return (bits << 16).view(np.float32).reshape(shape)
    spec = _DTYPES.get(parsed.dtype)
    if spec is None:
        raise WireError(f"{what}: unsupported dtype enum {parsed.dtype}")
    np_dtype, val_field, kind = spec
    if parsed.content is not None:
        if len(parsed.content) != count * np.dtype(np_dtype).itemsize:
            raise WireError(
                f"{what}: tensor_content has {len(parsed.content)} bytes for shape {shape}"
            )
        arr = np.frombuffer(parsed.content, dtype=np_dtype).copy()
    elif parsed.dtype == _DT_HALF:
        bits = _typed_values(_VARINT, parsed.typed.get(val_field, [])).astype(np.uint16)
        arr = _fill(bits, count, np.uint16, what).view(np.float16)
    else:
        arr = _fill(_typed_values(kind, parsed.typed.get(val_field, [])), count, np_dtype, what)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr.reshape(shape)


@dataclass(slots=True)
class _RawTensor:
    dtype: int = 0
    shape: tuple[int, ...] | None = ()
    content: memoryview | None = None
    typed: dict[int, list[tuple[int, int | memoryview]]] = dataclasses.field(default_factory=dict)
    strings: list[bytes] = dataclasses.field(default_factory=list)


def _parse_tensor(buf: bytes | memoryview) -> _RawTensor:
    raw = _RawTensor()
    for number, wire, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            raw.dtype = value
        elif number == 2 and isinstance(value, memoryview):
            raw.shape = _decode_shape(value)
        elif number == 4 and isinstance(value, memoryview):
            raw.content = value
        elif number == 8 and isinstance(value, memoryview):
            raw.strings.append(bytes(value))
        elif number != 3:
            raw.typed.setdefault(number, []).append((wire, value))
    return raw


def _fill_strings(strings: list[bytes], count: int, what: str) -> list[bytes]:
    if len(strings) == count:
        return strings
    if not strings:
        return [b""] * count
    if len(strings) > count:
        raise WireError(f"{what}: {len(strings)} values for {count} elements")
    return strings + [strings[-1]] * (count - len(strings))


def _decode_model_spec(buf: memoryview) -> ModelSpecInfo:
    name = label = signature = ""
    version: int | None = None
    for field, _, value in _fields(buf):
        if not isinstance(value, memoryview):
            continue
        if field == 1:
            name = bytes(value).decode()
        elif field == 2:
            version = 0
            for f2, _, v2 in _fields(value):
                if f2 == 1 and isinstance(v2, int):
                    version = _signed64(v2)
        elif field == 3:
            signature = bytes(value).decode()
        elif field == 4:
            label = bytes(value).decode()
    return ModelSpecInfo(name, version, label, signature)


def _decode_map_entry(buf: memoryview) -> tuple[str, memoryview]:
    key = ""
    value = memoryview(b"")
    for field, _, v in _fields(buf):
        if field == 1 and isinstance(v, memoryview):
            key = bytes(v).decode()
        elif field == 2 and isinstance(v, memoryview):
            value = v
    return key, value


def decode_predict_response(data: bytes | memoryview) -> PredictResponseData:
    """Decode a serialised ``PredictResponse`` (outputs=1 map, model_spec=2)."""
    outputs: dict[str, np.ndarray] = {}
    spec = ModelSpecInfo()
    for field, _, value in _fields(data):
        if not isinstance(value, memoryview):
            continue
        if field == 1:
            key, tensor = _decode_map_entry(value)
            outputs[key] = decode_tensor(tensor, f"output {key!r}")
        elif field == 2:
            spec = _decode_model_spec(value)
    return PredictResponseData(outputs, spec)


# -- repeated responses: a verified template per layout ------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
    skeleton: bytes
    """Every byte of the response that is not tensor payload."""
    cuts: tuple[tuple[int, int], ...]
    """``(start, end)`` of each payload, ascending."""
    outputs: tuple[tuple[str, str, tuple[int, ...], int, int], ...]
    """``(name, numpy dtype, shape, start, count)`` per output."""
    spec: ModelSpecInfo


def _spans(buf: memoryview, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(field, wire, start, end)`` of each field's value, as absolute offsets."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, stop = _read_varint(buf, pos)
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            stop = pos + length
        elif wire in (1, 5):
            stop = pos + (8 if wire == 1 else 4)
        else:
            raise WireError(f"field {field}: unsupported wire type {wire}")
        if stop > end:
            raise WireError(f"field {field}: runs past the message")
        out.append((field, wire, pos, stop))
        pos = stop
    return out


# dtype enum -> (numpy dtype, packed field number) for payloads read straight from the bytes.
_FIXED_WIDTH: Final = {1: ("<f4", 5), 2: ("<f8", 6)}


def _tensor_payload(
    buf: memoryview, start: int, end: int
) -> tuple[str, tuple[int, ...], int, int] | None:
    """``(numpy dtype, shape, payload start, count)`` when the tensor is one fixed-width payload."""
    dtype_enum, shape, payload = 0, None, None
    for field, wire, s, e in _spans(buf, start, end):
        if field == 1 and wire == 0:
            dtype_enum = _read_varint(buf, s)[0]
        elif field == 2 and wire == 2:
            shape = _decode_shape(buf[s:e])
        elif wire == 2 and payload is None and field in (4, 5, 6):
            payload = (field, s, e)
        else:
            return None
    spec = _DTYPES.get(dtype_enum)
    if spec is None or dtype_enum == _DT_HALF or shape is None or payload is None:
        return None  # half is widened to float32 by the full parse
    if any(d < 0 for d in shape):
        return None
    field, s, e = payload
    np_dtype = spec[0]
    if field != 4 and _FIXED_WIDTH.get(dtype_enum, ("", 0))[1] != field:
        return None
    count = int(np.prod(shape, dtype=np.int64))
    if e - s != count * np.dtype(np_dtype).itemsize:
        return None
    return np_dtype, shape, s, count


def _build_template(raw: bytes) -> _Template | None:
    buf = memoryview(raw)
    outputs = []
    cuts = []
    spec = ModelSpecInfo()
    for field, wire, s, e in _spans(buf, 0, len(raw)):
        if field == 2 and wire == 2:
            spec = _decode_model_spec(buf[s:e])
            continue
        if field != 1 or wire != 2:
            return None
        name, tensor = "", None
        for f2, w2, s2, e2 in _spans(buf, s, e):
            if f2 == 1 and w2 == 2:
                name = bytes(buf[s2:e2]).decode()
            elif f2 == 2 and w2 == 2:
                tensor = _tensor_payload(buf, s2, e2)
                if tensor is None:
                    return None
        if tensor is None:
            return None
        np_dtype, shape, start, count = tensor
        outputs.append((name, np_dtype, shape, start, count))
        cuts.append((start, start + count * np.dtype(np_dtype).itemsize))
    cuts.sort()
    skeleton = b"".join(_between(raw, cuts))
    return _Template(skeleton, tuple(cuts), tuple(outputs), spec)


def _between(raw: bytes, cuts: Sequence[tuple[int, int]]) -> list[bytes]:
    parts = []
    pos = 0
    for start, end in cuts:
        parts.append(raw[pos:start])
        pos = end
    parts.append(raw[pos:])
    return parts


class PredictResponseDecoder:
    """:func:`decode_predict_response` with a fast path for responses that repeat a layout.

    A server answers the same request shape with the same bytes except the tensor values. The
    first response of a given length is fully parsed and, when every output is one fixed-width
    payload (``tensor_content``, packed ``float_val``/``double_val``), remembered as a template:
    the payload offsets plus every other byte. A later response of that length whose non-payload
    bytes are identical has exactly the same structure, so its outputs are read at the recorded
    offsets without parsing; anything else takes the full parse.
    """

    __slots__ = ("_templates", "fast_hits", "max_templates")

    def __init__(self, max_templates: int = 64) -> None:
        self._templates: dict[int, _Template | None] = {}
        self.max_templates = max_templates
        self.fast_hits = 0

    def decode(self, data: bytes) -> PredictResponseData:
        tpl = self._templates.get(len(data))
        if tpl is not None and b"".join(_between(data, tpl.cuts)) == tpl.skeleton:
            self.fast_hits += 1
            outputs = {
                name: np.frombuffer(data, np_dtype, count, start).reshape(shape).copy()
                for name, np_dtype, shape, start, count in tpl.outputs
            }
            return PredictResponseData(outputs, tpl.spec)
        response = decode_predict_response(data)
        if len(data) not in self._templates:
            if len(self._templates) >= self.max_templates:
                self._templates.clear()
            self._templates[len(data)] = _build_template(bytes(data))
        return response
