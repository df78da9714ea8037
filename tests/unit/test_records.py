"""The ring record dtypes and their C mirrors in ext/_records.pxd must agree byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from relentless_fast.records import DTYPES, N_KINDS, Kind

PXD = Path(__file__).resolve().parents[2] / "ext" / "_records.pxd"
C_SIZES = {"int64_t": 8, "uint64_t": 8, "double": 8, "uint8_t": 1, "char": 1}
STRUCTS = {
    Kind.TRADE: "TradeRec",
    Kind.QUOTE: "QuoteRec",
    Kind.BAR: "BarRec",
    Kind.CORRECTION: "CorrectionRec",
    Kind.CANCEL: "CancelRec",
    Kind.STATUS: "StatusRec",
    Kind.LULD: "LuldRec",
    Kind.IMBALANCE: "ImbalanceRec",
}


def _c_layout(struct: str) -> tuple[list[tuple[str, int, int]], int]:
    """(name, offset, size) per field and sizeof, with natural C alignment."""
    body = re.search(rf"ctypedef struct {struct}:\n((?:    .+\n)+)", PXD.read_text())
    assert body, f"{struct} not found in {PXD}"
    fields, offset, max_align = [], 0, 1
    for line in body.group(1).splitlines():
        ctype, decl = line.split()
        m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", decl)
        assert m
        align = C_SIZES[ctype]
        size = align * int(m.group(2) or 1)
        offset = -(-offset // align) * align
        fields.append((m.group(1), offset, size))
        offset += size
        max_align = max(max_align, align)
    return fields, -(-offset // max_align) * max_align


@pytest.mark.parametrize("kind", list(Kind))
def test_dtype_matches_c_struct(kind: Kind) -> None:
    dtype = DTYPES[kind]
    fields, sizeof = _c_layout(STRUCTS[kind])
    assert [f[0] for f in fields] == list(dtype.names or ())
    for name, offset, size in fields:
        sub, off = dtype.fields[name][:2]  # type: ignore[index]
        assert (off, sub.itemsize) == (offset, size), name
    assert dtype.itemsize == sizeof


def test_kinds_are_dense() -> None:
    assert sorted(k.value for k in Kind) == list(range(N_KINDS))
    assert all(DTYPES[k].isalignedstruct for k in Kind)
    assert np.dtype(DTYPES[Kind.TRADE]["ts_ns"]) == np.dtype("<i8")
