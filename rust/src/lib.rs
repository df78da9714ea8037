//! relentless-fast signal codec: 64-byte signals (layout v1) and their transport framing.
//!
//! The pure Rust core ([`signal`], [`moldudp64`], [`soupbintcp`]) has no Python dependency; the
//! PyO3 bindings live in `python/` behind the `python` feature and build the
//! `relentless_fast_signal._signal` extension module.

pub mod error;
pub mod moldudp64;
pub mod signal;
pub mod soupbintcp;

#[cfg(feature = "python")]
mod python;

pub use error::{FramingError, SignalError, SignalErrorKind};
pub use signal::{Signal, WireSignal, SIGNAL_SIZE};
