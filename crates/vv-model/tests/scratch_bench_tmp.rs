//! temporary micro benchmark (to be deleted)
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::time::Instant;
use vv_model::acoustic_decoder::AcousticDecoder;
use vv_model::config::{AcousticTokenizerConfig, Depths};

fn cfg(nf: usize, ratios: Vec<usize>, depths: Vec<usize>) -> AcousticTokenizerConfig {
    AcousticTokenizerConfig {
        vae_dim: 64,
        channels: 1,
        decoder_n_filters: nf,
        decoder_ratios: ratios,
        decoder_depths: Some(Depths::List(depths)),
        encoder_depths: Depths::List(vec![]),
        layernorm_eps: 1e-5,
    }
}

fn weights(cfg: &AcousticTokenizerConfig) -> HashMap<String, Tensor> {
    let d = Device::Cpu;
    let mut m = HashMap::new();
    let ch = cfg.decoder_channels().unwrap();
    let mut add = |name: String, shape: &[usize]| {
        m.insert(
            name,
            ((Tensor::rand(0f32, 1., shape, &d).unwrap() - 0.5).unwrap() * 0.05).unwrap(),
        );
    };
    add(
        "upsample_layers.0.0.conv.conv.weight".into(),
        &[ch[0], 64, 7],
    );
    add("upsample_layers.0.0.conv.conv.bias".into(), &[ch[0]]);
    for (i, &r) in cfg.decoder_ratios.iter().enumerate() {
        add(
            format!("upsample_layers.{}.0.convtr.convtr.weight", i + 1),
            &[ch[i], ch[i + 1], 2 * r],
        );
        add(
            format!("upsample_layers.{}.0.convtr.convtr.bias", i + 1),
            &[ch[i + 1]],
        );
    }
    for (i, &dd) in cfg.decoder_depths().unwrap().iter().enumerate() {
        let c = ch[i];
        for j in 0..dd {
            let p = format!("stages.{i}.{j}");
            for n in [
                "norm.weight",
                "ffn_norm.weight",
                "gamma",
                "ffn_gamma",
                "mixer.conv.conv.conv.bias",
                "ffn.linear2.bias",
            ] {
                add(format!("{p}.{n}"), &[c]);
            }
            add(format!("{p}.mixer.conv.conv.conv.weight"), &[c, 1, 7]);
            add(format!("{p}.ffn.linear1.weight"), &[4 * c, c]);
            add(format!("{p}.ffn.linear1.bias"), &[4 * c]);
            add(format!("{p}.ffn.linear2.weight"), &[c, 4 * c]);
        }
    }
    let last = ch[ch.len() - 1];
    add("head.conv.conv.weight".into(), &[1, last, 7]);
    add("head.conv.conv.bias".into(), &[1]);
    m
}

fn bench(name: &str, c: AcousticTokenizerConfig, frames_per_call: usize, per: usize) {
    let dec = AcousticDecoder::new(
        &c,
        VarBuilder::from_tensors(weights(&c), DType::F32, &Device::Cpu),
    )
    .unwrap();
    let lat = Tensor::randn(0f32, 1., (1, 64, frames_per_call), &Device::Cpu).unwrap();
    let mut st = dec.new_state().unwrap();
    let mut v = vec![];
    for i in 0..12 {
        let t = Instant::now();
        dec.decode_step(&lat, &mut st).unwrap();
        if i >= 2 {
            v.push(t.elapsed().as_secs_f64() * 1e3 / per as f64);
        }
    }
    v.sort_by(f64::total_cmp);
    println!(
        "{name}: median {:.1} ms/frame min {:.1}",
        v[v.len() / 2],
        v[0]
    );
}

#[test]
#[ignore]
fn micro() {
    let which = std::env::var("WHICH").unwrap_or_default();
    if which.contains('0') {
        bench("stage0 only (1.07GB)", cfg(2048, vec![], vec![8]), 1, 1);
    }
    if which.contains('a') {
        bench("stage0+up1+stage1", cfg(1024, vec![8], vec![8, 3]), 1, 1);
    }
    if which.contains('t') {
        bench(
            "tail: from 512 (stage2..)",
            cfg(32, vec![5, 4, 2, 2], vec![3, 3, 3, 3, 3]),
            40,
            1,
        );
    }
    if which.contains('b') {
        bench(
            "full, 4 frames per call",
            cfg(32, vec![8, 5, 5, 4, 2, 2], vec![8, 3, 3, 3, 3, 3, 3]),
            4,
            4,
        );
    }
    if which.contains('f') {
        bench(
            "full",
            cfg(32, vec![8, 5, 5, 4, 2, 2], vec![8, 3, 3, 3, 3, 3, 3]),
            1,
            1,
        );
    }
}
