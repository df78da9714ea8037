//! SoupBinTCP 3.00 logical packets and a streaming decoder for a TCP byte stream.
//!
//! Packet = length u16 big-endian (1 + payload bytes) · type (1 ASCII byte) · payload.
//! Text fields are ASCII, space-padded: username/password left-justified, session and sequence
//! numbers right-justified (decimal). Decoders strip spaces on both sides and accept leading zeros.

use crate::error::FramingError;
use crate::signal::SIGNAL_SIZE;

pub const USERNAME_SIZE: usize = 6;
pub const PASSWORD_SIZE: usize = 10;
pub const SESSION_SIZE: usize = 10;
pub const SEQUENCE_SIZE: usize = 20;
/// Largest packet-length field value (type byte + payload).
pub const MAX_PACKET_LENGTH: usize = 0xFFFF;
/// Bytes one 64-byte signal takes as an `S` packet: length (2) + type (1) + payload.
pub const SIGNAL_PACKET_SIZE: usize = 3 + SIGNAL_SIZE;

pub const DEBUG: u8 = b'+';
pub const LOGIN_ACCEPTED: u8 = b'A';
pub const LOGIN_REJECTED: u8 = b'J';
pub const SEQUENCED_DATA: u8 = b'S';
pub const SERVER_HEARTBEAT: u8 = b'H';
pub const END_OF_SESSION: u8 = b'Z';
pub const LOGIN_REQUEST: u8 = b'L';
pub const UNSEQUENCED_DATA: u8 = b'U';
pub const CLIENT_HEARTBEAT: u8 = b'R';
pub const LOGOUT_REQUEST: u8 = b'O';

/// `J` reject reason: not authorized (bad username/password).
pub const REJECT_NOT_AUTHORIZED: u8 = b'A';
/// `J` reject reason: requested session not available.
pub const REJECT_SESSION_NOT_AVAILABLE: u8 = b'S';

