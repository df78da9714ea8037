//! `cargo bench`: ns/signal of the pure Rust batch paths (pack, validate, unpack, MoldUDP64
//! framing) on 1,000 signals. Dependency-free (no criterion): min and median of repeated runs.

#![allow(clippy::cast_precision_loss)] // timing arithmetic and synthetic prices

use std::hint::black_box;
use std::time::Instant;

use _signal::moldudp64;
use _signal::signal::{self, Signal, SIGNAL_SIZE};

const N: usize = 1_000;
const RUNS: usize = 2_000;

fn time_ns_per_signal(mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..100 {
        f();
    }
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[RUNS / 2])
}

fn main() {
    let mut records = vec![0u8; N * SIGNAL_SIZE];
    for (i, r) in records.chunks_exact_mut(SIGNAL_SIZE).enumerate() {
        let s = Signal {
            action: (i % 3) as u8,
            symbol_id: i as u32,
            sequence: i as u64 + 1,
            price_target: 100.0 + i as f32,
            ..Signal::default()
        };
        s.to_record(r.try_into().expect("64 bytes"));
    }
    let mut wire = vec![0u8; N * SIGNAL_SIZE];
    let mut back = vec![0u8; N * SIGNAL_SIZE];
    let session = moldudp64::session_field(b"BENCH").expect("valid session");
    let mut framed = vec![0u8; moldudp64::framed_size(N, 22)];
    let mut spans = Vec::with_capacity(N / 22 + 1);

    let rows = [
        (
            "pack_records",
            time_ns_per_signal(|| {
                black_box(signal::pack_records(black_box(&records), &mut wire).expect("packs"));
            }),
        ),
        (
            "validate",
            time_ns_per_signal(|| {
                black_box(signal::validate(black_box(&wire)).expect("valid"));
            }),
        ),
        (
            "unpack_records",
            time_ns_per_signal(|| {
                black_box(signal::unpack_records(black_box(&wire), &mut back).expect("valid"));
            }),
        ),
        (
            "moldudp64::encode_signals",
            time_ns_per_signal(|| {
                spans.clear();
                black_box(
                    moldudp64::encode_signals(&session, 1, &wire, &mut framed, 1472, &mut spans)
                        .expect("frames"),
                );
            }),
        ),
    ];
    assert_eq!(back, records, "unpack(pack(x)) == x");
    println!("{N} signals per call, {RUNS} runs");
    for (name, (min, median)) in rows {
        println!("{name:<28} min {min:6.2} ns/signal   median {median:6.2} ns/signal");
    }
}
