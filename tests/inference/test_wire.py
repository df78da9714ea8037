"""Byte compatibility of our PredictRequest encoder / PredictResponse decoder with predict_pb2."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast.inference.wire import (
    PredictRequestEncoder,
    PredictResponseDecoder,
    WireError,
    decode_predict_response,
    decode_tensor,
    encode_varint,
)

# The 55-byte example of /work/shared/reference/tf-serving.md §3 (model m, version 1, x=[[1, 2]]).
REFERENCE_HEX = (
    "0a180a016d120208011a0f73657276696e675f64656661756c74"
    "121b0a0178121608011208120208011202080222080000803f00000040"
)


def test_reference_example_bytes() -> None:
    enc = PredictRequestEncoder("m", {"x": (2,)}, version=1)
    assert enc.encode(np.array([[1.0, 2.0]], np.float32)).hex() == REFERENCE_HEX


def _official_request(
    pb: ModuleType,
    arrays: dict[str, np.ndarray],
    *,
    version: int | None,
    label: str | None,
    signature: str,
    output_filter: tuple[str, ...] = (),
) -> bytes:
    req = pb.PredictRequest()
    req.model_spec.name = "relentless_financial"
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    req.model_spec.signature_name = signature
    for name, arr in arrays.items():
        t = req.inputs[name]
        t.dtype = 1
        for d in arr.shape:
            t.tensor_shape.dim.add().size = d
        t.tensor_content = arr.astype("<f4").tobytes()
    req.output_filter.extend(output_filter)
    out: bytes = req.SerializeToString(deterministic=True)
    return out


SPECS = [
    {"version": 1, "label": None},
    {"version": 2, "label": None},
    {"version": 0, "label": None},
    {"version": 300, "label": None},
    {"version": None, "label": "stable"},
    {"version": None, "label": "canary"},
    {"version": None, "label": None},
]


@pytest.mark.parametrize("batch", [1, 3, 32, 128, 1000])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"v{s['version']}-l{s['label']}")
def test_encoder_equals_deterministic_serialisation(
    predict_pb2: ModuleType, batch: int, spec: dict[str, Any]
) -> None:
    rng = np.random.default_rng(batch)
    ticks = rng.standard_normal((batch, 24)).astype(np.float32)
    context = rng.standard_normal((batch, 40)).astype(np.float32)
    enc = PredictRequestEncoder(
        "relentless_financial",
        {"ticks": (24,), "context": (40,)},
        version=spec["version"],
        version_label=spec["label"],
    )
    want = _official_request(
        predict_pb2,
        {"ticks": ticks, "context": context},
        version=spec["version"],
        label=spec["label"],
        signature="serving_default",
    )
    assert enc.encode(ticks, context) == want
    # The per-batch-size cache must not leak the first call's bytes into the next.
    ticks2 = ticks + 1
    want2 = _official_request(
        predict_pb2,
        {"ticks": ticks2, "context": context},
        version=spec["version"],
        label=spec["label"],
        signature="serving_default",
    )
    assert enc.encode(ticks2, context) == want2


def test_encoder_signature_and_output_filter(predict_pb2: ModuleType) -> None:
    ticks = np.arange(6, dtype=np.float32).reshape(2, 3)
    enc = PredictRequestEncoder(
        "relentless_financial",
        {"ticks": (3,)},
        version_label="canary",
        signature_name="",
        output_filter=("a", "bb"),
    )
    want = _official_request(
        predict_pb2,
        {"ticks": ticks},
        version=None,
        label="canary",
        signature="",
        output_filter=("a", "bb"),
    )
    assert enc.encode(ticks) == want


def test_encoder_matches_make_tensor_proto(predict_pb2: ModuleType) -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(7)
    ticks = rng.standard_normal((5, 4)).astype(np.float32)
    context = rng.standard_normal((5, 3)).astype(np.float32)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "relentless_financial"
    req.model_spec.version.value = 1
    req.model_spec.signature_name = "serving_default"
    req.inputs["ticks"].CopyFrom(tf.make_tensor_proto(ticks))
    req.inputs["context"].CopyFrom(tf.make_tensor_proto(context))
    enc = PredictRequestEncoder("relentless_financial", {"ticks": (4,), "context": (3,)}, version=1)
    assert enc.encode(ticks, context) == req.SerializeToString(deterministic=True)


def test_encoder_converts_and_checks_arrays(predict_pb2: ModuleType) -> None:
    enc = PredictRequestEncoder("relentless_financial", {"ticks": (3,), "context": (2,)}, version=1)
    ticks64 = np.arange(12, dtype=np.float64).reshape(4, 3)
    strided = np.arange(16, dtype=np.float32).reshape(4, 4)[:, :2]
    want = _official_request(
        predict_pb2,
        {"ticks": ticks64.astype(np.float32), "context": np.ascontiguousarray(strided)},
        version=1,
        label=None,
        signature="serving_default",
    )
    assert enc.encode(ticks64, strided) == want  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'context'"):
        enc.encode(np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="expected 2 arrays"):
        enc.encode(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="not both"):
        PredictRequestEncoder("m", {"x": (1,)}, version=1, version_label="stable")


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 40),
    width=st.integers(1, 9),
    data=st.data(),
)
def test_encoder_roundtrips_through_predict_pb2(
    predict_pb2: ModuleType, batch: int, width: int, data: st.DataObject
) -> None:
    values = data.draw(
        st.lists(
            st.floats(width=32, allow_nan=False), min_size=batch * width, max_size=batch * width
        )
    )
    arr = np.array(values, dtype=np.float32).reshape(batch, width)
    version = data.draw(st.integers(0, 2**40))
    enc = PredictRequestEncoder("m", {"x": (width,)}, version=version)
    req = predict_pb2.PredictRequest.FromString(enc.encode(arr))
    assert req.model_spec.version.value == version
    got = np.frombuffer(req.inputs["x"].tensor_content, "<f4").reshape(batch, width)
    assert [d.size for d in req.inputs["x"].tensor_shape.dim] == [batch, width]
    np.testing.assert_array_equal(got, arr)


# ----- decoder ---------------------------------------------------------------------------------


def _response(pb: ModuleType, **spec: Any) -> Any:
    resp = pb.PredictResponse()
    resp.model_spec.name = "relentless_financial"
    if "version" in spec:
        resp.model_spec.version.value = spec["version"]
    if "label" in spec:
        resp.model_spec.version_label = spec["label"]
    resp.model_spec.signature_name = "serving_default"
    return resp


def _set_shape(t: Any, shape: tuple[int, ...]) -> None:
    for d in shape:
        t.tensor_shape.dim.add().size = d


def test_decoder_float_val_and_tensor_content(predict_pb2: ModuleType) -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((4, 3)).astype(np.float32)
    conf = rng.random(4).astype(np.float32)
    resp = _response(predict_pb2, version=2)
    t = resp.outputs["action_probs"]
    t.dtype = 1
    _set_shape(t, probs.shape)
    t.float_val.extend(probs.ravel().tolist())
    t = resp.outputs["confidence"]
    t.dtype = 1
    _set_shape(t, conf.shape)
    t.tensor_content = conf.tobytes()
    got = decode_predict_response(resp.SerializeToString())
    np.testing.assert_array_equal(got.outputs["action_probs"], probs)
    np.testing.assert_array_equal(got.outputs["confidence"], conf)
    assert got.outputs["confidence"].dtype == np.float32
    assert got.model_spec.name == "relentless_financial"
    assert got.model_spec.version == 2
    assert got.model_spec.signature_name == "serving_default"
    labelled = decode_predict_response(_response(predict_pb2, label="canary").SerializeToString())
    assert labelled.model_spec.version is None
    assert labelled.model_spec.version_label == "canary"


def _unpack_float_val(tensor_bytes: bytes) -> bytes:
    """Rewrite a TensorProto's packed float_val (field 5) as unpacked fixed32 fields."""
    out = bytearray()
    pos = 0
    while pos < len(tensor_bytes):
        key = tensor_bytes[pos]
        pos += 1
        if key == 0x2A:  # float_val, packed
            length = tensor_bytes[pos]  # short test tensors: one-byte length
            pos += 1
            for i in range(0, length, 4):
                out += b"\x2d" + tensor_bytes[pos + i : pos + i + 4]
            pos += length
        elif key & 7 == 0:
            start = pos - 1
            while tensor_bytes[pos] & 0x80:
                pos += 1
            pos += 1
            out += tensor_bytes[start:pos]
        else:  # length-delimited (shape)
            length = tensor_bytes[pos]
            out += tensor_bytes[pos - 1 : pos + 1 + length]
            pos += 1 + length
    return bytes(out)


