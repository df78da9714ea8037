//! Python bindings of the MoldUDP64 and SoupBinTCP framing.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::buffer::{check_room, ByteBuffer};
use super::signal::{maybe_detach, offset_error, unpack_bytes, FRAMING_ERROR};
use crate::error::FramingError;
use crate::moldudp64 as mold;
use crate::signal::SIGNAL_SIZE;
use crate::soupbintcp as soup;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MOLDUDP64_HEADER_SIZE", mold::HEADER_SIZE)?;
    m.add("MOLDUDP64_END_OF_SESSION", mold::END_OF_SESSION)?;
    m.add("MOLDUDP64_MAX_MESSAGE_COUNT", mold::MAX_MESSAGE_COUNT)?;
    m.add("MOLDUDP64_DEFAULT_MAX_DATAGRAM", mold::DEFAULT_MAX_DATAGRAM)?;
    m.add("MOLDUDP64_MAX_DATAGRAM", mold::MAX_DATAGRAM)?;
    m.add("SOUPBINTCP_SIGNAL_PACKET_SIZE", soup::SIGNAL_PACKET_SIZE)?;
    m.add_class::<MoldUDP64Encoder>()?;
    m.add_class::<MoldUDP64Packet>()?;
    m.add_class::<SoupBinTCPPacket>()?;
    m.add_class::<SoupBinTCPDecoder>()?;
    m.add_function(wrap_pyfunction!(moldudp64_decode, m)?)?;
    m.add_function(wrap_pyfunction!(moldudp64_request, m)?)?;
    m.add_function(wrap_pyfunction!(soupbintcp_decode, m)?)?;
    m.add_function(wrap_pyfunction!(soupbintcp_encode_signals, m)?)?;
    Ok(())
}

// The signature default below must stay a literal for introspection (stubtest).
const _: () = assert!(mold::DEFAULT_MAX_DATAGRAM == 1472);

fn ferr(py: Python<'_>, e: &FramingError) -> PyErr {
    offset_error(py, &FRAMING_ERROR, e.to_string(), e.offset)
}

fn session_of(py: Python<'_>, session: &str) -> PyResult<[u8; mold::SESSION_SIZE]> {
    mold::session_field(session.as_bytes()).map_err(|e| ferr(py, &e))
}

fn ascii(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

// ---------------------------------------------------------------------------------------------
// MoldUDP64

/// Stateful MoldUDP64 sender side: numbers messages and fills packets up to `max_datagram`.
#[pyclass(module = "relentless_fast_signal._signal")]
struct MoldUDP64Encoder {
    session: [u8; mold::SESSION_SIZE],
    next_sequence: u64,
    max_datagram: usize,
}

#[pymethods]
impl MoldUDP64Encoder {
    #[new]
    #[pyo3(signature = (session, *, next_sequence = 1, max_datagram = 1472))]
    fn new(
        py: Python<'_>,
        session: &str,
        next_sequence: u64,
        max_datagram: usize,
    ) -> PyResult<Self> {
        mold::check_max_datagram(max_datagram, SIGNAL_SIZE).map_err(|e| ferr(py, &e))?;
        Ok(Self {
            session: session_of(py, session)?,
            next_sequence,
            max_datagram,
        })
    }

    /// The session name (without padding).
    #[getter]
    fn session(&self) -> String {
        ascii(&self.session).trim_end().to_owned()
    }

    /// Sequence number of the next message to be sent.
    #[getter]
    fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    #[setter]
    fn set_next_sequence(&mut self, value: u64) {
        self.next_sequence = value;
    }

    #[getter]
    fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// How many 64-byte signals one packet holds.
    #[getter]
    fn signals_per_packet(&self) -> usize {
        mold::signals_per_packet(self.max_datagram)
    }

    /// Bytes `encode_signals` needs for `n_signals` signals.
    fn framed_size(&self, n_signals: usize) -> usize {
        mold::framed_size(n_signals, mold::signals_per_packet(self.max_datagram))
    }

    /// Frames packed signals into `out[offset:]`; returns `[(offset, length), ...]` per packet.
    #[pyo3(signature = (signals, out, offset = 0))]
    fn encode_signals<'py>(
        &mut self,
        py: Python<'py>,
        signals: &Bound<'py, PyAny>,
        out: &Bound<'py, PyAny>,
        offset: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let src = ByteBuffer::get(signals, false, "signals")?;
        let mut dst = ByteBuffer::get(out, true, "out")?;
        dst.check_disjoint(&src, "out")?;
        let n = src.len() / SIGNAL_SIZE;
        let needed = self.framed_size(n);
        check_room(offset, needed, dst.len(), "out")?;
        let mut spans = Vec::with_capacity(n.div_ceil(self.signals_per_packet()));
        let (session, first, max_datagram) = (&self.session, self.next_sequence, self.max_datagram);
        let src_slice = src.as_slice();
        let dst_slice = &mut dst.as_mut_slice()[offset..];
        let written = maybe_detach(py, n, || {
            mold::encode_signals(
                session,
                first,
                src_slice,
                dst_slice,
                max_datagram,
                &mut spans,
            )
        })
        .map_err(|e| ferr(py, &e))?;
        debug_assert_eq!(written, needed);
        self.next_sequence += n as u64;
        let items = spans.iter().map(|s| (s.offset + offset, s.len));
        PyList::new(py, items)
    }

    /// Numbers `messages` from `next_sequence` and packs them into as few packets as fit.
    #[allow(clippy::needless_pass_by_value)]
    fn encode_messages<'py>(
        &mut self,
        py: Python<'py>,
        messages: Vec<Vec<u8>>, // owned: PyO3 extracts sequences of bytes into a Vec
    ) -> PyResult<Bound<'py, PyList>> {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let packets =
            mold::encode_messages(&self.session, self.next_sequence, &refs, self.max_datagram)
                .map_err(|e| ferr(py, &e))?;
        self.next_sequence += messages.len() as u64;
        PyList::new(py, packets.iter().map(|p| PyBytes::new(py, p)))
    }

    /// Heartbeat packet announcing `next_sequence`.
    fn heartbeat<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &mold::heartbeat(&self.session, self.next_sequence))
    }

    /// End-of-session packet announcing `next_sequence`.
    fn end_of_session<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &mold::end_of_session(&self.session, self.next_sequence))
    }

    fn __repr__(&self) -> String {
        format!(
            "MoldUDP64Encoder(session={:?}, next_sequence={}, max_datagram={})",
            self.session(),
            self.next_sequence,
            self.max_datagram
        )
    }
}

