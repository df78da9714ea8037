//! Python bindings of the signal codec.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};

use super::buffer::{check_room, ByteBuffer};
use crate::error::{SignalError, SignalErrorKind};
use crate::signal::{self as codec, Signal, SIGNAL_SIZE};

/// Batches of at least this many signals are packed / unpacked with the GIL released.
pub(crate) const GIL_RELEASE_MIN_SIGNALS: usize = 256;

static RECORD_DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static WIRE_DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NP_EMPTY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static SIGNAL_FORMAT_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static FRAMING_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const RECORD_FIELDS: [(&str, &str, usize); 15] = [
    ("action", "u1", 0),
    ("symbol_id", "u4", 4),
    ("sequence", "u8", 8),
    ("event_ts_ns", "u8", 16),
    ("emit_ts_ns", "u8", 24),
    ("confidence", "f4", 32),
    ("price_target", "f4", 36),
    ("stop_loss", "f4", 40),
    ("position_size", "f4", 44),
    ("risk_score", "u1", 48),
    ("urgency", "u1", 49),
    ("strategy_id", "u2", 50),
    ("model_version", "u2", 52),
    ("flags", "u2", 54),
    ("context_version", "u4", 56),
];

fn make_dtype<'py>(
    py: Python<'py>,
    fields: &[(&str, String, usize)],
) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    let spec = PyDict::new(py);
    spec.set_item("names", fields.iter().map(|f| f.0).collect::<Vec<_>>())?;
    spec.set_item(
        "formats",
        fields.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
    )?;
    spec.set_item("offsets", fields.iter().map(|f| f.2).collect::<Vec<_>>())?;
    spec.set_item("itemsize", SIGNAL_SIZE)?;
    spec.set_item("aligned", true)?;
    np.getattr("dtype")?.call1((spec,))
}

const ERRORS_CODE: &std::ffi::CStr = c"
class SignalFormatError(ValueError):
    \"\"\"A signal buffer failed validation; ``offset`` is the byte offset of the bad signal.\"\"\"

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self):
        return (type(self), (self.args[0], self.offset))


class FramingError(ValueError):
    \"\"\"A MoldUDP64 / SoupBinTCP packet is malformed or cannot be encoded; ``offset`` is the
    byte offset in the packet (in the stream for ``SoupBinTCPDecoder``).\"\"\"

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset

    def __reduce__(self):
        return (type(self), (self.args[0], self.offset))
";

/// Adds the constants, dtypes, exceptions and codec functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let globals = PyDict::new(py);
    globals.set_item("__name__", "relentless_fast_signal._signal")?;
    py.run(ERRORS_CODE, Some(&globals), None)?;
    for (name, cell) in [
        ("SignalFormatError", &SIGNAL_FORMAT_ERROR),
        ("FramingError", &FRAMING_ERROR),
    ] {
        let cls = globals
            .get_item(name)?
            .ok_or_else(|| PyTypeError::new_err("Invariant: error class defined"))?;
        m.add(name, &cls)?;
        let _ = cell.set(py, cls.unbind());
    }

    let rec: Vec<(&str, String, usize)> = RECORD_FIELDS
        .iter()
        .map(|&(n, t, o)| (n, format!("={t}"), o))
        .collect();
    let record = make_dtype(py, &rec)?;
    let mut wire = vec![
        ("magic", ">u2".to_owned(), 0usize),
        ("layout_version", "u1".to_owned(), 2),
    ];
    for &(n, t, o) in &RECORD_FIELDS {
        let off = if n == "action" { 3 } else { o };
        wire.push((n, format!(">{t}"), off));
    }
    wire.push(("crc32c", ">u4".to_owned(), 60));
    let wire = make_dtype(py, &wire)?;
    m.add("SIGNAL_RECORD_DTYPE", &record)?;
    m.add("SIGNAL_WIRE_DTYPE", &wire)?;
    let _ = RECORD_DTYPE.set(py, record.unbind());
    let _ = WIRE_DTYPE.set(py, wire.unbind());
    let _ = NP_EMPTY.set(py, py.import("numpy")?.getattr("empty")?.unbind());

    m.add("SIGNAL_SIZE", SIGNAL_SIZE)?;
    m.add("MAGIC", codec::MAGIC)?;
    m.add("LAYOUT_VERSION", codec::LAYOUT_VERSION)?;
    m.add("ACTION_HOLD", codec::ACTION_HOLD)?;
    m.add("ACTION_BUY", codec::ACTION_BUY)?;
    m.add("ACTION_SELL", codec::ACTION_SELL)?;
    m.add("FLAG_CANARY", codec::FLAG_CANARY)?;
    m.add("FLAG_CONTEXT_STALE", codec::FLAG_CONTEXT_STALE)?;
    m.add("FLAG_FALLBACK", codec::FLAG_FALLBACK)?;
    m.add("FLAG_COALESCED", codec::FLAG_COALESCED)?;
    m.add("FLAG_HALTED", codec::FLAG_HALTED)?;
    m.add("FLAGS_DEFINED", codec::FLAGS_DEFINED)?;
    m.add("GIL_RELEASE_MIN_SIGNALS", GIL_RELEASE_MIN_SIGNALS)?;

    m.add_function(wrap_pyfunction!(py_crc32c, m)?)?;
    m.add_function(wrap_pyfunction!(pack_signal, m)?)?;
    m.add_function(wrap_pyfunction!(pack_into, m)?)?;
    m.add_function(wrap_pyfunction!(pack, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(unpack, m)?)?;
    m.add_function(wrap_pyfunction!(unpack_into, m)?)?;
    Ok(())
}

