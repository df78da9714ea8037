//! Signal layout v1: 64 bytes, big-endian, CRC-32C of bytes 0..60 in bytes 60..64.
//!
//! Two representations of one signal:
//! - the **wire** form, 64 big-endian bytes ([`WireSignal`], what goes on the network);
//! - the **record** form, the native-endian, naturally aligned C struct [`Signal`] whose bytes are
//!   exactly one element of the Python `SIGNAL_RECORD_DTYPE` (numpy `align=True`). Its field
//!   offsets equal the wire offsets except `action` (record 0, wire 3); bytes 1..4 and 60..64 of a
//!   record are padding and are ignored.

use crate::error::{SignalError, SignalErrorKind};

/// Size of one signal on the wire and of one record in memory.
pub const SIGNAL_SIZE: usize = 64;
/// Bytes 0..2 of every signal ("RF").
pub const MAGIC: u16 = 0x5246;
/// Byte 2: the layout this codec writes and reads.
pub const LAYOUT_VERSION: u8 = 1;
/// Number of leading bytes covered by the CRC.
pub const CRC_COVERED: usize = 60;

pub const ACTION_HOLD: u8 = 0;
pub const ACTION_BUY: u8 = 1;
pub const ACTION_SELL: u8 = 2;

pub const FLAG_CANARY: u16 = 1 << 0;
pub const FLAG_CONTEXT_STALE: u16 = 1 << 1;
pub const FLAG_FALLBACK: u16 = 1 << 2;
pub const FLAG_COALESCED: u16 = 1 << 3;
pub const FLAG_HALTED: u16 = 1 << 4;
/// Every flag bit layout v1 defines; the others are reserved (zero when packed, ignored on read).
pub const FLAGS_DEFINED: u16 =
    FLAG_CANARY | FLAG_CONTEXT_STALE | FLAG_FALLBACK | FLAG_COALESCED | FLAG_HALTED;

/// Byte offsets of the wire fields.
pub mod wire {
    pub const MAGIC: usize = 0;
    pub const LAYOUT_VERSION: usize = 2;
    pub const ACTION: usize = 3;
    pub const SYMBOL_ID: usize = 4;
    pub const SEQUENCE: usize = 8;
    pub const EVENT_TS_NS: usize = 16;
    pub const EMIT_TS_NS: usize = 24;
    pub const CONFIDENCE: usize = 32;
    pub const PRICE_TARGET: usize = 36;
    pub const STOP_LOSS: usize = 40;
    pub const POSITION_SIZE: usize = 44;
    pub const RISK_SCORE: usize = 48;
    pub const URGENCY: usize = 49;
    pub const STRATEGY_ID: usize = 50;
    pub const MODEL_VERSION: usize = 52;
    pub const FLAGS: usize = 54;
    pub const CONTEXT_VERSION: usize = 56;
    pub const CRC32C: usize = 60;
}

/// CRC-32C (Castagnoli, reflected, init and xor-out `0xFFFF_FFFF`); uses the CPU instruction
/// where present. `crc32c(b"123456789") == 0xE306_9283`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC-32C over more data: `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// One signal's fields (the record form). `#[repr(C)]`: identical to `SIGNAL_RECORD_DTYPE`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Signal {
    /// 0 hold, 1 buy, 2 sell.
    pub action: u8,
    pub symbol_id: u32,
    /// Per engine session, 1-based; equals the MoldUDP64 / SoupBinTCP message sequence.
    pub sequence: u64,
    /// Exchange timestamp of the triggering tick, CLOCK_REALTIME ns since the epoch.
    pub event_ts_ns: u64,
    /// Emission time, CLOCK_REALTIME ns since the epoch.
    pub emit_ts_ns: u64,
    pub confidence: f32,
    pub price_target: f32,
    pub stop_loss: f32,
    pub position_size: f32,
    pub risk_score: u8,
    pub urgency: u8,
    pub strategy_id: u16,
    pub model_version: u16,
    pub flags: u16,
    pub context_version: u32,
}

const _: () = assert!(std::mem::size_of::<Signal>() == SIGNAL_SIZE);
const _: () = assert!(std::mem::align_of::<Signal>() == 8);