/// A decoded MoldUDP64 datagram.
#[pyclass(module = "relentless_fast_signal._signal", frozen)]
struct MoldUDP64Packet {
    kind: &'static str,
    session: [u8; mold::SESSION_SIZE],
    sequence: u64,
    count: u16,
    data: Vec<u8>,
    offsets: Vec<usize>,
    lengths: Vec<usize>,
}

#[pymethods]
impl MoldUDP64Packet {
    /// "data", "heartbeat", "end_of_session" or "request".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// Session name with the right padding removed.
    #[getter]
    fn session(&self) -> String {
        ascii(&self.session).trim_end().to_owned()
    }

    /// First message's sequence (data), next sequence (heartbeat / end of session) or first
    /// requested sequence (request).
    #[getter]
    fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Raw message-count field (requested count for a request, 0xFFFF for end of session).
    #[getter]
    fn count(&self) -> u16 {
        self.count
    }

    /// Message payloads of a data packet (message k has sequence `sequence + k`).
    #[getter]
    fn messages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.offsets
                .iter()
                .zip(&self.lengths)
                .map(|(&o, &l)| PyBytes::new(py, &self.data[o..o + l])),
        )
    }

    /// Byte offset of each message payload in the datagram.
    #[getter]
    fn message_offsets(&self) -> Vec<usize> {
        self.offsets.clone()
    }

    /// Decodes and validates every message as a 64-byte signal into a record array. Errors name
    /// the byte offset in the datagram.
    fn signals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut wire = Vec::with_capacity(self.offsets.len() * SIGNAL_SIZE);
        for (&o, &l) in self.offsets.iter().zip(&self.lengths) {
            if l != SIGNAL_SIZE {
                return Err(offset_error(
                    py,
                    &super::signal::SIGNAL_FORMAT_ERROR,
                    format!("message at byte offset {o} is {l} bytes, a signal is 64"),
                    o,
                ));
            }
            wire.extend_from_slice(&self.data[o..o + l]);
        }
        unpack_bytes(py, &wire, &self.offsets)
    }

    fn __len__(&self) -> usize {
        self.offsets.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "MoldUDP64Packet(kind={:?}, session={:?}, sequence={}, count={})",
            self.kind,
            self.session(),
            self.sequence,
            self.count
        )
    }
}