/// Builds an instance of one of the module's exception classes.
pub(crate) fn offset_error(
    py: Python<'_>,
    cell: &PyOnceLock<Py<PyAny>>,
    message: String,
    offset: usize,
) -> PyErr {
    match cell.get(py) {
        Some(cls) => match cls.bind(py).call1((message, offset)) {
            Ok(e) => PyErr::from_value(e),
            Err(e) => e,
        },
        None => PyValueError::new_err(message),
    }
}

/// Signal errors: `OutputTooSmall` is a plain `ValueError` (nothing is wrong with the data),
/// everything else a `SignalFormatError` carrying the offset.
pub(crate) fn to_pyerr(py: Python<'_>, e: &SignalError, base: usize) -> PyErr {
    if let SignalErrorKind::OutputTooSmall { .. } = e.kind {
        return PyValueError::new_err(e.to_string());
    }
    let shifted = SignalError {
        kind: e.kind.clone(),
        offset: e.offset + base,
    };
    offset_error(
        py,
        &SIGNAL_FORMAT_ERROR,
        shifted.to_string(),
        shifted.offset,
    )
}

fn record_dtype(py: Python<'_>) -> &Bound<'_, PyAny> {
    RECORD_DTYPE
        .get(py)
        .expect("Invariant: dtype set at module init")
        .bind(py)
}

/// Checks that `records` is an array of `SIGNAL_RECORD_DTYPE` and returns its bytes.
fn record_buffer(records: &Bound<'_, PyAny>, writable: bool) -> PyResult<ByteBuffer> {
    let py = records.py();
    let want = record_dtype(py);
    let ok = match records.getattr(pyo3::intern!(py, "dtype")) {
        Ok(dt) => dt.eq(want)?,
        Err(_) => false,
    };
    if !ok {
        let got = records
            .getattr("dtype")
            .map_or_else(|_| records.get_type().to_string(), |d| d.to_string());
        return Err(PyTypeError::new_err(format!(
            "records must be a numpy array of SIGNAL_RECORD_DTYPE, got {got}"
        )));
    }
    ByteBuffer::get(records, writable, "records")
}

/// Runs `f` with the GIL released when `n` signals make it worth it.
pub(crate) fn maybe_detach<T: Send>(py: Python<'_>, n: usize, f: impl FnOnce() -> T + Send) -> T {
    if n >= GIL_RELEASE_MIN_SIGNALS {
        py.detach(f)
    } else {
        f()
    }
}

/// CRC-32C (Castagnoli) of `data`, continuing from `value` (0 to start).
#[pyfunction(name = "crc32c")]
#[pyo3(signature = (data, value = 0))]
fn py_crc32c(data: &Bound<'_, PyAny>, value: u32) -> PyResult<u32> {
    let b = ByteBuffer::get(data, false, "data")?;
    Ok(codec::crc32c_append(value, b.as_slice()))
}

/// Packs one signal into 64 wire bytes.
#[pyfunction]
#[pyo3(signature = (
    action, symbol_id, sequence, event_ts_ns, emit_ts_ns, confidence, price_target, stop_loss,
    position_size, risk_score = 0, urgency = 0, strategy_id = 0, model_version = 0, flags = 0,
    context_version = 0
))]
#[allow(clippy::too_many_arguments)]
fn pack_signal(
    py: Python<'_>,
    action: u8,
    symbol_id: u32,
    sequence: u64,
    event_ts_ns: u64,
    emit_ts_ns: u64,
    confidence: f32,
    price_target: f32,
    stop_loss: f32,
    position_size: f32,
    risk_score: u8,
    urgency: u8,
    strategy_id: u16,
    model_version: u16,
    flags: u16,
    context_version: u32,
) -> PyResult<Bound<'_, PyBytes>> {
    let s = Signal {
        action,
        symbol_id,
        sequence,
        event_ts_ns,
        emit_ts_ns,
        confidence,
        price_target,
        stop_loss,
        position_size,
        risk_score,
        urgency,
        strategy_id,
        model_version,
        flags,
        context_version,
    };
    s.check(0).map_err(|e| to_pyerr(py, &e, 0))?;
    PyBytes::new_with(py, SIGNAL_SIZE, |out| {
        let out: &mut [u8; SIGNAL_SIZE] = out.try_into().expect("Invariant: 64-byte bytes");
        s.encode_into(out);
        Ok(())
    })
}