def test_decoder_unpacked_float_val(predict_pb2: ModuleType) -> None:
    tensor_pb2 = pytest.importorskip("tensorflow.core.framework.tensor_pb2")
    t = tensor_pb2.TensorProto(dtype=1)
    _set_shape(t, (2, 3))
    t.float_val.extend([1.5, -2.0, 3.25, 0.0, -0.0, 7.0])
    unpacked = _unpack_float_val(t.SerializeToString())
    assert unpacked != t.SerializeToString()
    assert tensor_pb2.TensorProto.FromString(unpacked) == t  # the official parser agrees
    np.testing.assert_array_equal(
        decode_tensor(unpacked), np.array(t.float_val, np.float32).reshape(2, 3)
    )


@pytest.mark.parametrize(
    ("dtype_enum", "field", "values", "np_dtype"),
    [
        (2, "double_val", [1.25, -3.5e300, 0.0, 2.0], np.float64),
        (3, "int_val", [-1, 2**31 - 1, -(2**31), 0], np.int32),
        (4, "int_val", [0, 255, 7, 1], np.uint8),
        (5, "int_val", [-32768, 32767, -1, 0], np.int16),
        (6, "int_val", [-128, 127, -1, 5], np.int8),
        (9, "int64_val", [-(2**63), 2**63 - 1, -1, 0], np.int64),
        (10, "bool_val", [True, False, True, True], np.bool_),
        (17, "int_val", [0, 65535, 1, 2], np.uint16),
        (22, "uint32_val", [0, 2**32 - 1, 1, 2], np.uint32),
        (23, "uint64_val", [0, 2**64 - 1, 1, 2], np.uint64),
    ],
)
def test_decoder_typed_dtypes(
    predict_pb2: ModuleType, dtype_enum: int, field: str, values: list[Any], np_dtype: Any
) -> None:
    resp = _response(predict_pb2, version=1)
    t = resp.outputs["y"]
    t.dtype = dtype_enum
    _set_shape(t, (2, 2))
    getattr(t, field).extend(values)
    got = decode_predict_response(resp.SerializeToString()).outputs["y"]
    np.testing.assert_array_equal(got, np.array(values, dtype=np_dtype).reshape(2, 2))
    # The same tensor as tensor_content.
    t2 = resp.outputs["z"]
    t2.dtype = dtype_enum
    _set_shape(t2, (2, 2))
    t2.tensor_content = np.array(values, dtype=np.dtype(np_dtype).newbyteorder("<")).tobytes()
    got2 = decode_predict_response(resp.SerializeToString()).outputs["z"]
    np.testing.assert_array_equal(got2, np.array(values, dtype=np_dtype).reshape(2, 2))


