//! MoldUDP64 downstream, heartbeat, end-of-session and request packets (all big-endian).
//!
//! Downstream packet: session (10 ASCII, space-padded on the right) · sequence of the first
//! message (u64) · message count (u16) · `count` × { length u16 · payload }. Count 0 is a
//! heartbeat, 0xFFFF the end of the session (both without blocks, sequence = next sequence). A
//! request (client → re-request server) is exactly 20 bytes: session · first missing sequence ·
//! requested count (> 0).

use crate::error::FramingError;
use crate::signal::{wire, SIGNAL_SIZE};

pub const SESSION_SIZE: usize = 10;
pub const HEADER_SIZE: usize = 20;
pub const REQUEST_SIZE: usize = 20;
/// Message-count value that marks the end of a session.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Largest real message count in one packet.
pub const MAX_MESSAGE_COUNT: u16 = 0xFFFE;
/// UDP payload that fits a 1500-byte Ethernet MTU with 20-byte IPv4 and 8-byte UDP headers.
pub const DEFAULT_MAX_DATAGRAM: usize = 1472;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Bytes one 64-byte signal takes in a packet: 2-byte length + payload.
pub const SIGNAL_BLOCK_SIZE: usize = 2 + SIGNAL_SIZE;

/// The 10-byte session field: printable ASCII, left-justified, space-padded on the right.
pub fn session_field(session: &[u8]) -> Result<[u8; SESSION_SIZE], FramingError> {
    if session.len() > SESSION_SIZE {
        return Err(FramingError::new(
            format!(
                "session is {} bytes, at most {SESSION_SIZE} allowed",
                session.len()
            ),
            0,
        ));
    }
    if let Some(i) = session.iter().position(|b| !(0x20..=0x7E).contains(b)) {
        return Err(FramingError::new(
            format!("session byte 0x{:02X} is not printable ASCII", session[i]),
            i,
        ));
    }
    let mut out = [b' '; SESSION_SIZE];
    out[..session.len()].copy_from_slice(session);
    Ok(out)
}

/// Writes the 20-byte header into `out[..20]`.
#[inline]
pub fn write_header(out: &mut [u8], session: &[u8; SESSION_SIZE], sequence: u64, count: u16) {
    out[..SESSION_SIZE].copy_from_slice(session);
    out[10..18].copy_from_slice(&sequence.to_be_bytes());
    out[18..20].copy_from_slice(&count.to_be_bytes());
}

fn header_only(session: &[u8; SESSION_SIZE], sequence: u64, count: u16) -> [u8; HEADER_SIZE] {
    let mut out = [0u8; HEADER_SIZE];
    write_header(&mut out, session, sequence, count);
    out
}

/// Heartbeat: count 0, `next_sequence` = the next sequence the sender will use.
pub fn heartbeat(session: &[u8; SESSION_SIZE], next_sequence: u64) -> [u8; HEADER_SIZE] {
    header_only(session, next_sequence, 0)
}

/// End of session: count 0xFFFF, `next_sequence` = the next sequence.
pub fn end_of_session(session: &[u8; SESSION_SIZE], next_sequence: u64) -> [u8; HEADER_SIZE] {
    header_only(session, next_sequence, END_OF_SESSION)
}

/// Retransmission request for `count` (1..=0xFFFE) messages from `sequence`.
pub fn request(
    session: &[u8; SESSION_SIZE],
    sequence: u64,
    count: u16,
) -> Result<[u8; REQUEST_SIZE], FramingError> {
    if count == 0 || count > MAX_MESSAGE_COUNT {
        return Err(FramingError::new(
            format!("request count {count} outside 1..={MAX_MESSAGE_COUNT}"),
            18,
        ));
    }
    Ok(header_only(session, sequence, count))
}