/// Decodes one MoldUDP64 datagram (downstream packet or 20-byte request).
#[pyfunction]
fn moldudp64_decode(py: Python<'_>, packet: &Bound<'_, PyAny>) -> PyResult<MoldUDP64Packet> {
    let b = ByteBuffer::get(packet, false, "packet")?;
    let p = mold::decode(b.as_slice()).map_err(|e| ferr(py, &e))?;
    Ok(MoldUDP64Packet {
        kind: p.kind.as_str(),
        session: p.session,
        sequence: p.sequence,
        count: p.count,
        lengths: p.messages.iter().map(|m| m.len()).collect(),
        offsets: p.offsets,
        data: b.as_slice().to_vec(),
    })
}

/// The 20-byte retransmission request for `count` messages from `sequence`.
#[pyfunction]
fn moldudp64_request<'py>(
    py: Python<'py>,
    session: &str,
    sequence: u64,
    count: u16,
) -> PyResult<Bound<'py, PyBytes>> {
    let r = mold::request(&session_of(py, session)?, sequence, count).map_err(|e| ferr(py, &e))?;
    Ok(PyBytes::new(py, &r))
}

// ---------------------------------------------------------------------------------------------
// SoupBinTCP

/// One SoupBinTCP 3.00 logical packet (either direction). Build with the static constructors,
/// send with `encode()`; decoders return these.
#[pyclass(module = "relentless_fast_signal._signal", frozen, eq)]
#[derive(Clone)]
struct SoupBinTCPPacket {
    ptype: u8,
    payload: Vec<u8>,
    session: Option<String>,
    sequence: Option<u64>,
    username: Option<String>,
    password: Option<String>,
    reject_reason: Option<u8>,
    offset: u64,
}

/// Equality is the packet's content: the stream `offset` and the implicit sequence number of an
/// `S` packet describe where it was seen, not what it is.
impl PartialEq for SoupBinTCPPacket {
    fn eq(&self, other: &Self) -> bool {
        let carries_sequence = matches!(self.ptype, soup::LOGIN_ACCEPTED | soup::LOGIN_REQUEST);
        self.ptype == other.ptype
            && self.payload == other.payload
            && self.session == other.session
            && self.username == other.username
            && self.password == other.password
            && self.reject_reason == other.reject_reason
            && (!carries_sequence || self.sequence == other.sequence)
    }
}

impl Eq for SoupBinTCPPacket {}

impl SoupBinTCPPacket {
    fn blank(ptype: u8) -> Self {
        Self {
            ptype,
            payload: Vec::new(),
            session: None,
            sequence: None,
            username: None,
            password: None,
            reject_reason: None,
            offset: 0,
        }
    }

    fn from_core(p: &soup::Packet<'_>, offset: u64, sequence: Option<u64>) -> Self {
        let mut out = Self::blank(p.packet_type());
        out.offset = offset;
        match p {
            soup::Packet::Debug(d) | soup::Packet::UnsequencedData(d) => out.payload = d.to_vec(),
            soup::Packet::SequencedData(d) => {
                out.payload = d.to_vec();
                out.sequence = sequence;
            }
            soup::Packet::LoginAccepted { session, sequence } => {
                out.session = Some(ascii(session));
                out.sequence = Some(*sequence);
            }
            soup::Packet::LoginRejected { reason } => out.reject_reason = Some(*reason),
            soup::Packet::LoginRequest {
                username,
                password,
                session,
                sequence,
            } => {
                out.username = Some(ascii(username));
                out.password = Some(ascii(password));
                out.session = Some(ascii(session));
                out.sequence = Some(*sequence);
            }
            _ => {}
        }
        out
    }

    fn to_core(&self) -> soup::Packet<'_> {
        fn text(v: Option<&String>) -> &[u8] {
            v.map_or(&[], |s| s.as_bytes())
        }
        match self.ptype {
            soup::DEBUG => soup::Packet::Debug(&self.payload),
            soup::SEQUENCED_DATA => soup::Packet::SequencedData(&self.payload),
            soup::UNSEQUENCED_DATA => soup::Packet::UnsequencedData(&self.payload),
            soup::LOGIN_ACCEPTED => soup::Packet::LoginAccepted {
                session: text(self.session.as_ref()),
                sequence: self.sequence.unwrap_or(0),
            },
            soup::LOGIN_REJECTED => soup::Packet::LoginRejected {
                reason: self.reject_reason.unwrap_or(0),
            },
            soup::LOGIN_REQUEST => soup::Packet::LoginRequest {
                username: text(self.username.as_ref()),
                password: text(self.password.as_ref()),
                session: text(self.session.as_ref()),
                sequence: self.sequence.unwrap_or(0),
            },
            soup::SERVER_HEARTBEAT => soup::Packet::ServerHeartbeat,
            soup::END_OF_SESSION => soup::Packet::EndOfSession,
            soup::CLIENT_HEARTBEAT => soup::Packet::ClientHeartbeat,
            _ => soup::Packet::LogoutRequest,
        }
    }

    /// Builds and encodes once so that bad fields fail at construction.
    fn checked(self, py: Python<'_>) -> PyResult<Self> {
        self.to_core()
            .encode(&mut Vec::new())
            .map_err(|e| ferr(py, &e))?;
        Ok(self)
    }
}