def test_decoder_half_bfloat16_string_and_fill(predict_pb2: ModuleType) -> None:
    resp = _response(predict_pb2)
    half = np.array([1.5, -2.0, 65504.0], np.float16)
    t = resp.outputs["half"]
    t.dtype = 19
    _set_shape(t, (3,))
    t.half_val.extend(half.view(np.uint16).tolist())
    bf = np.array([1.0, -3.0, 0.5], np.float32)
    t = resp.outputs["bf16"]
    t.dtype = 14
    _set_shape(t, (3,))
    t.half_val.extend((bf.view(np.uint32) >> 16).tolist())
    t = resp.outputs["s"]
    t.dtype = 7
    _set_shape(t, (2,))
    t.string_val.extend([b"a", b"bc"])
    t = resp.outputs["filled"]  # TF's rule: fewer values than elements repeat the last one
    t.dtype = 1
    _set_shape(t, (2, 2))
    t.float_val.extend([3.0])
    t = resp.outputs["empty"]
    t.dtype = 1
    _set_shape(t, (0, 3))
    out = decode_predict_response(resp.SerializeToString()).outputs
    np.testing.assert_array_equal(out["half"], half.astype(np.float32))
    np.testing.assert_array_equal(out["bf16"], bf)
    assert out["s"].tolist() == [b"a", b"bc"]
    np.testing.assert_array_equal(out["filled"], np.full((2, 2), 3.0, np.float32))
    assert out["empty"].shape == (0, 3)
    assert resp.model_spec.version.value == 0  # unset version reads as absent
    assert decode_predict_response(resp.SerializeToString()).model_spec.version is None


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=3),
    as_content=st.booleans(),
    data=st.data(),
)
def test_decoder_roundtrips_official_float_tensors(
    predict_pb2: ModuleType, shape: list[int], as_content: bool, data: st.DataObject
) -> None:
    n = int(np.prod(shape, dtype=np.int64))
    values = np.array(
        data.draw(st.lists(st.floats(width=32), min_size=n, max_size=n)), np.float32
    ).reshape(shape)
    resp = _response(predict_pb2, version=data.draw(st.integers(1, 2**62)))
    t = resp.outputs["out"]
    t.dtype = 1
    _set_shape(t, tuple(shape))
    if as_content:
        t.tensor_content = values.tobytes()
    else:
        t.float_val.extend(values.ravel().tolist())
    got = decode_predict_response(resp.SerializeToString())
    np.testing.assert_array_equal(got.outputs["out"], values)
    assert got.model_spec.version == resp.model_spec.version.value