/// Appends one downstream packet holding `messages` (first one numbered `sequence`) to `out`.
pub fn encode_packet(
    session: &[u8; SESSION_SIZE],
    sequence: u64,
    messages: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), FramingError> {
    let count = u16::try_from(messages.len())
        .ok()
        .filter(|&c| c <= MAX_MESSAGE_COUNT)
        .ok_or_else(|| {
            FramingError::new(
                format!(
                    "{} messages in one packet, at most {MAX_MESSAGE_COUNT}",
                    messages.len()
                ),
                18,
            )
        })?;
    let start = out.len();
    out.resize(start + HEADER_SIZE, 0);
    write_header(&mut out[start..], session, sequence, count);
    for (k, m) in messages.iter().enumerate() {
        let len = u16::try_from(m.len()).map_err(|_| {
            FramingError::new(
                format!("message {k} is {} bytes, at most 65535", m.len()),
                out.len() - start,
            )
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(m);
    }
    Ok(())
}

/// Splits `messages` into as few packets as fit `max_datagram` bytes each, numbering them from
/// `sequence`. Returns the packets.
pub fn encode_messages(
    session: &[u8; SESSION_SIZE],
    sequence: u64,
    messages: &[&[u8]],
    max_datagram: usize,
) -> Result<Vec<Vec<u8>>, FramingError> {
    check_max_datagram(max_datagram, 1)?;
    check_sequence_range(sequence, messages.len())?;
    let mut packets = Vec::new();
    let mut first = 0usize;
    while first < messages.len() {
        let mut size = HEADER_SIZE;
        let mut end = first;
        while end < messages.len() && end - first < usize::from(MAX_MESSAGE_COUNT) {
            let block = 2 + messages[end].len();
            if size + block > max_datagram {
                break;
            }
            size += block;
            end += 1;
        }
        if end == first {
            return Err(FramingError::new(
                format!(
                    "message {first} ({} bytes) does not fit a {max_datagram}-byte datagram",
                    messages[first].len()
                ),
                0,
            ));
        }
        let mut p = Vec::with_capacity(size);
        encode_packet(
            session,
            sequence + first as u64,
            &messages[first..end],
            &mut p,
        )?;
        packets.push(p);
        first = end;
    }
    Ok(packets)
}

/// Checks that `count` messages numbered from `first` stay within u64 (the next sequence too).
pub fn check_sequence_range(first: u64, count: usize) -> Result<(), FramingError> {
    if first.checked_add(count as u64).is_none() {
        return Err(FramingError::new(
            format!("{count} messages from sequence {first} overflow the 64-bit sequence number"),
            10,
        ));
    }
    Ok(())
}

/// Checks a datagram cap: at least one `min_message`-byte block must fit, at most 65507 bytes.
pub fn check_max_datagram(max_datagram: usize, min_message: usize) -> Result<(), FramingError> {
    let least = HEADER_SIZE + 2 + min_message;
    if !(least..=MAX_DATAGRAM).contains(&max_datagram) {
        return Err(FramingError::new(
            format!("max_datagram {max_datagram} outside {least}..={MAX_DATAGRAM}"),
            0,
        ));
    }
    Ok(())
}

/// How many 64-byte signals fit one packet of at most `max_datagram` bytes.
pub fn signals_per_packet(max_datagram: usize) -> usize {
    ((max_datagram.saturating_sub(HEADER_SIZE)) / SIGNAL_BLOCK_SIZE)
        .min(usize::from(MAX_MESSAGE_COUNT))
}

/// Bytes needed to frame `n` signals with `per_packet` signals per packet.
pub fn framed_size(n: usize, per_packet: usize) -> usize {
    n * SIGNAL_BLOCK_SIZE + n.div_ceil(per_packet) * HEADER_SIZE
}

/// One packet written by [`encode_signals`]: where it lies in the output and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSpan {
    pub offset: usize,
    pub len: usize,
    pub sequence: u64,
    pub count: u16,
}

/// Frames packed signals (a whole number of 64-byte wire signals) into consecutive packets in
/// `out`, each as full as `max_datagram` allows. Signal `i` must carry sequence
/// `first_sequence + i` (the layout's rule: the signal's sequence is its message sequence).
/// Appends one [`PacketSpan`] per packet to `spans`; returns the bytes written.
pub fn encode_signals(
    session: &[u8; SESSION_SIZE],
    first_sequence: u64,
    signals: &[u8],
    out: &mut [u8],
    max_datagram: usize,
    spans: &mut Vec<PacketSpan>,
) -> Result<usize, FramingError> {
    check_max_datagram(max_datagram, SIGNAL_SIZE)?;
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
    check_sequence_range(first_sequence, n)?;
    let per = signals_per_packet(max_datagram);
    let needed = framed_size(n, per);
    if out.len() < needed {
        return Err(FramingError::new(
            format!(
                "output buffer too small: {needed} bytes needed, {} available",
                out.len()
            ),
            0,
        ));
    }
    for i in 0..n {
        let at = i * SIGNAL_SIZE + wire::SEQUENCE;
        let seq = u64::from_be_bytes(signals[at..at + 8].try_into().expect("8 bytes"));
        let expected = first_sequence + i as u64;
        if seq != expected {
            return Err(FramingError::new(
                format!(
                    "signal {i} carries sequence {seq}, expected {expected} \
                     (signals must be consecutive from {first_sequence})"
                ),
                i * SIGNAL_SIZE,
            ));
        }
    }
    let mut w = 0usize;
    let mut i = 0usize;
    while i < n {
        let take = per.min(n - i);
        let start = w;
        write_header(
            &mut out[w..],
            session,
            first_sequence + i as u64,
            take as u16,
        );
        w += HEADER_SIZE;
        for s in signals[i * SIGNAL_SIZE..(i + take) * SIGNAL_SIZE].chunks_exact(SIGNAL_SIZE) {
            out[w..w + 2].copy_from_slice(&(SIGNAL_SIZE as u16).to_be_bytes());
            out[w + 2..w + SIGNAL_BLOCK_SIZE].copy_from_slice(s);
            w += SIGNAL_BLOCK_SIZE;
        }
        spans.push(PacketSpan {
            offset: start,
            len: w - start,
            sequence: first_sequence + i as u64,
            count: take as u16,
        });
        i += take;
    }
    Ok(w)
}

/// What a decoded datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Data,
    Heartbeat,
    EndOfSession,
    Request,
}

