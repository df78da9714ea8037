//! Checks the shared hex test vectors (`tests/vectors/*.toml` at the repository root), the same
//! files the Python tests and `tests/c/check_vectors.c` check.

use std::collections::HashMap;

use _signal::moldudp64::{self, PacketKind};
use _signal::signal::{self, Signal};
use _signal::soupbintcp::{self, Packet};
use _signal::SignalErrorKind;

const SIGNAL_VECTORS: &str = include_str!("../../tests/vectors/signal_v1.toml");
const FRAMING_VECTORS: &str = include_str!("../../tests/vectors/framing_v1.toml");

type Table = HashMap<String, String>;

/// Parses the small TOML subset the vector files use: `[[section]]` headers and
/// `key = value` lines (integers, hex integers, strings, arrays of strings), `#` comments.
fn parse(text: &str) -> Vec<(String, Table)> {
    let mut out: Vec<(String, Table)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            out.push((name.to_owned(), Table::new()));
            continue;
        }
        let (k, v) = line.split_once(" = ").expect("key = value");
        let v = match v.find("  #") {
            Some(i) => &v[..i],
            None => v,
        };
        out.last_mut()
            .expect("a section")
            .1
            .insert(k.to_owned(), v.trim().to_owned());
    }
    out
}

fn int(t: &Table, k: &str) -> u64 {
    let v = &t[k];
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

fn string<'a>(t: &'a Table, k: &str) -> &'a str {
    t[k].trim_matches('"')
}

fn strings(t: &Table, k: &str) -> Vec<String> {
    let v = t[k].trim_start_matches('[').trim_end_matches(']');
    v.split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn signal_of(t: &Table) -> Signal {
    let f = |k: &str| f32::from_bits(int(t, k) as u32);
    Signal {
        action: int(t, "action") as u8,
        symbol_id: int(t, "symbol_id") as u32,
        sequence: int(t, "sequence"),
        event_ts_ns: int(t, "event_ts_ns"),
        emit_ts_ns: int(t, "emit_ts_ns"),
        confidence: f("confidence_bits"),
        price_target: f("price_target_bits"),
        stop_loss: f("stop_loss_bits"),
        position_size: f("position_size_bits"),
        risk_score: int(t, "risk_score") as u8,
        urgency: int(t, "urgency") as u8,
        strategy_id: int(t, "strategy_id") as u16,
        model_version: int(t, "model_version") as u16,
        flags: int(t, "flags") as u16,
        context_version: int(t, "context_version") as u32,
    }
}

fn bits_eq(a: &Signal, b: &Signal) -> bool {
    let mut ra = [0u8; 64];
    let mut rb = [0u8; 64];
    a.to_record(&mut ra);
    b.to_record(&mut rb);
    ra == rb
}

#[test]
fn signal_vectors() {
    let mut valid = 0;
    let mut invalid = 0;
    for (section, t) in parse(SIGNAL_VECTORS) {
        let bytes = unhex(string(&t, "hex"));
        match section.as_str() {
            "valid" => {
                let s = signal_of(&t);
                assert_eq!(s.encode().0.to_vec(), bytes, "{}", string(&t, "name"));
                let back = signal::decode(&bytes).unwrap();
                assert!(bits_eq(&back, &s), "{}", string(&t, "name"));
                // The batch path (4-way CRC) agrees with the single path.
                let mut recs = Vec::new();
                for _ in 0..5 {
                    let mut r = [0u8; 64];
                    s.to_record(&mut r);
                    recs.extend_from_slice(&r);
                }
                let mut out = vec![0u8; recs.len()];
                signal::pack_records(&recs, &mut out).unwrap();
                for c in out.chunks(64) {
                    assert_eq!(c, &bytes[..]);
                }
                valid += 1;
            }
            "invalid" => {
                let err = signal::validate(&bytes).unwrap_err();
                let want = string(&t, "error");
                let got = match err.kind {
                    SignalErrorKind::Magic { .. } => "magic",
                    SignalErrorKind::Version { .. } => "version",
                    SignalErrorKind::Crc { .. } => "crc",
                    SignalErrorKind::Action { .. } => "action",
                    SignalErrorKind::Length { .. } => "length",
                    _ => "other",
                };
                assert_eq!(got, want, "{}", string(&t, "name"));
                assert_eq!(
                    err.offset as u64,
                    int(&t, "offset"),
                    "{}",
                    string(&t, "name")
                );
                invalid += 1;
            }
            other => panic!("unknown section {other}"),
        }
    }
    assert!(valid >= 4 && invalid >= 10);
}

fn kind_name(k: PacketKind) -> &'static str {
    k.as_str()
}

