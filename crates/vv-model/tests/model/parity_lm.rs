//! Golden parity of the lower LM, the TTS LM and the EOS logit on the tiny fixture model, plus
//! the consistency of batched, chunked and incremental forwards of the Qwen2 stack.

use crate::common;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use proptest::prelude::*;
use vv_model::eos_classifier::EosClassifier;
use vv_model::kv_cache::KvCache;
use vv_model::language_model::{TextLm, TtsInput, TtsLm};
use vv_model::linear::Packing;
use vv_model::parity::{lm, relative_error, GoldenFile};
use vv_model::VibeVoiceConfig;

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vibevoice-tiny");

/// Relative tolerance of "same computation, different grouping" comparisons.
const CONSISTENCY_TOL: f64 = 1e-5;

struct Tiny {
    cfg: VibeVoiceConfig,
    lower: TextLm,
    tts: TtsLm,
    eos: EosClassifier,
}

fn tiny() -> &'static Tiny {
    static MODEL: OnceLock<Tiny> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg =
            VibeVoiceConfig::from_file(Path::new(&format!("{TINY}/model/config.json"))).unwrap();
        let weights = format!("{TINY}/model/model.safetensors");
        // SAFETY: the fixture file is not modified while mapped.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu) }
                .unwrap();
        Tiny {
            lower: TextLm::new(&cfg, vb.pp("model"), Packing::NONE).unwrap(),
            tts: TtsLm::new(&cfg, vb.pp("model"), Packing::NONE).unwrap(),
            eos: EosClassifier::new(&cfg, vb.pp("tts_eos_classifier"), Packing::NONE).unwrap(),
            cfg,
        }
    })
}

/// Deterministic pseudo-random activations `[n, hidden]`.
fn activations(seed: usize, n: usize, hidden: usize) -> Tensor {
    let data: Vec<f32> = (0..n * hidden)
        .map(|i| ((seed * 7919 + i) as f32 * 0.731).sin() * 2.0)
        .collect();
    Tensor::from_vec(data, (n, hidden), &Device::Cpu).unwrap()
}

fn ids(seed: usize, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((seed * 31 + i * 17) % vocab) as u32)
        .collect()
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let rel = relative_error(got, want).unwrap();
    println!("{what}: relative error {rel:.3e}");
    assert!(rel <= CONSISTENCY_TOL, "{what}: relative error {rel:.3e}");
}

fn assert_same_cache(got: &KvCache, want: &KvCache, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.num_layers() {
        let (gk, gv) = got.layer(i).unwrap();
        let (wk, wv) = want.layer(i).unwrap();
        assert_close(&gk, &wk, &format!("{what}: layer {i} keys"));
        assert_close(&gv, &wv, &format!("{what}: layer {i} values"));
    }
}

#[test]
fn lm_matches_the_reference() {
    let m = tiny();
    let golden = GoldenFile::open(Path::new(&format!("{TINY}/golden/lm.safetensors"))).unwrap();
    let reports = lm::check(&m.lower, &m.tts, &m.eos, &golden).unwrap();
    // Every output and debug tensor of the file is checked, at 1e-4 relative.
    common::assert_every_golden_checked(&reports, &golden, 1e-4);
    assert!(reports.iter().all(|r| r.component == "lm"));
}

#[test]
fn batched_tts_streams_equal_separate_calls() {
    let m = tiny();
    let hidden = m.cfg.decoder_config.hidden_size;
    // Two streams with different cache lengths (5 and 2), then one batched step of 3 text rows
    // on the first and 1 speech row on the second.
    let mut a = m.tts.new_cache();
    let mut b = m.tts.new_cache();
    m.tts
        .forward(TtsInput::text(&activations(1, 5, hidden)), &mut a)
        .unwrap();
    m.tts
        .forward(TtsInput::speech(&activations(2, 2, hidden)), &mut b)
        .unwrap();
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());

    let xa = activations(3, 3, hidden);
    let xb = activations(4, 1, hidden);
    let batched = m
        .tts
        .forward_batch(
            &[TtsInput::text(&xa), TtsInput::speech(&xb)],
            &mut [&mut a, &mut b],
        )
        .unwrap();
    let ya = m.tts.forward(TtsInput::text(&xa), &mut a2).unwrap();
    let yb = m.tts.forward(TtsInput::speech(&xb), &mut b2).unwrap();

    assert_close(&batched[0], &ya, "stream a");
    assert_close(&batched[1], &yb, "stream b");
    assert_same_cache(&a, &a2, "stream a cache");
    assert_same_cache(&b, &b2, "stream b cache");
    assert_eq!((a.len(), b.len()), (8, 3));
}

