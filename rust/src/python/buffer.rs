//! Byte views of any object exporting the buffer protocol (bytes, bytearray, memoryview, mmap,
//! numpy arrays of any dtype), C-contiguous, optionally writable.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

/// A held `Py_buffer`, released on drop. The bytes stay valid (the exporter is pinned) while it
/// lives; a bytearray cannot be resized while it is held.
pub(crate) struct ByteBuffer {
    // Boxed: the exporter may keep pointers into the `Py_buffer` it filled.
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the buffer only exposes the exporter's memory, which stays allocated while the view is
// held; release happens in `Drop`, which re-attaches to the interpreter first.
unsafe impl Send for ByteBuffer {}

impl ByteBuffer {
    /// Requests a contiguous byte view of `obj`; `what` names the argument in errors.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool, what: &str) -> PyResult<Self> {
        let mut view = Box::new(ffi::Py_buffer::new());
        let flags = if writable {
            ffi::PyBUF_SIMPLE | ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: `obj` is a live object and `view` a valid, exclusively owned Py_buffer.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &raw mut *view, flags) };
        if rc != 0 {
            let cause = PyErr::fetch(obj.py());
            let kind = if writable {
                "a writable, C-contiguous buffer (bytearray, numpy array, memoryview)"
            } else {
                "a C-contiguous buffer (bytes, bytearray, memoryview, numpy array)"
            };
            let err = PyTypeError::new_err(format!(
                "{what} must be {kind}, got {}: {cause}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string())
            ));
            err.set_cause(obj.py(), Some(cause));
            return Err(err);
        }
        Ok(Self { view })
    }

    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0)
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: the exporter guarantees `len` readable bytes at `buf` while the view is held.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>().cast_const(), self.len()) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.len() == 0 {
            return &mut [];
        }
        debug_assert!(
            self.view.readonly == 0,
            "Invariant: requested with PyBUF_WRITABLE"
        );
        // SAFETY: requested with PyBUF_WRITABLE, so `len` bytes at `buf` are writable; `&mut self`
        // makes this the only Rust reference (other Python threads writing the same memory
        // concurrently is a data race the caller owns, as for any buffer-protocol consumer).
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), self.len()) }
    }
}

impl ByteBuffer {
    fn range(&self) -> (usize, usize) {
        let start = self.view.buf as usize;
        (start, start + self.len())
    }

    /// Refuses an output that shares memory with an input: Rust must not read through `&[u8]`
    /// what it writes through `&mut [u8]`.
    pub(crate) fn check_disjoint(&self, input: &ByteBuffer, what: &str) -> PyResult<()> {
        let (a0, a1) = self.range();
        let (b0, b1) = input.range();
        if a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1 {
            return Err(PyValueError::new_err(format!(
                "{what} overlaps the input buffer; pass a separate output buffer"
            )));
        }
        Ok(())
    }
}

impl Drop for ByteBuffer {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released once.
            unsafe { ffi::PyBuffer_Release(&raw mut *self.view) };
        });
    }
}

/// Checks `offset` against a buffer of `len` bytes that must take `needed` more bytes.
pub(crate) fn check_room(offset: usize, needed: usize, len: usize, what: &str) -> PyResult<()> {
    if offset > len || len - offset < needed {
        return Err(PyValueError::new_err(format!(
            "{what} too small: {needed} bytes needed at offset {offset}, buffer has {len} bytes \
             ({} available)",
            len.saturating_sub(offset)
        )));
    }
    Ok(())
}