fn one_char(py: Python<'_>, what: &str, s: &str) -> PyResult<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(ferr(
            py,
            &FramingError::new(format!("{what} must be one ASCII character, got {s:?}"), 0),
        )),
    }
}

#[pymethods]
impl SoupBinTCPPacket {
    /// `+` Debug packet (free ASCII text, either direction).
    #[staticmethod]
    fn debug(py: Python<'_>, text: &str) -> PyResult<Self> {
        if !text.is_ascii() {
            return Err(ferr(py, &FramingError::new("debug text must be ASCII", 0)));
        }
        let mut p = Self::blank(soup::DEBUG);
        p.payload = text.as_bytes().to_vec();
        p.checked(py)
    }

    /// `A` Login Accepted: `session` and the sequence number of the next `S` packet.
    #[staticmethod]
    fn login_accepted(py: Python<'_>, session: &str, sequence: u64) -> PyResult<Self> {
        let mut p = Self::blank(soup::LOGIN_ACCEPTED);
        p.session = Some(session.to_owned());
        p.sequence = Some(sequence);
        p.checked(py)
    }

    /// `J` Login Rejected: reason "A" (not authorized) or "S" (session not available).
    #[staticmethod]
    fn login_rejected(py: Python<'_>, reason: &str) -> PyResult<Self> {
        let mut p = Self::blank(soup::LOGIN_REJECTED);
        p.reject_reason = Some(one_char(py, "reject reason", reason)?);
        p.checked(py)
    }

    /// `S` Sequenced Data carrying one message (e.g. a 64-byte signal).
    #[staticmethod]
    fn sequenced_data(py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut p = Self::blank(soup::SEQUENCED_DATA);
        p.payload = ByteBuffer::get(payload, false, "payload")?
            .as_slice()
            .to_vec();
        p.checked(py)
    }

    /// `U` Unsequenced Data carrying one message.
    #[staticmethod]
    fn unsequenced_data(py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut p = Self::blank(soup::UNSEQUENCED_DATA);
        p.payload = ByteBuffer::get(payload, false, "payload")?
            .as_slice()
            .to_vec();
        p.checked(py)
    }

    /// `L` Login Request. An empty `session` asks for the current session; `sequence` 0 means
    /// "start with the next message", n >= 1 "replay from n".
    #[staticmethod]
    #[pyo3(signature = (username, password, session = "", sequence = 0))]
    fn login_request(
        py: Python<'_>,
        username: &str,
        password: &str,
        session: &str,
        sequence: u64,
    ) -> PyResult<Self> {
        let mut p = Self::blank(soup::LOGIN_REQUEST);
        p.username = Some(username.to_owned());
        p.password = Some(password.to_owned());
        p.session = Some(session.to_owned());
        p.sequence = Some(sequence);
        p.checked(py)
    }

    /// `H` Server Heartbeat.
    #[staticmethod]
    fn server_heartbeat() -> Self {
        Self::blank(soup::SERVER_HEARTBEAT)
    }

    /// `Z` End of Session.
    #[staticmethod]
    fn end_of_session() -> Self {
        Self::blank(soup::END_OF_SESSION)
    }

    /// `R` Client Heartbeat.
    #[staticmethod]
    fn client_heartbeat() -> Self {
        Self::blank(soup::CLIENT_HEARTBEAT)
    }

    /// `O` Logout Request.
    #[staticmethod]
    fn logout_request() -> Self {
        Self::blank(soup::LOGOUT_REQUEST)
    }