def test_decoder_rejects_malformed() -> None:
    with pytest.raises(WireError, match="runs past"):
        decode_predict_response(b"\x0a\x05\x01")
    with pytest.raises(WireError, match="wire type"):
        decode_predict_response(b"\x0b")
    with pytest.raises(WireError, match="truncated varint"):
        decode_predict_response(b"\x08")
    bad_content = b"\x08\x01\x12\x04\x12\x02\x08\x02\x22\x03abc"  # 3 bytes for 2 floats
    with pytest.raises(WireError, match="tensor_content has 3 bytes"):
        decode_tensor(bad_content)
    with pytest.raises(WireError, match="unsupported dtype"):
        decode_tensor(b"\x08\x14")  # DT_RESOURCE
    dim = b"\x08" + encode_varint(-1)  # size -1: unknown
    unknown_dim = b"\x08\x01\x12" + bytes([len(dim) + 2]) + b"\x12" + bytes([len(dim)]) + dim
    with pytest.raises(WireError, match="fully known"):
        decode_tensor(unknown_dim)


def test_varint_negative_is_ten_bytes() -> None:
    assert encode_varint(-1) == bytes.fromhex("ffffffffffffffffff01")
    assert encode_varint(300) == b"\xac\x02"


# ----- repeated-layout decoder -----------------------------------------------------------------


def _layout_response(
    pb: ModuleType, values: dict[str, np.ndarray], *, content: bool, version: int = 1
) -> bytes:
    resp = _response(pb, version=version)
    for name, arr in values.items():
        t = resp.outputs[name]
        t.dtype = 2 if arr.dtype == np.float64 else 1
        _set_shape(t, arr.shape)
        if content:
            t.tensor_content = arr.tobytes()
        elif arr.dtype == np.float64:
            t.double_val.extend(arr.ravel().tolist())
        else:
            t.float_val.extend(arr.ravel().tolist())
    out: bytes = resp.SerializeToString()
    return out


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 20), content=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_response_decoder_fast_path_equals_full_parse(
    predict_pb2: ModuleType, rows: int, content: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    dec = PredictResponseDecoder()
    for i in range(4):
        values: dict[str, np.ndarray] = {
            "action_probs": rng.random((rows, 3)).astype(np.float32),
            "confidence": rng.random(rows).astype(np.float32),
            "wide": rng.random(rows),
        }
        raw = _layout_response(predict_pb2, values, content=content)
        got = dec.decode(raw)
        want = decode_predict_response(raw)
        assert got.model_spec == want.model_spec
        for k, v in values.items():
            np.testing.assert_array_equal(got.outputs[k], v)
            assert got.outputs[k].dtype == want.outputs[k].dtype
            assert got.outputs[k].flags.writeable
        assert dec.fast_hits == i  # the first response builds the template


def test_response_decoder_rejects_a_changed_layout_of_equal_length(
    predict_pb2: ModuleType,
) -> None:
    dec = PredictResponseDecoder()
    a = np.arange(4, dtype=np.float32)
    first = _layout_response(predict_pb2, {"aa": a}, content=True, version=1)
    renamed = _layout_response(predict_pb2, {"bb": a + 1}, content=True, version=1)
    other_version = _layout_response(predict_pb2, {"aa": a + 2}, content=True, version=2)
    reshaped = _response(predict_pb2, version=1)
    t = reshaped.outputs["aa"]
    t.dtype = 1
    _set_shape(t, (2, 2))
    t.tensor_content = a.tobytes()
    assert len({len(first), len(renamed), len(other_version)}) == 1
    dec.decode(first)
    assert list(dec.decode(renamed).outputs) == ["bb"]
    assert dec.decode(other_version).model_spec.version == 2
    assert dec.fast_hits == 0
    got = dec.decode(_layout_response(predict_pb2, {"aa": a + 5}, content=True, version=1))
    np.testing.assert_array_equal(got.outputs["aa"], a + 5)
    assert dec.fast_hits == 1
    int_resp = _response(predict_pb2, version=1)  # typed varints never take the fast path
    t = int_resp.outputs["n"]
    t.dtype = 3
    _set_shape(t, (3,))
    t.int_val.extend([1, -2, 3])
    for _ in range(3):
        assert dec.decode(int_resp.SerializeToString()).outputs["n"].tolist() == [1, -2, 3]
    assert dec.fast_hits == 1