/// One logical packet. Text fields hold the value without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Debug(&'a [u8]),
    LoginAccepted {
        session: &'a [u8],
        sequence: u64,
    },
    LoginRejected {
        reason: u8,
    },
    SequencedData(&'a [u8]),
    ServerHeartbeat,
    EndOfSession,
    LoginRequest {
        username: &'a [u8],
        password: &'a [u8],
        session: &'a [u8],
        sequence: u64,
    },
    UnsequencedData(&'a [u8]),
    ClientHeartbeat,
    LogoutRequest,
}

/// Payload size rule of a packet type.
enum PayloadSize {
    Variable,
    Fixed(usize),
}

/// The payload rule of `ptype`, `None` for an unknown type.
fn payload_size(ptype: u8) -> Option<PayloadSize> {
    Some(match ptype {
        DEBUG | SEQUENCED_DATA | UNSEQUENCED_DATA => PayloadSize::Variable,
        LOGIN_ACCEPTED => PayloadSize::Fixed(SESSION_SIZE + SEQUENCE_SIZE),
        LOGIN_REJECTED => PayloadSize::Fixed(1),
        LOGIN_REQUEST => {
            PayloadSize::Fixed(USERNAME_SIZE + PASSWORD_SIZE + SESSION_SIZE + SEQUENCE_SIZE)
        }
        SERVER_HEARTBEAT | END_OF_SESSION | CLIENT_HEARTBEAT | LOGOUT_REQUEST => {
            PayloadSize::Fixed(0)
        }
        _ => return None,
    })
}

fn check_text(field: &str, v: &[u8], max: usize) -> Result<(), FramingError> {
    if v.len() > max {
        return Err(FramingError::new(
            format!("{field} is {} bytes, at most {max} allowed", v.len()),
            0,
        ));
    }
    if let Some(i) = v.iter().position(|b| !(0x21..=0x7E).contains(b)) {
        return Err(FramingError::new(
            format!(
                "{field} byte 0x{:02X} is not printable ASCII without spaces",
                v[i]
            ),
            i,
        ));
    }
    Ok(())
}

fn put_left(out: &mut Vec<u8>, v: &[u8], width: usize) {
    out.extend_from_slice(v);
    out.resize(out.len() + width - v.len(), b' ');
}

fn put_right(out: &mut Vec<u8>, v: &[u8], width: usize) {
    out.resize(out.len() + width - v.len(), b' ');
    out.extend_from_slice(v);
}

fn put_number(out: &mut Vec<u8>, n: u64) {
    let digits = n.to_string();
    put_right(out, digits.as_bytes(), SEQUENCE_SIZE);
}

impl Packet<'_> {
    /// The packet-type byte.
    pub fn packet_type(&self) -> u8 {
        match self {
            Self::Debug(_) => DEBUG,
            Self::LoginAccepted { .. } => LOGIN_ACCEPTED,
            Self::LoginRejected { .. } => LOGIN_REJECTED,
            Self::SequencedData(_) => SEQUENCED_DATA,
            Self::ServerHeartbeat => SERVER_HEARTBEAT,
            Self::EndOfSession => END_OF_SESSION,
            Self::LoginRequest { .. } => LOGIN_REQUEST,
            Self::UnsequencedData(_) => UNSEQUENCED_DATA,
            Self::ClientHeartbeat => CLIENT_HEARTBEAT,
            Self::LogoutRequest => LOGOUT_REQUEST,
        }
    }

    /// Appends the encoded packet (length, type, padded payload) to `out`. Checks field sizes,
    /// ASCII-ness and the 65535-byte packet limit; on error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FramingError> {
        match self {
            Self::Debug(p) | Self::SequencedData(p) | Self::UnsequencedData(p)
                if p.len() + 1 > MAX_PACKET_LENGTH =>
            {
                return Err(FramingError::new(
                    format!(
                        "payload of {} bytes exceeds the {} bytes a packet can carry",
                        p.len(),
                        MAX_PACKET_LENGTH - 1
                    ),
                    0,
                ));
            }
            Self::LoginAccepted { session, .. } => check_text("session", session, SESSION_SIZE)?,
            Self::LoginRejected { reason }
                if ![REJECT_NOT_AUTHORIZED, REJECT_SESSION_NOT_AVAILABLE].contains(reason) =>
            {
                return Err(FramingError::new(
                    format!("reject reason 0x{reason:02X} is not 'A' or 'S'"),
                    0,
                ));
            }
            Self::LoginRequest {
                username,
                password,
                session,
                ..
            } => {
                check_text("username", username, USERNAME_SIZE)?;
                check_text("password", password, PASSWORD_SIZE)?;
                check_text("session", session, SESSION_SIZE)?;
            }
            _ => {}
        }
        let start = out.len();
        out.extend_from_slice(&[0, 0, self.packet_type()]);
        match self {
            Self::Debug(p) | Self::SequencedData(p) | Self::UnsequencedData(p) => {
                out.extend_from_slice(p);
            }
            Self::LoginAccepted { session, sequence } => {
                put_right(out, session, SESSION_SIZE);
                put_number(out, *sequence);
            }
            Self::LoginRejected { reason } => out.push(*reason),
            Self::LoginRequest {
                username,
                password,
                session,
                sequence,
            } => {
                put_left(out, username, USERNAME_SIZE);
                put_left(out, password, PASSWORD_SIZE);
                put_right(out, session, SESSION_SIZE);
                put_number(out, *sequence);
            }
            _ => {}
        }
        let len = (out.len() - start - 2) as u16;
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn trim_spaces(v: &[u8]) -> &[u8] {
    let a = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    let b = v.iter().rposition(|&b| b != b' ').map_or(a, |i| i + 1);
    &v[a..b]
}

fn text_field<'a>(name: &str, v: &'a [u8], at: usize) -> Result<&'a [u8], FramingError> {
    let t = trim_spaces(v);
    if let Some(i) = v.iter().position(|b| !(0x20..=0x7E).contains(b)) {
        return Err(FramingError::new(
            format!("{name} byte 0x{:02X} is not printable ASCII", v[i]),
            at + i,
        ));
    }
    Ok(t)
}