    /// The packet on the wire: length, type and padded payload.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(3 + self.payload.len() + 46);
        self.to_core().encode(&mut out).map_err(|e| ferr(py, &e))?;
        Ok(PyBytes::new(py, &out))
    }

    /// The one-character packet type, e.g. "S".
    #[getter]
    fn packet_type(&self) -> String {
        char::from(self.ptype).to_string()
    }

    /// Message bytes of `S` / `U`, text bytes of `+`; empty otherwise.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.payload)
    }

    /// Session of `A` / requested session of `L` (spaces stripped).
    #[getter]
    fn session(&self) -> Option<String> {
        self.session.clone()
    }

    /// `A`: next sequence; `L`: requested sequence; `S`: this message's sequence when the
    /// stream decoder knows it (after an `A`); None otherwise.
    #[getter]
    fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    #[getter]
    fn username(&self) -> Option<String> {
        self.username.clone()
    }

    #[getter]
    fn password(&self) -> Option<String> {
        self.password.clone()
    }

    /// `J`: "A" or "S".
    #[getter]
    fn reject_reason(&self) -> Option<String> {
        self.reject_reason.map(|r| char::from(r).to_string())
    }

    /// Stream offset of the packet's first byte (0 for packets not from a stream decoder).
    #[getter]
    fn offset(&self) -> u64 {
        self.offset
    }

    fn __repr__(&self) -> String {
        let mut parts = vec![format!("type={:?}", char::from(self.ptype))];
        if let Some(s) = &self.session {
            parts.push(format!("session={s:?}"));
        }
        if let Some(s) = self.sequence {
            parts.push(format!("sequence={s}"));
        }
        if let Some(u) = &self.username {
            parts.push(format!("username={u:?}"));
        }
        if let Some(r) = self.reject_reason {
            parts.push(format!("reject_reason={:?}", char::from(r)));
        }
        if !self.payload.is_empty() {
            parts.push(format!("payload=<{} bytes>", self.payload.len()));
        }
        format!("SoupBinTCPPacket({})", parts.join(", "))
    }
}

/// Decodes exactly one complete SoupBinTCP packet (length prefix included).
#[pyfunction]
fn soupbintcp_decode(py: Python<'_>, packet: &Bound<'_, PyAny>) -> PyResult<SoupBinTCPPacket> {
    let b = ByteBuffer::get(packet, false, "packet")?;
    let p = soup::decode(b.as_slice()).map_err(|e| ferr(py, &e))?;
    Ok(SoupBinTCPPacket::from_core(&p, 0, None))
}

/// Writes one `S` packet per 64-byte signal into `out[offset:]`; returns the bytes written.
#[pyfunction]
#[pyo3(signature = (signals, out, offset = 0))]
fn soupbintcp_encode_signals(
    py: Python<'_>,
    signals: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    offset: usize,
) -> PyResult<usize> {
    let src = ByteBuffer::get(signals, false, "signals")?;
    let mut dst = ByteBuffer::get(out, true, "out")?;
    dst.check_disjoint(&src, "out")?;
    let needed = src.len() / SIGNAL_SIZE * soup::SIGNAL_PACKET_SIZE;
    check_room(offset, needed, dst.len(), "out")?;
    soup::encode_signals(src.as_slice(), &mut dst.as_mut_slice()[offset..])
        .map_err(|e| ferr(py, &e))
}

/// Streaming SoupBinTCP decoder: feed TCP bytes in any chunking, get whole packets back.
///
/// A framing error is sticky (the stream cannot be resynchronised): every later `feed` raises
/// the same `FramingError`; close the connection.
#[pyclass(module = "relentless_fast_signal._signal")]
struct SoupBinTCPDecoder {
    inner: soup::StreamDecoder,
}

#[pymethods]
impl SoupBinTCPDecoder {
    #[new]
    fn new() -> Self {
        Self {
            inner: soup::StreamDecoder::new(),
        }
    }

    /// Appends `data`; returns the packets it completed, in order.
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let b = ByteBuffer::get(data, false, "data")?;
        let mut packets = Vec::new();
        let r = self.inner.feed(b.as_slice(), |p, off, seq| {
            packets.push(SoupBinTCPPacket::from_core(p, off, seq));
        });
        let list = PyList::empty(py);
        for p in packets {
            list.append(Bound::new(py, p)?)?;
        }
        match r {
            Ok(_) => Ok(list),
            Err(e) if list.is_empty() => Err(ferr(py, &e)),
            Err(e) => {
                // Hand back what decoded before the error together with the error.
                let err = ferr(py, &e);
                err.value(py).setattr("packets", &list)?;
                Err(err)
            }
        }
    }

    /// Bytes received that do not yet form a whole packet.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// Stream offset of the first byte not yet consumed.
    #[getter]
    fn position(&self) -> u64 {
        self.inner.position()
    }

    /// Sequence the next `S` packet will carry (known after a Login Accepted), or None.
    #[getter]
    fn next_sequence(&self) -> Option<u64> {
        self.inner.next_sequence()
    }

    #[setter]
    fn set_next_sequence(&mut self, value: Option<u64>) {
        self.inner.set_next_sequence(value);
    }

    fn __repr__(&self) -> String {
        format!(
            "SoupBinTCPDecoder(position={}, pending={}, next_sequence={:?})",
            self.inner.position(),
            self.inner.pending(),
            self.inner.next_sequence()
        )
    }
}