#[test]
fn framing_vectors() {
    let mut seen = HashMap::<String, usize>::new();
    for (section, t) in parse(FRAMING_VECTORS) {
        *seen.entry(section.clone()).or_default() += 1;
        let bytes = unhex(string(&t, "hex"));
        let name = string(&t, "name");
        match section.as_str() {
            "moldudp64" => {
                let p = moldudp64::decode(&bytes).unwrap();
                assert_eq!(kind_name(p.kind), string(&t, "kind"), "{name}");
                let session = String::from_utf8(p.session.to_vec()).unwrap();
                assert_eq!(session.trim_end(), string(&t, "session"));
                assert_eq!(p.sequence, int(&t, "sequence"));
                assert_eq!(u64::from(p.count), int(&t, "count"));
                let want: Vec<Vec<u8>> = strings(&t, "messages").iter().map(|h| unhex(h)).collect();
                let got: Vec<Vec<u8>> = p.messages.iter().map(|m| m.to_vec()).collect();
                assert_eq!(got, want, "{name}");
                // Re-encode and compare bytes.
                let sess = moldudp64::session_field(string(&t, "session").as_bytes()).unwrap();
                let again = match p.kind {
                    PacketKind::Data => {
                        let mut v = Vec::new();
                        let refs: Vec<&[u8]> = want.iter().map(Vec::as_slice).collect();
                        moldudp64::encode_packet(&sess, p.sequence, &refs, &mut v).unwrap();
                        v
                    }
                    PacketKind::Heartbeat => moldudp64::heartbeat(&sess, p.sequence).to_vec(),
                    PacketKind::EndOfSession => {
                        moldudp64::end_of_session(&sess, p.sequence).to_vec()
                    }
                    PacketKind::Request => moldudp64::request(&sess, p.sequence, p.count)
                        .unwrap()
                        .to_vec(),
                };
                assert_eq!(again, bytes, "{name}");
            }
            "moldudp64_invalid" => {
                let e = moldudp64::decode(&bytes).unwrap_err();
                assert_eq!(e.offset as u64, int(&t, "offset"), "{name}: {e}");
            }
            "soupbintcp" => {
                let p = soupbintcp::decode(&bytes).unwrap();
                assert_eq!(
                    char::from(p.packet_type()).to_string(),
                    string(&t, "type"),
                    "{name}"
                );
                match &p {
                    Packet::LoginRequest {
                        username,
                        password,
                        session,
                        sequence,
                    } => {
                        assert_eq!(*username, string(&t, "username").as_bytes());
                        assert_eq!(*password, string(&t, "password").as_bytes());
                        assert_eq!(*session, string(&t, "session").as_bytes());
                        assert_eq!(*sequence, int(&t, "sequence"));
                    }
                    Packet::LoginAccepted { session, sequence } => {
                        assert_eq!(*session, string(&t, "session").as_bytes());
                        assert_eq!(*sequence, int(&t, "sequence"));
                    }
                    Packet::LoginRejected { reason } => {
                        assert_eq!(char::from(*reason).to_string(), string(&t, "reject_reason"));
                    }
                    Packet::Debug(d) | Packet::SequencedData(d) | Packet::UnsequencedData(d) => {
                        assert_eq!(d.to_vec(), unhex(string(&t, "payload")));
                    }
                    _ => {}
                }
                let mut again = Vec::new();
                p.encode(&mut again).unwrap();
                assert_eq!(again, bytes, "{name}");
            }
            "soupbintcp_invalid" => {
                let e = soupbintcp::decode(&bytes).unwrap_err();
                assert_eq!(e.offset as u64, int(&t, "offset"), "{name}: {e}");
            }
            other => panic!("unknown section {other}"),
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}