impl PacketKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Heartbeat => "heartbeat",
            Self::EndOfSession => "end_of_session",
            Self::Request => "request",
        }
    }
}

/// A decoded datagram; `messages` borrow from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: PacketKind,
    /// The raw 10-byte session field.
    pub session: [u8; SESSION_SIZE],
    /// Data: first message's sequence; heartbeat / end of session: next sequence;
    /// request: first requested sequence.
    pub sequence: u64,
    /// The raw count field (for a request: how many messages are requested).
    pub count: u16,
    /// Payloads of a data packet, in order (message k has sequence `sequence + k`).
    pub messages: Vec<&'a [u8]>,
    /// Byte offset of each payload in the packet.
    pub offsets: Vec<usize>,
}

/// Decodes one datagram (downstream packet or request), checking every length.
pub fn decode(packet: &[u8]) -> Result<Packet<'_>, FramingError> {
    if packet.len() < HEADER_SIZE {
        return Err(FramingError::new(
            format!(
                "truncated MoldUDP64 header: {HEADER_SIZE} bytes needed, got {}",
                packet.len()
            ),
            packet.len(),
        ));
    }
    let mut session = [0u8; SESSION_SIZE];
    session.copy_from_slice(&packet[..SESSION_SIZE]);
    let sequence = u64::from_be_bytes(packet[10..18].try_into().expect("8 bytes"));
    let count = u16::from_be_bytes([packet[18], packet[19]]);
    let kind = match count {
        0 => PacketKind::Heartbeat,
        END_OF_SESSION => PacketKind::EndOfSession,
        _ if packet.len() == REQUEST_SIZE => PacketKind::Request,
        _ => PacketKind::Data,
    };
    let mut messages = Vec::new();
    let mut offsets = Vec::new();
    let mut at = HEADER_SIZE;
    if kind == PacketKind::Data {
        messages.reserve(usize::from(count));
        offsets.reserve(usize::from(count));
        for k in 0..count {
            if at + 2 > packet.len() {
                return Err(FramingError::new(
                    format!("packet ends before the length of message {k} of {count}"),
                    at,
                ));
            }
            let len = usize::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
            if at + 2 + len > packet.len() {
                return Err(FramingError::new(
                    format!(
                        "message {k} of {count} declares {len} bytes, only {} left in the packet",
                        packet.len() - at - 2
                    ),
                    at,
                ));
            }
            offsets.push(at + 2);
            messages.push(&packet[at + 2..at + 2 + len]);
            at += 2 + len;
        }
    }
    if at != packet.len() {
        let what = match kind {
            PacketKind::Data => format!("after {count} messages"),
            PacketKind::Heartbeat => "after a heartbeat header".to_owned(),
            _ => "after an end-of-session header".to_owned(),
        };
        return Err(FramingError::new(
            format!("{} trailing bytes {what}", packet.len() - at),
            at,
        ));
    }
    Ok(Packet {
        kind,
        session,
        sequence,
        count,
        messages,
        offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Signal;

    fn sess() -> [u8; SESSION_SIZE] {
        session_field(b"SIG0001").unwrap()
    }

    #[test]
    fn reference_arithmetic() {
        assert_eq!(signals_per_packet(1472), 22);
        assert_eq!(signals_per_packet(1420), 21);
        assert_eq!(HEADER_SIZE + 22 * SIGNAL_BLOCK_SIZE, 1472);
        assert_eq!(framed_size(23, 22), 23 * 66 + 40);
    }

    #[test]
    fn heartbeat_and_request_match_reference_example() {
        let hb = heartbeat(&sess(), 43);
        assert_eq!(&hb[..10], b"SIG0001   ");
        assert_eq!(&hb[10..], &[0, 0, 0, 0, 0, 0, 0, 0x2b, 0, 0]);
        let rq = request(&sess(), 42, 5).unwrap();
        assert_eq!(&rq[10..], &[0, 0, 0, 0, 0, 0, 0, 0x2a, 0, 5]);
        assert_eq!(decode(&rq).unwrap().kind, PacketKind::Request);
        assert_eq!(decode(&hb).unwrap().kind, PacketKind::Heartbeat);
        let eos_bytes = end_of_session(&sess(), 43);
        let eos = decode(&eos_bytes).unwrap();
        assert_eq!((eos.kind, eos.sequence), (PacketKind::EndOfSession, 43));
        assert!(request(&sess(), 1, 0).is_err());
    }

    #[test]
    fn signals_round_trip_across_packets() {
        let n = 50;
        let mut signals = vec![0u8; n * SIGNAL_SIZE];
        for (i, c) in signals.chunks_exact_mut(SIGNAL_SIZE).enumerate() {
            let s = Signal {
                sequence: 10 + i as u64,
                ..Signal::default()
            };
            s.encode_into(c.try_into().unwrap());
        }
        let mut out = vec![0u8; framed_size(n, 22)];
        let mut spans = Vec::new();
        let w = encode_signals(&sess(), 10, &signals, &mut out, 1472, &mut spans).unwrap();
        assert_eq!(w, out.len());
        assert_eq!(spans.len(), 3);
        let mut seen = 0;
        for sp in &spans {
            assert!(sp.len <= 1472);
            let p = decode(&out[sp.offset..sp.offset + sp.len]).unwrap();
            assert_eq!(p.sequence, 10 + seen as u64);
            for m in &p.messages {
                assert_eq!(*m, &signals[seen * 64..(seen + 1) * 64]);
                seen += 1;
            }
        }
        assert_eq!(seen, n);
        let err = encode_signals(&sess(), 11, &signals, &mut out, 1472, &mut spans).unwrap_err();
        assert_eq!(err.offset, 0);
    }

    #[test]
    fn malformed_packets_name_the_offset() {
        let mut p = Vec::new();
        encode_packet(&sess(), 1, &[b"abc", b"defg"], &mut p).unwrap();
        assert_eq!(
            decode(&p).unwrap().messages,
            vec![&b"abc"[..], &b"defg"[..]]
        );
        assert_eq!(decode(&p[..19]).unwrap_err().offset, 19);
        assert_eq!(decode(&p[..p.len() - 1]).unwrap_err().offset, 25);
        assert_eq!(decode(&p[..24]).unwrap_err().offset, 20);
        assert_eq!(decode(&p[..26]).unwrap_err().offset, 25);
        let mut long = p.clone();
        long.push(0);
        assert_eq!(decode(&long).unwrap_err().offset, p.len());
        let mut hb = heartbeat(&sess(), 1).to_vec();
        hb.push(1);
        assert_eq!(decode(&hb).unwrap_err().offset, 20);
    }

    #[test]
    fn generic_messages_split_by_size() {
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let pk = encode_messages(&sess(), 5, &refs, 20 + 3 * 102).unwrap();
        assert_eq!(pk.len(), 4);
        assert_eq!(decode(&pk[3]).unwrap().sequence, 14);
        assert!(encode_messages(&sess(), 5, &refs, 100).is_err());
    }
}
