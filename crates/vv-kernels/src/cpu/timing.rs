//! A rough timing probe of the skinny matmul's bodies and weight formats (run by hand:
//! `cargo test --release -p vv-kernels -- --ignored --nocapture cpu::timing`); it asserts
//! nothing about speed. Each call reads the next of enough copies of the weights (512 MiB in
//! all) that they come from memory, not from the last call's cache, as in a model's frame.

use std::time::{Duration, Instant};

use super::dispatch::Isa;
use super::matmul::{matmul_on, Rows};
use super::quant::{matmul_packed_on, PackedWeight, WeightFormat};

/// Bytes of weight copies a probe cycles through.
const COPIES_BYTES: usize = 512 << 20;

/// Mean seconds per call of `f(call)`, over at least 0.3 s after a warm-up pass.
fn seconds_per_call(copies: usize, mut f: impl FnMut(usize) -> Vec<f32>) -> f64 {
    (0..copies).for_each(|c| drop(std::hint::black_box(f(c))));
    let (start, mut calls) = (Instant::now(), 0usize);
    while start.elapsed() < Duration::from_millis(300) {
        std::hint::black_box(f(calls % copies));
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

#[test]
#[ignore = "timing probe, run by hand in release"]
fn timing() {
    for (n, k) in [(4864, 896), (896, 4864)] {
        let w: Vec<f32> = (0..n * k).map(|i| (i % 251) as f32 / 251.0 - 0.5).collect();
        for format in ["f32", "bf16", "int8"] {
            let packed = match format {
                "bf16" => Some(PackedWeight::pack(&w, n, k, WeightFormat::Bf16)),
                "int8" => Some(PackedWeight::pack(&w, n, k, WeightFormat::Int8)),
                _ => None,
            };
            let bytes = packed.as_ref().map_or(n * k * 4, PackedWeight::bytes);
            let copies = COPIES_BYTES.div_ceil(bytes);
            let f32s = vec![w.clone(); if packed.is_none() { copies } else { 0 }];
            let packs = vec![packed; copies];
            for isa in Isa::all_supported() {
                let line: Vec<String> = [1, 2, 4, 5, 10]
                    .into_iter()
                    .map(|m| {
                        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 / 13.0).collect();
                        let s = seconds_per_call(copies, |c| match &packs[c] {
                            Some(p) => matmul_packed_on(isa, &x, p, m),
                            None => matmul_on(
                                isa,
                                &x,
                                Rows {
                                    w: &f32s[c],
                                    scales: &[],
                                },
                                m,
                                k,
                                n,
                            ),
                        });
                        format!(
                            "m {m:2} {:6.3} ms {:5.1} GB/s",
                            s * 1e3,
                            bytes as f64 / s / 1e9
                        )
                    })
                    .collect();
                println!("n {n} k {k} {format:4} {isa:8?}: {}", line.join(" | "));
            }
        }
    }
}

/// The tall bf16 kernel against candle's f32 GEMM on the decoder's later-stage shapes (one
/// stream, one frame: `m` time steps).
#[test]
#[ignore = "timing probe, run by hand in release"]
fn tall_timing() {
    use super::tall::{matmul_on, TallBody, TallWeight};
    use candle_core::{Device, Tensor};
    let none = super::Epilogue {
        bias: None,
        gelu: false,
        residual: None,
    };
    for (m, k, n) in [
        (8, 1024, 4096),
        (16, 1024, 4096),
        (8, 4096, 1024),
        (16, 4096, 1024),
        (8, 1024, 5120),
        (40, 512, 2048),
        (40, 2048, 512),
        (40, 512, 1280),
        (200, 256, 1024),
        (200, 1024, 256),
        (800, 128, 512),
        (800, 512, 128),
        (1600, 64, 256),
        (1600, 256, 64),
        (3200, 32, 128),
        (3200, 128, 32),
    ] {
        let w: Vec<f32> = (0..n * k).map(|i| (i % 251) as f32 / 251.0 - 0.5).collect();
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 / 13.0).collect();
        let tall = TallWeight::pack(&w, n, k);
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
        let wt = Tensor::from_vec(w, (n, k), &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        let gemm = seconds_per_call(1, |_| {
            let y = xt.matmul(&wt).unwrap();
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        });
        let macs = (m * k * n) as f64;
        let bodies: Vec<String> = TallBody::all_supported()
            .into_iter()
            .map(|body| {
                let s = seconds_per_call(1, |_| matmul_on(body, &x, &tall, m, &none));
                format!("{body:?} {:7.3} ms {:5.1} GMAC/s", s * 1e3, macs / s / 1e9)
            })
            .collect();
        println!(
            "m {m:4} k {k:4} n {n:4}: candle f32 {:7.3} ms {:5.1} GMAC/s | {}",
            gemm * 1e3,
            macs / gemm / 1e9,
            bodies.join(" | ")
        );
    }
}

#[test]
#[ignore = "timing probe, run by hand in release"]
fn feed_forward_timing() {
    use super::feed_forward::{feed_forward_on, FeedForward};
    use super::tall::{TallBody, TallWeight};
    // The decoder's stages 2-6 (channels, rows per stream), one and two streams.
    for (c, rows) in [(512, 40), (256, 200), (128, 800), (64, 1600), (32, 3200)] {
        let h = 4 * c;
        let value = |i: usize| (i % 251) as f32 / 251.0 - 0.5;
        let up = TallWeight::pack(&(0..h * c).map(value).collect::<Vec<_>>(), h, c);
        let down = TallWeight::pack(&(0..h * c).map(value).collect::<Vec<_>>(), c, h);
        let (norm, up_bias, down_bias) = (vec![1.0; c], vec![0.1; h], vec![0.1; c]);
        let f = FeedForward {
            norm: &norm,
            eps: 1e-5,
            up: &up,
            up_bias: &up_bias,
            down: &down,
            down_bias: &down_bias,
        };
        let line: Vec<String> = TallBody::all_supported()
            .into_iter()
            .flat_map(|body| [1, 2, 4].map(|streams| (body, streams)))
            .map(|(body, streams)| {
                let m = rows * streams;
                let x: Vec<f32> = (0..m * c).map(|i| (i % 13) as f32 / 13.0 - 0.4).collect();
                let s = seconds_per_call(1, |_| feed_forward_on(body, &x, m, &f));
                let macs = (2 * m * c * h) as f64;
                format!(
                    "{body:?} x{streams} {:6.3} ms {:5.1} GMAC/s",
                    s * 1e3,
                    macs / s / 1e9
                )
            })
            .collect();
        println!("c {c:4} rows {rows:4}: {}", line.join(" | "));
    }
}
