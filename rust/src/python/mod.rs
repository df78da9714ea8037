//! PyO3 bindings: the `relentless_fast_signal._signal` extension module.

mod buffer;
mod framing;
mod signal;

use pyo3::prelude::*;

/// 64-byte trading-signal codec (layout v1) with MoldUDP64 and SoupBinTCP framing.
#[pymodule]
fn _signal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "build_profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    signal::register(m)?;
    framing::register(m)?;
    Ok(())
}
