//! Errors of the codec and the framing: every one names the byte offset where it was found.

use std::fmt;

/// What was wrong with a signal buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalErrorKind {
    /// The buffer length is not a multiple of 64 (or is too short for what was asked).
    Length { len: usize },
    /// Exactly one signal (64 bytes) was expected.
    Size { len: usize },
    /// Bytes 0..2 are not `0x5246`.
    Magic { found: u16 },
    /// Byte 2 is not a layout version this codec reads.
    Version { found: u8 },
    /// The stored CRC-32C does not match the one computed over bytes 0..60.
    Crc { stored: u32, computed: u32 },
    /// Byte 3 is not 0 (hold), 1 (buy) or 2 (sell).
    Action { found: u8 },
    /// Reserved flag bits (5..16) are set in a signal we are asked to pack.
    Flags { found: u16 },
    /// The destination buffer cannot hold the packed signals.
    OutputTooSmall { needed: usize, available: usize },
}

/// A signal that failed to pack or validate, with the byte offset of the signal concerned
/// (for `Length`/`OutputTooSmall`, the offset where the problem starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalError {
    pub kind: SignalErrorKind,
    pub offset: usize,
}

impl SignalError {
    #[cold]
    #[inline(never)]
    pub(crate) fn new(kind: SignalErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let off = self.offset;
        match self.kind {
            SignalErrorKind::Length { len } => write!(
                f,
                "signal buffer length {len} is not a multiple of 64 \
                 (trailing {} bytes start at byte offset {off})",
                len % 64
            ),
            SignalErrorKind::Size { len } => write!(
                f,
                "expected exactly one 64-byte signal, got {len} bytes (at byte offset {off})"
            ),
            SignalErrorKind::Magic { found } => write!(
                f,
                "bad magic 0x{found:04X} (expected 0x5246) in signal at byte offset {off}"
            ),
            SignalErrorKind::Version { found } => write!(
                f,
                "unsupported layout version {found} (expected 1) in signal at byte offset {off}"
            ),
            SignalErrorKind::Crc { stored, computed } => write!(
                f,
                "CRC-32C mismatch in signal at byte offset {off}: stored 0x{stored:08X}, \
                 computed 0x{computed:08X}"
            ),
            SignalErrorKind::Action { found } => write!(
                f,
                "bad action {found} (expected 0 hold, 1 buy or 2 sell) in signal at byte offset {off}"
            ),
            SignalErrorKind::Flags { found } => write!(
                f,
                "reserved flag bits set (flags 0x{found:04X}, only bits 0-4 are defined) \
                 in signal at byte offset {off}"
            ),
            SignalErrorKind::OutputTooSmall { needed, available } => write!(
                f,
                "output buffer too small: {needed} bytes needed from byte offset {off}, \
                 {available} available"
            ),
        }
    }
}

impl std::error::Error for SignalError {}

/// A malformed or unencodable MoldUDP64 / SoupBinTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError {
    /// Human-readable reason (without the offset).
    pub reason: String,
    /// Byte offset in the packet (or, for the SoupBinTCP stream decoder, in the stream).
    pub offset: usize,
}

impl FramingError {
    #[cold]
    #[inline(never)]
    pub(crate) fn new(reason: impl Into<String>, offset: usize) -> Self {
        Self {
            reason: reason.into(),
            offset,
        }
    }
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte offset {})", self.reason, self.offset)
    }
}

impl std::error::Error for FramingError {}