#[inline]
fn rd<const N: usize>(b: &[u8; SIGNAL_SIZE], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

impl Signal {
    /// Checks the fields that packing refuses: an unknown action or a reserved flag bit.
    /// `offset` is reported in the error.
    #[inline]
    pub fn check(&self, offset: usize) -> Result<(), SignalError> {
        if self.action > ACTION_SELL {
            return Err(SignalError::new(
                SignalErrorKind::Action { found: self.action },
                offset,
            ));
        }
        if self.flags & !FLAGS_DEFINED != 0 {
            return Err(SignalError::new(
                SignalErrorKind::Flags { found: self.flags },
                offset,
            ));
        }
        Ok(())
    }

    /// Writes the 64 wire bytes (magic, version, fields, CRC). Does not [`check`](Self::check).
    #[inline]
    pub fn encode_into(&self, out: &mut [u8; SIGNAL_SIZE]) {
        self.encode_body(out);
        let crc = crc32c(&out[..CRC_COVERED]);
        out[60..64].copy_from_slice(&crc.to_be_bytes());
    }

    /// Writes bytes 0..60 (everything but the CRC).
    #[inline]
    fn encode_body(&self, out: &mut [u8; SIGNAL_SIZE]) {
        out[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        out[2] = LAYOUT_VERSION;
        out[3] = self.action;
        out[4..8].copy_from_slice(&self.symbol_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.event_ts_ns.to_be_bytes());
        out[24..32].copy_from_slice(&self.emit_ts_ns.to_be_bytes());
        out[32..36].copy_from_slice(&self.confidence.to_bits().to_be_bytes());
        out[36..40].copy_from_slice(&self.price_target.to_bits().to_be_bytes());
        out[40..44].copy_from_slice(&self.stop_loss.to_bits().to_be_bytes());
        out[44..48].copy_from_slice(&self.position_size.to_bits().to_be_bytes());
        out[48] = self.risk_score;
        out[49] = self.urgency;
        out[50..52].copy_from_slice(&self.strategy_id.to_be_bytes());
        out[52..54].copy_from_slice(&self.model_version.to_be_bytes());
        out[54..56].copy_from_slice(&self.flags.to_be_bytes());
        out[56..60].copy_from_slice(&self.context_version.to_be_bytes());
    }

    /// The 64 wire bytes of this signal.
    #[inline]
    pub fn encode(&self) -> WireSignal {
        let mut out = [0u8; SIGNAL_SIZE];
        self.encode_into(&mut out);
        WireSignal(out)
    }

    /// Reads one record (native-endian `SIGNAL_RECORD_DTYPE` element bytes).
    #[inline]
    pub fn from_record(r: &[u8; SIGNAL_SIZE]) -> Self {
        Self {
            action: r[0],
            symbol_id: u32::from_ne_bytes(rd(r, 4)),
            sequence: u64::from_ne_bytes(rd(r, 8)),
            event_ts_ns: u64::from_ne_bytes(rd(r, 16)),
            emit_ts_ns: u64::from_ne_bytes(rd(r, 24)),
            confidence: f32::from_bits(u32::from_ne_bytes(rd(r, 32))),
            price_target: f32::from_bits(u32::from_ne_bytes(rd(r, 36))),
            stop_loss: f32::from_bits(u32::from_ne_bytes(rd(r, 40))),
            position_size: f32::from_bits(u32::from_ne_bytes(rd(r, 44))),
            risk_score: r[48],
            urgency: r[49],
            strategy_id: u16::from_ne_bytes(rd(r, 50)),
            model_version: u16::from_ne_bytes(rd(r, 52)),
            flags: u16::from_ne_bytes(rd(r, 54)),
            context_version: u32::from_ne_bytes(rd(r, 56)),
        }
    }

    /// Writes this signal as one record (padding bytes zeroed).
    #[inline]
    pub fn to_record(&self, r: &mut [u8; SIGNAL_SIZE]) {
        r[0] = self.action;
        r[1..4].fill(0);
        r[4..8].copy_from_slice(&self.symbol_id.to_ne_bytes());
        r[8..16].copy_from_slice(&self.sequence.to_ne_bytes());
        r[16..24].copy_from_slice(&self.event_ts_ns.to_ne_bytes());
        r[24..32].copy_from_slice(&self.emit_ts_ns.to_ne_bytes());
        r[32..36].copy_from_slice(&self.confidence.to_bits().to_ne_bytes());
        r[36..40].copy_from_slice(&self.price_target.to_bits().to_ne_bytes());
        r[40..44].copy_from_slice(&self.stop_loss.to_bits().to_ne_bytes());
        r[44..48].copy_from_slice(&self.position_size.to_bits().to_ne_bytes());
        r[48] = self.risk_score;
        r[49] = self.urgency;
        r[50..52].copy_from_slice(&self.strategy_id.to_ne_bytes());
        r[52..54].copy_from_slice(&self.model_version.to_ne_bytes());
        r[54..56].copy_from_slice(&self.flags.to_ne_bytes());
        r[56..60].copy_from_slice(&self.context_version.to_ne_bytes());
        r[60..64].fill(0);
    }
}

/// 64 wire bytes with big-endian accessors. Construction does not validate: call
/// [`WireSignal::validate`] (or use [`decode`]) before trusting the fields.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct WireSignal(pub [u8; SIGNAL_SIZE]);

impl std::fmt::Debug for WireSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireSignal(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

macro_rules! be_accessor {
    ($name:ident, $ty:ty, $off:expr) => {
        #[inline]
        pub fn $name(&self) -> $ty {
            <$ty>::from_be_bytes(rd(&self.0, $off))
        }
    };
}

impl WireSignal {
    be_accessor!(magic, u16, wire::MAGIC);
    be_accessor!(symbol_id, u32, wire::SYMBOL_ID);
    be_accessor!(sequence, u64, wire::SEQUENCE);
    be_accessor!(event_ts_ns, u64, wire::EVENT_TS_NS);
    be_accessor!(emit_ts_ns, u64, wire::EMIT_TS_NS);
    be_accessor!(strategy_id, u16, wire::STRATEGY_ID);
    be_accessor!(model_version, u16, wire::MODEL_VERSION);
    be_accessor!(flags, u16, wire::FLAGS);
    be_accessor!(context_version, u32, wire::CONTEXT_VERSION);
    be_accessor!(crc32c, u32, wire::CRC32C);

    #[inline]
    pub fn layout_version(&self) -> u8 {
        self.0[wire::LAYOUT_VERSION]
    }
    #[inline]
    pub fn action(&self) -> u8 {
        self.0[wire::ACTION]
    }
    #[inline]
    pub fn risk_score(&self) -> u8 {
        self.0[wire::RISK_SCORE]
    }
    #[inline]
    pub fn urgency(&self) -> u8 {
        self.0[wire::URGENCY]
    }
    #[inline]
    pub fn confidence(&self) -> f32 {
        f32::from_bits(u32::from_be_bytes(rd(&self.0, wire::CONFIDENCE)))
    }
    #[inline]
    pub fn price_target(&self) -> f32 {
        f32::from_bits(u32::from_be_bytes(rd(&self.0, wire::PRICE_TARGET)))
    }
    #[inline]
    pub fn stop_loss(&self) -> f32 {
        f32::from_bits(u32::from_be_bytes(rd(&self.0, wire::STOP_LOSS)))
    }
    #[inline]
    pub fn position_size(&self) -> f32 {
        f32::from_bits(u32::from_be_bytes(rd(&self.0, wire::POSITION_SIZE)))
    }

    /// CRC-32C of bytes 0..60 as computed now.
    #[inline]
    pub fn computed_crc32c(&self) -> u32 {
        crc32c(&self.0[..CRC_COVERED])
    }

    /// Checks magic, layout version, CRC and action, in that order; `offset` goes into the error.
    #[inline]
    pub fn validate(&self, offset: usize) -> Result<(), SignalError> {
        validate_one(&self.0, offset)
    }

    /// All fields, after [`validate`](Self::validate).
    pub fn to_signal(&self, offset: usize) -> Result<Signal, SignalError> {
        self.validate(offset)?;
        Ok(self.fields())
    }

    /// All fields, without validation.
    #[inline]
    pub fn fields(&self) -> Signal {
        Signal {
            action: self.action(),
            symbol_id: self.symbol_id(),
            sequence: self.sequence(),
            event_ts_ns: self.event_ts_ns(),
            emit_ts_ns: self.emit_ts_ns(),
            confidence: self.confidence(),
            price_target: self.price_target(),
            stop_loss: self.stop_loss(),
            position_size: self.position_size(),
            risk_score: self.risk_score(),
            urgency: self.urgency(),
            strategy_id: self.strategy_id(),
            model_version: self.model_version(),
            flags: self.flags(),
            context_version: self.context_version(),
        }
    }
}

#[inline]
fn validate_one(b: &[u8; SIGNAL_SIZE], offset: usize) -> Result<(), SignalError> {
    validate_with_crc(b, crc32c(&b[..CRC_COVERED]), offset)
}

/// [`validate_one`] with the CRC of bytes 0..60 already computed (batch paths compute four at a
/// time); the checks and their order are the same.
#[inline]
fn validate_with_crc(
    b: &[u8; SIGNAL_SIZE],
    computed: u32,
    offset: usize,
) -> Result<(), SignalError> {
    let magic = u16::from_be_bytes([b[0], b[1]]);
    if magic != MAGIC {
        return Err(SignalError::new(
            SignalErrorKind::Magic { found: magic },
            offset,
        ));
    }
    if b[2] != LAYOUT_VERSION {
        return Err(SignalError::new(
            SignalErrorKind::Version { found: b[2] },
            offset,
        ));
    }
    let stored = u32::from_be_bytes(rd(b, wire::CRC32C));
    if stored != computed {
        return Err(SignalError::new(
            SignalErrorKind::Crc { stored, computed },
            offset,
        ));
    }
    if b[3] > ACTION_SELL {
        return Err(SignalError::new(
            SignalErrorKind::Action { found: b[3] },
            offset,
        ));
    }
    Ok(())
}

#[inline]
fn chunk(buf: &[u8], at: usize) -> &[u8; SIGNAL_SIZE] {
    buf[at..at + SIGNAL_SIZE]
        .try_into()
        .expect("Invariant: slice is SIGNAL_SIZE long")
}

#[inline]
fn chunk_mut(buf: &mut [u8], at: usize) -> &mut [u8; SIGNAL_SIZE] {
    (&mut buf[at..at + SIGNAL_SIZE])
        .try_into()
        .expect("Invariant: slice is SIGNAL_SIZE long")
}

/// Number of whole signals in `len` bytes, or the `Length` error.
#[inline]
pub fn signal_count(len: usize) -> Result<usize, SignalError> {
    if len % SIGNAL_SIZE != 0 {
        return Err(SignalError::new(
            SignalErrorKind::Length { len },
            len - len % SIGNAL_SIZE,
        ));
    }
    Ok(len / SIGNAL_SIZE)
}

/// Validates every signal in `buf` (a whole number of 64-byte signals); returns how many.
pub fn validate(buf: &[u8]) -> Result<usize, SignalError> {
    let n = signal_count(buf.len())?;
    for_each_checked(buf, |_, _| {})?;
    Ok(n)
}

/// Validates every signal of `buf` (a whole number of signals) in order, calling
/// `f(byte_offset, signal)` for each valid one; stops at the first invalid signal.
#[inline]
fn for_each_checked<F>(buf: &[u8], mut f: F) -> Result<(), SignalError>
where
    F: FnMut(usize, &[u8; SIGNAL_SIZE]),
{
    let mut done = 0usize;
    #[cfg(target_arch = "x86_64")]
    if hw::available() {
        for g in buf.chunks_exact(4 * SIGNAL_SIZE) {
            // SAFETY: SSE4.2 is present (checked above).
            let crcs = unsafe { hw::crc60_x4(g) };
            for (k, crc) in crcs.into_iter().enumerate() {
                let s = chunk(g, k * SIGNAL_SIZE);
                validate_with_crc(s, crc, done)?;
                f(done, s);
                done += SIGNAL_SIZE;
            }
        }
    }
    while done < buf.len() {
        let s = chunk(buf, done);
        validate_one(s, done)?;
        f(done, s);
        done += SIGNAL_SIZE;
    }
    Ok(())
}

/// Decodes one signal from exactly 64 bytes.
pub fn decode(buf: &[u8]) -> Result<Signal, SignalError> {
    if buf.len() != SIGNAL_SIZE {
        return Err(SignalError::new(
            SignalErrorKind::Size { len: buf.len() },
            0,
        ));
    }
    WireSignal(*chunk(buf, 0)).to_signal(0)
}

/// Packs `records` (whole `SIGNAL_RECORD_DTYPE` elements) into `out` as wire signals, starting at
/// `out[0]`; returns the number of bytes written. Refuses an unknown action or a reserved flag bit,
/// naming the record's byte offset in `records`. On error `out` may be partly written.
pub fn pack_records(records: &[u8], out: &mut [u8]) -> Result<usize, SignalError> {
    let n = signal_count(records.len())?;
    let needed = n * SIGNAL_SIZE;
    if out.len() < needed {
        return Err(SignalError::new(
            SignalErrorKind::OutputTooSmall {
                needed,
                available: out.len(),
            },
            0,
        ));
    }
    let out = &mut out[..needed];
    for i in 0..n {
        let at = i * SIGNAL_SIZE;
        let s = Signal::from_record(chunk(records, at));
        s.check(at)?;
        s.encode_body(chunk_mut(out, at));
    }
    fill_crcs(out);
    Ok(needed)
}

/// Writes the CRC of every signal in `out` (a whole number of signals with bodies written).
fn fill_crcs(out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if hw::available() {
        let mut groups = out.chunks_exact_mut(4 * SIGNAL_SIZE);
        for g in &mut groups {
            // SAFETY: SSE4.2 is present (checked above).
            let crcs = unsafe { hw::crc60_x4(g) };
            for (k, c) in crcs.iter().enumerate() {
                let at = k * SIGNAL_SIZE + wire::CRC32C;
                g[at..at + 4].copy_from_slice(&c.to_be_bytes());
            }
        }
        fill_crcs_scalar(groups.into_remainder());
        return;
    }
    fill_crcs_scalar(out);
}

fn fill_crcs_scalar(out: &mut [u8]) {
    for c in out.chunks_exact_mut(SIGNAL_SIZE) {
        let crc = crc32c(&c[..CRC_COVERED]);
        c[CRC_COVERED..].copy_from_slice(&crc.to_be_bytes());
    }
}

/// CRC-32C of four signals at once: the `crc32` instruction has a 3-cycle latency and 1-cycle
/// throughput, so four independent chains run about 3x faster than one after the other.
#[cfg(target_arch = "x86_64")]
mod hw {
    use super::SIGNAL_SIZE;
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64};
    use std::sync::atomic::{AtomicU8, Ordering};

    static STATE: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has SSE4.2 (detected once).
    #[inline]
    pub(super) fn available() -> bool {
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let yes = std::arch::is_x86_feature_detected!("sse4.2");
                STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }

    #[inline]
    fn word(g: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(g[at..at + 8].try_into().expect("8 bytes"))
    }

    /// CRC-32C of bytes 0..60 of each of the four signals in `g` (256 bytes).
    ///
    /// # Safety
    /// The CPU must support SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn crc60_x4(g: &[u8]) -> [u32; 4] {
        debug_assert!(g.len() == 4 * SIGNAL_SIZE, "Invariant: four signals");
        let mut c = [u64::from(u32::MAX); 4];
        for w in 0..7 {
            for (k, ck) in c.iter_mut().enumerate() {
                *ck = _mm_crc32_u64(*ck, word(g, k * SIGNAL_SIZE + w * 8));
            }
        }
        let mut out = [0u32; 4];
        for (k, o) in out.iter_mut().enumerate() {
            let at = k * SIGNAL_SIZE + 56;
            let tail = u32::from_le_bytes(g[at..at + 4].try_into().expect("4 bytes"));
            *o = !_mm_crc32_u32(c[k] as u32, tail);
        }
        out
    }
}

/// Validates every wire signal in `buf` and writes it to `out` as a record; returns the count.
/// On error `out` may be partly written.
pub fn unpack_records(buf: &[u8], out: &mut [u8]) -> Result<usize, SignalError> {
    let n = signal_count(buf.len())?;
    if out.len() < buf.len() {
        return Err(SignalError::new(
            SignalErrorKind::OutputTooSmall {
                needed: buf.len(),
                available: out.len(),
            },
            0,
        ));
    }
    for_each_checked(buf, |at, s| {
        WireSignal(*s).fields().to_record(chunk_mut(out, at));
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Signal {
        Signal {
            action: ACTION_BUY,
            symbol_id: 7,
            sequence: 42,
            event_ts_ns: 1_700_000_000_123_456_789,
            emit_ts_ns: 1_700_000_000_123_500_000,
            confidence: 0.75,
            price_target: 187.25,
            stop_loss: 180.5,
            position_size: 0.5,
            risk_score: 64,
            urgency: 255,
            strategy_id: 3,
            model_version: 2,
            flags: FLAG_CANARY | FLAG_COALESCED,
            context_version: 20_240_601,
        }
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xE306_9283);
    }

    #[test]
    fn round_trip_and_accessors() {
        let s = sample();
        let w = s.encode();
        assert_eq!(w.magic(), MAGIC);
        assert_eq!(w.layout_version(), LAYOUT_VERSION);
        assert_eq!(w.crc32c(), w.computed_crc32c());
        assert_eq!(decode(&w.0).unwrap(), s);
        let mut rec = [0u8; 64];
        s.to_record(&mut rec);
        assert_eq!(Signal::from_record(&rec), s);
    }

    #[test]
    fn every_corruption_is_reported_with_offset() {
        let mut buf = vec![0u8; 3 * 64];
        let mut recs = vec![0u8; 3 * 64];
        for i in 0..3u8 {
            let mut s = sample();
            s.sequence = u64::from(i) + 1;
            s.to_record(chunk_mut(&mut recs, usize::from(i) * 64));
        }
        assert_eq!(pack_records(&recs, &mut buf).unwrap(), 192);
        assert_eq!(validate(&buf).unwrap(), 3);

        let mut bad = buf.clone();
        bad[64] = 0;
        assert!(matches!(
            validate(&bad),
            Err(SignalError {
                kind: SignalErrorKind::Magic { found: 0x0046 },
                offset: 64
            })
        ));
        let mut bad = buf.clone();
        bad[128 + 2] = 2;
        assert!(matches!(
            validate(&bad),
            Err(SignalError {
                kind: SignalErrorKind::Version { found: 2 },
                offset: 128
            })
        ));
        let mut bad = buf.clone();
        bad[128 + 20] ^= 1;
        assert!(matches!(
            validate(&bad).unwrap_err(),
            SignalError {
                kind: SignalErrorKind::Crc { .. },
                offset: 128
            }
        ));
        assert!(matches!(
            validate(&buf[..100]).unwrap_err(),
            SignalError {
                kind: SignalErrorKind::Length { len: 100 },
                offset: 64
            }
        ));
        let mut small = vec![0u8; 100];
        assert!(matches!(
            pack_records(&recs, &mut small).unwrap_err().kind,
            SignalErrorKind::OutputTooSmall {
                needed: 192,
                available: 100
            }
        ));
        let mut bad_rec = recs.clone();
        bad_rec[64] = 3;
        assert_eq!(
            pack_records(&bad_rec, &mut buf).unwrap_err(),
            SignalError::new(SignalErrorKind::Action { found: 3 }, 64)
        );
        let mut bad_rec = recs;
        bad_rec[128 + 54..128 + 56].copy_from_slice(&0x0020u16.to_ne_bytes());
        assert_eq!(
            pack_records(&bad_rec, &mut buf).unwrap_err(),
            SignalError::new(SignalErrorKind::Flags { found: 0x20 }, 128)
        );
    }

    #[test]
    fn batch_paths_report_the_first_bad_signal_in_any_position() {
        let n = 9;
        let mut recs = vec![0u8; n * 64];
        for i in 0..n {
            let mut s = sample();
            s.sequence = i as u64;
            s.to_record(chunk_mut(&mut recs, i * 64));
        }
        let mut good = vec![0u8; n * 64];
        pack_records(&recs, &mut good).unwrap();
        for (i, c) in good.chunks(64).enumerate() {
            let mut one = [0u8; 64];
            let mut s = sample();
            s.sequence = i as u64;
            s.encode_into(&mut one);
            assert_eq!(c, one, "batch CRC differs from single CRC at {i}");
        }
        let mut out = vec![0u8; n * 64];
        assert_eq!(unpack_records(&good, &mut out).unwrap(), n);
        assert_eq!(out, recs);
        for i in 0..n {
            for (byte, kind) in [(0usize, "magic"), (2, "version"), (20, "crc"), (62, "crc")] {
                let mut bad = good.clone();
                bad[i * 64 + byte] ^= 0x10;
                // A later corruption must not hide this one.
                bad[(n - 1) * 64] ^= u8::from(i + 1 < n);
                for err in [
                    validate(&bad).unwrap_err(),
                    unpack_records(&bad, &mut out).unwrap_err(),
                ] {
                    assert_eq!(err.offset, i * 64, "{kind} at {i}");
                    let got = match err.kind {
                        SignalErrorKind::Magic { .. } => "magic",
                        SignalErrorKind::Version { .. } => "version",
                        SignalErrorKind::Crc { .. } => "crc",
                        _ => "other",
                    };
                    assert_eq!(got, kind);
                }
            }
        }
    }

    #[test]
    fn unpack_matches_pack() {
        let mut recs = vec![0u8; 64];
        sample().to_record(chunk_mut(&mut recs, 0));
        let mut wire_buf = vec![0u8; 64];
        pack_records(&recs, &mut wire_buf).unwrap();
        let mut back = vec![0xAAu8; 64];
        assert_eq!(unpack_records(&wire_buf, &mut back).unwrap(), 1);
        assert_eq!(back, recs);
    }
}