#[test]
fn batched_text_streams_equal_separate_calls() {
    let m = tiny();
    let vocab = m.cfg.decoder_config.vocab_size;
    let mut a = m.lower.new_cache();
    let mut b = m.lower.new_cache();
    m.lower.forward(&ids(1, 4, vocab), &mut a).unwrap();
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());

    let (ta, tb) = (ids(2, 1, vocab), ids(3, 5, vocab));
    let batched = m
        .lower
        .forward_batch(&[&ta, &tb], &mut [&mut a, &mut b])
        .unwrap();
    assert_close(
        &batched[0],
        &m.lower.forward(&ta, &mut a2).unwrap(),
        "stream a",
    );
    assert_close(
        &batched[1],
        &m.lower.forward(&tb, &mut b2).unwrap(),
        "stream b",
    );
    assert_same_cache(&a, &a2, "stream a cache");
    assert_same_cache(&b, &b2, "stream b cache");
}

/// Feeds `tokens` in the given chunk sizes and returns all hidden rows and the cache.
fn run_chunked(lower: &TextLm, tokens: &[u32], chunks: &[usize]) -> (Tensor, KvCache) {
    let mut cache = lower.new_cache();
    let mut outs = Vec::new();
    let mut start = 0;
    for &n in chunks {
        outs.push(
            lower
                .forward(&tokens[start..start + n], &mut cache)
                .unwrap(),
        );
        start += n;
    }
    (Tensor::cat(&outs, 0).unwrap(), cache)
}

#[test]
fn prefill_equals_token_by_token_decoding() {
    let m = tiny();
    let tokens = ids(5, 9, m.cfg.decoder_config.vocab_size);
    let (whole, whole_cache) = run_chunked(&m.lower, &tokens, &[9]);
    let (single, single_cache) = run_chunked(&m.lower, &tokens, &[1; 9]);
    assert_close(&single, &whole, "hidden states");
    assert_same_cache(&single_cache, &whole_cache, "cache");

    // Same on the TTS LM (final norm, type rows).
    let hidden = m.cfg.decoder_config.hidden_size;
    let x = activations(6, 4, hidden);
    let mut c1 = m.tts.new_cache();
    let whole = m.tts.forward(TtsInput::speech(&x), &mut c1).unwrap();
    let mut c2 = m.tts.new_cache();
    let rows: Vec<Tensor> = (0..4)
        .map(|i| {
            let row = x.narrow(0, i, 1).unwrap();
            m.tts.forward(TtsInput::speech(&row), &mut c2).unwrap()
        })
        .collect();
    assert_close(&Tensor::cat(&rows, 0).unwrap(), &whole, "tts hidden states");
    assert_same_cache(&c2, &c1, "tts cache");
}

#[test]
fn decoding_across_a_cache_chunk_boundary_equals_one_prefill() {
    let m = tiny();
    let c = KvCache::CHUNK;
    let tokens = ids(7, c + 3, m.cfg.decoder_config.vocab_size);
    let (whole, whole_cache) = run_chunked(&m.lower, &tokens, &[c + 3]);
    let (stepped, stepped_cache) = run_chunked(&m.lower, &tokens, &[c - 2, 1, 1, 3]);
    assert_eq!(stepped_cache.capacity(), 2 * c);
    assert_close(&stepped, &whole, "hidden states");
    assert_same_cache(&stepped_cache, &whole_cache, "cache");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]
    /// Any chunking of a token sequence gives the hidden states of one prefill.
    #[test]
    fn any_chunking_equals_one_prefill(
        seed in 0usize..1000,
        chunks in prop::collection::vec(1usize..7, 1..6),
    ) {
        let m = tiny();
        let total: usize = chunks.iter().sum();
        let tokens = ids(seed, total, m.cfg.decoder_config.vocab_size);
        let (whole, _) = run_chunked(&m.lower, &tokens, &[total]);
        let (chunked, _) = run_chunked(&m.lower, &tokens, &chunks);
        let rel = relative_error(&chunked, &whole).unwrap();
        prop_assert!(rel <= CONSISTENCY_TOL, "chunks {:?}: relative error {:.3e}", chunks, rel);
    }
}