fn number_field(name: &str, v: &[u8], at: usize) -> Result<u64, FramingError> {
    let t = trim_spaces(v);
    let lead = v.iter().position(|&b| b != b' ').unwrap_or(0);
    if t.is_empty() {
        return Err(FramingError::new(format!("{name} is blank"), at));
    }
    let mut n: u64 = 0;
    for (i, &b) in t.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(FramingError::new(
                format!("{name} has non-digit byte 0x{b:02X}"),
                at + lead + i,
            ));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| FramingError::new(format!("{name} overflows u64"), at))?;
    }
    Ok(n)
}

/// Decodes a payload of type `ptype`; `at` is the payload's offset, used in errors.
pub fn decode_payload(ptype: u8, payload: &[u8], at: usize) -> Result<Packet<'_>, FramingError> {
    let Some(rule) = payload_size(ptype) else {
        return Err(FramingError::new(
            format!("unknown SoupBinTCP packet type 0x{ptype:02X}"),
            at - 1,
        ));
    };
    if let PayloadSize::Fixed(size) = rule {
        if payload.len() != size {
            return Err(FramingError::new(
                format!(
                    "packet type '{}' needs a {size}-byte payload (packet length {}), got {}",
                    ptype as char,
                    size + 1,
                    payload.len()
                ),
                at - 3,
            ));
        }
    }
    Ok(match ptype {
        DEBUG => Packet::Debug(payload),
        SEQUENCED_DATA => Packet::SequencedData(payload),
        UNSEQUENCED_DATA => Packet::UnsequencedData(payload),
        LOGIN_ACCEPTED => Packet::LoginAccepted {
            session: text_field("session", &payload[..10], at)?,
            sequence: number_field("sequence number", &payload[10..30], at + 10)?,
        },
        LOGIN_REJECTED => {
            let reason = payload[0];
            if ![REJECT_NOT_AUTHORIZED, REJECT_SESSION_NOT_AVAILABLE].contains(&reason) {
                return Err(FramingError::new(
                    format!("reject reason 0x{reason:02X} is not 'A' or 'S'"),
                    at,
                ));
            }
            Packet::LoginRejected { reason }
        }
        LOGIN_REQUEST => Packet::LoginRequest {
            username: text_field("username", &payload[..6], at)?,
            password: text_field("password", &payload[6..16], at + 6)?,
            session: text_field("requested session", &payload[16..26], at + 16)?,
            sequence: number_field("requested sequence number", &payload[26..46], at + 26)?,
        },
        SERVER_HEARTBEAT => Packet::ServerHeartbeat,
        END_OF_SESSION => Packet::EndOfSession,
        CLIENT_HEARTBEAT => Packet::ClientHeartbeat,
        _ => Packet::LogoutRequest,
    })
}

/// Decodes exactly one complete packet (length prefix included).
pub fn decode(packet: &[u8]) -> Result<Packet<'_>, FramingError> {
    if packet.len() < 2 {
        return Err(FramingError::new(
            format!(
                "truncated packet: {} bytes, at least 3 needed",
                packet.len()
            ),
            packet.len(),
        ));
    }
    let len = usize::from(u16::from_be_bytes([packet[0], packet[1]]));
    if len == 0 {
        return Err(FramingError::new("packet length 0 (no type byte)", 0));
    }
    if packet.len() != len + 2 {
        return Err(FramingError::new(
            format!(
                "packet length field says {} bytes in all, buffer has {}",
                len + 2,
                packet.len()
            ),
            if packet.len() < len + 2 {
                packet.len()
            } else {
                len + 2
            },
        ));
    }
    decode_payload(packet[2], &packet[3..], 3)
}