/// Packs every record into `out[offset:]`; returns the number of bytes written.
#[pyfunction]
#[pyo3(signature = (records, out, offset = 0))]
fn pack_into(
    py: Python<'_>,
    records: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    offset: usize,
) -> PyResult<usize> {
    let rec = record_buffer(records, false)?;
    let mut dst = ByteBuffer::get(out, true, "out")?;
    dst.check_disjoint(&rec, "out")?;
    let needed = rec.len();
    check_room(offset, needed, dst.len(), "out")?;
    let n = needed / SIGNAL_SIZE;
    let src = rec.as_slice();
    let dst_slice = &mut dst.as_mut_slice()[offset..offset + needed];
    maybe_detach(py, n, || codec::pack_records(src, dst_slice)).map_err(|e| to_pyerr(py, &e, 0))
}

/// Packs every record into new bytes.
#[pyfunction]
fn pack<'py>(py: Python<'py>, records: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let rec = record_buffer(records, false)?;
    let src = rec.as_slice();
    let mut result = Ok(0);
    let bytes = PyBytes::new_with(py, src.len(), |out| {
        result = maybe_detach(py, src.len() / SIGNAL_SIZE, || {
            codec::pack_records(src, out)
        });
        Ok(())
    })?;
    result.map_err(|e| to_pyerr(py, &e, 0))?;
    Ok(bytes)
}

/// Validates every signal in `buf`; returns how many there are.
#[pyfunction]
fn validate(py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<usize> {
    let b = ByteBuffer::get(buf, false, "buf")?;
    let src = b.as_slice();
    maybe_detach(py, src.len() / SIGNAL_SIZE, || codec::validate(src))
        .map_err(|e| to_pyerr(py, &e, 0))
}

/// Validates `buf` and decodes it into a new array of `SIGNAL_RECORD_DTYPE`.
#[pyfunction]
fn unpack<'py>(py: Python<'py>, buf: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let b = ByteBuffer::get(buf, false, "buf")?;
    let n = codec::signal_count(b.len()).map_err(|e| to_pyerr(py, &e, 0))?;
    let arr = NP_EMPTY
        .get(py)
        .expect("Invariant: set at module init")
        .bind(py)
        .call1((n, record_dtype(py)))?;
    let mut dst = ByteBuffer::get(&arr, true, "records")?;
    let src = b.as_slice();
    let dst_slice = dst.as_mut_slice();
    maybe_detach(py, n, || codec::unpack_records(src, dst_slice))
        .map_err(|e| to_pyerr(py, &e, 0))?;
    drop(dst);
    Ok(arr)
}

/// Validates `buf` and decodes it into `records[:n]`; returns `n`.
#[pyfunction]
fn unpack_into(
    py: Python<'_>,
    buf: &Bound<'_, PyAny>,
    records: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    let b = ByteBuffer::get(buf, false, "buf")?;
    let n = codec::signal_count(b.len()).map_err(|e| to_pyerr(py, &e, 0))?;
    let mut dst = record_buffer(records, true)?;
    dst.check_disjoint(&b, "records")?;
    if dst.len() < b.len() {
        return Err(PyValueError::new_err(format!(
            "records too small: {n} signals in buf, room for {}",
            dst.len() / SIGNAL_SIZE
        )));
    }
    let src = b.as_slice();
    let dst_slice = dst.as_mut_slice();
    maybe_detach(py, n, || codec::unpack_records(src, dst_slice)).map_err(|e| to_pyerr(py, &e, 0))
}

/// Decodes already length-checked wire bytes into a new record array (used by the framing).
pub(crate) fn unpack_bytes<'py>(
    py: Python<'py>,
    wire: &[u8],
    base_offsets: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let n = wire.len() / SIGNAL_SIZE;
    let arr = NP_EMPTY
        .get(py)
        .expect("Invariant: set at module init")
        .bind(py)
        .call1((n, record_dtype(py)))?;
    let mut dst = ByteBuffer::get(&arr, true, "records")?;
    if let Err(e) = codec::unpack_records(wire, dst.as_mut_slice()) {
        let i = e.offset / SIGNAL_SIZE;
        let base = base_offsets.get(i).copied().unwrap_or(0);
        return Err(to_pyerr(
            py,
            &SignalError {
                kind: e.kind,
                offset: 0,
            },
            base,
        ));
    }
    drop(dst);
    Ok(arr)
}