/// Writes one `S` packet per 64-byte signal into `out`; returns the bytes written.
pub fn encode_signals(signals: &[u8], out: &mut [u8]) -> Result<usize, FramingError> {
    if signals.len() % SIGNAL_SIZE != 0 {
        return Err(FramingError::new(
            format!(
                "signal buffer length {} is not a multiple of 64",
                signals.len()
            ),
            signals.len() - signals.len() % SIGNAL_SIZE,
        ));
    }
    let n = signals.len() / SIGNAL_SIZE;
    let needed = n * SIGNAL_PACKET_SIZE;
    if out.len() < needed {
        return Err(FramingError::new(
            format!(
                "output buffer too small: {needed} bytes needed, {} available",
                out.len()
            ),
            0,
        ));
    }
    let head = [0, (SIGNAL_SIZE + 1) as u8, SEQUENCED_DATA];
    for (s, o) in signals
        .chunks_exact(SIGNAL_SIZE)
        .zip(out.chunks_exact_mut(SIGNAL_PACKET_SIZE))
    {
        o[..3].copy_from_slice(&head);
        o[3..].copy_from_slice(s);
    }
    Ok(needed)
}

/// Accepts a TCP byte stream in arbitrary chunks and yields whole packets.
///
/// Tracks the implicit sequence numbers: after a `LoginAccepted` announcing `n`, the following
/// `SequencedData` packets are `n`, `n + 1`, ... A framing error is sticky: the stream cannot be
/// resynchronised, so every later [`feed`](Self::feed) returns the same error (close the
/// connection).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    next_sequence: Option<u64>,
    error: Option<FramingError>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received but not yet part of a whole packet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the first byte not yet consumed.
    pub fn position(&self) -> u64 {
        self.base
    }

    /// Sequence number the next `S` packet will carry, once a `LoginAccepted` was seen.
    pub fn next_sequence(&self) -> Option<u64> {
        self.next_sequence
    }

    /// Sets the sequence expected for the next `S` packet (e.g. for a stream joined midway).
    pub fn set_next_sequence(&mut self, seq: Option<u64>) {
        self.next_sequence = seq;
    }

    /// Appends `data` and calls `on_packet(packet, stream_offset, sequence)` for every whole
    /// packet now available (`sequence` is set for `S` packets once known). Returns the number of
    /// packets delivered.
    pub fn feed<F>(&mut self, data: &[u8], mut on_packet: F) -> Result<usize, FramingError>
    where
        F: FnMut(&Packet<'_>, u64, Option<u64>),
    {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        let mut at = 0usize;
        let mut delivered = 0usize;
        let result = loop {
            if self.buf.len() - at < 2 {
                break Ok(delivered);
            }
            let len = usize::from(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]));
            let stream_at = self.base + at as u64;
            if len == 0 {
                break Err(FramingError::new(
                    "packet length 0 (no type byte)",
                    usize::try_from(stream_at).unwrap_or(usize::MAX),
                ));
            }
            if self.buf.len() - at < 2 + len {
                break Ok(delivered);
            }
            let ptype = self.buf[at + 2];
            match decode_payload(ptype, &self.buf[at + 3..at + 2 + len], 3) {
                Ok(p) => {
                    let seq = match p {
                        Packet::LoginAccepted { sequence, .. } => {
                            self.next_sequence = Some(sequence);
                            None
                        }
                        Packet::SequencedData(_) => {
                            let s = self.next_sequence;
                            self.next_sequence = s.and_then(|s| s.checked_add(1));
                            s
                        }
                        _ => None,
                    };
                    on_packet(&p, stream_at, seq);
                    delivered += 1;
                    at += 2 + len;
                }
                Err(e) => {
                    let abs = usize::try_from(stream_at).unwrap_or(usize::MAX);
                    break Err(FramingError::new(e.reason, abs.saturating_add(e.offset)));
                }
            }
        };
        self.buf.drain(..at);
        self.base += at as u64;
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &Packet<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        p.encode(&mut v).unwrap();
        v
    }

    #[test]
    fn reference_examples() {
        let l = enc(&Packet::LoginRequest {
            username: b"alice",
            password: b"secret",
            session: b"",
            sequence: 1,
        });
        let mut want = vec![0x00, 0x2f, b'L'];
        want.extend_from_slice(b"alice secret    ");
        want.extend_from_slice(&[b' '; 10]);
        want.extend_from_slice(&[b' '; 19]);
        want.push(b'1');
        assert_eq!(l, want);
        let a = enc(&Packet::LoginAccepted {
            session: b"SIG001",
            sequence: 43,
        });
        assert_eq!(&a[..3], &[0x00, 0x1f, b'A']);
        assert_eq!(&a[3..13], b"    SIG001");
        assert_eq!(&a[13..], b"                  43");
        assert_eq!(enc(&Packet::ServerHeartbeat), vec![0, 1, b'H']);
        assert_eq!(
            decode(&a).unwrap(),
            Packet::LoginAccepted {
                session: b"SIG001",
                sequence: 43
            }
        );
    }

    #[test]
    fn every_type_round_trips() {
        let all = [
            Packet::Debug(b"hello"),
            Packet::LoginAccepted {
                session: b"S1",
                sequence: u64::MAX,
            },
            Packet::LoginRejected { reason: b'S' },
            Packet::SequencedData(&[1, 2, 3]),
            Packet::ServerHeartbeat,
            Packet::EndOfSession,
            Packet::LoginRequest {
                username: b"u",
                password: b"p",
                session: b"",
                sequence: 0,
            },
            Packet::UnsequencedData(b""),
            Packet::ClientHeartbeat,
            Packet::LogoutRequest,
        ];
        let mut stream = Vec::new();
        for p in &all {
            let e = enc(p);
            assert_eq!(&decode(&e).unwrap(), p);
            stream.extend_from_slice(&e);
        }
        // Byte by byte through the stream decoder.
        let mut d = StreamDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.feed(std::slice::from_ref(b), |p, _, _| {
                got.push(format!("{p:?}"));
            })
            .unwrap();
        }
        let want: Vec<String> = all.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(got, want);
        assert_eq!(d.pending(), 0);
        assert_eq!(d.position(), stream.len() as u64);
    }

    #[test]
    fn stream_assigns_sequences_and_errors_are_sticky() {
        let mut s = enc(&Packet::LoginAccepted {
            session: b"X",
            sequence: 7,
        });
        s.extend(enc(&Packet::SequencedData(b"a")));
        s.extend(enc(&Packet::ServerHeartbeat));
        s.extend(enc(&Packet::SequencedData(b"b")));
        let bad_at = s.len();
        s.extend_from_slice(&[0, 1, b'Q']);
        let mut d = StreamDecoder::new();
        let mut seqs = Vec::new();
        let err = d
            .feed(&s, |p, _, seq| {
                if let Packet::SequencedData(_) = p {
                    seqs.push(seq.unwrap());
                }
            })
            .unwrap_err();
        assert_eq!(seqs, vec![7, 8]);
        assert_eq!(err.offset, bad_at + 2);
        assert_eq!(d.feed(b"", |_, _, _| {}).unwrap_err(), err);
    }

    #[test]
    fn malformed_fields() {
        assert_eq!(decode(&[0, 2, b'H', 0]).unwrap_err().offset, 0);
        assert_eq!(decode(&[0, 1]).unwrap_err().offset, 2);
        let mut a = enc(&Packet::LoginAccepted {
            session: b"S",
            sequence: 12,
        });
        a[31] = b'x';
        let e = decode(&a).unwrap_err();
        assert_eq!(e.offset, 31);
        assert!(Packet::LoginRequest {
            username: b"toolong",
            password: b"",
            session: b"",
            sequence: 0
        }
        .encode(&mut Vec::new())
        .is_err());
        // Leading zeros and left-justified numbers are accepted.
        let mut a = vec![0, 31, b'A'];
        a.extend_from_slice(b"SESSION1  ");
        a.extend_from_slice(b"00000000000000000042");
        assert_eq!(
            decode(&a).unwrap(),
            Packet::LoginAccepted {
                session: b"SESSION1",
                sequence: 42
            }
        );
    }
}
