//! Voice presets: native `.pt` reading, flat safetensors parity and round trips, validation,
//! robustness against malformed input, and the voice library.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use half::bf16;
use proptest::prelude::*;
use vv_preset::{
    convert, is_valid_voice_name, EntryKind, ModelShape, PresetError, PresetFormat, VoiceLibrary,
    VoicePreset,
};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");

fn data(rel: &str) -> PathBuf {
    Path::new(TESTDATA).join(rel)
}

fn load(rel: &str) -> VoicePreset {
    VoicePreset::load(&data(rel)).unwrap()
}

/// The shape a preset must match, read from a model's `config.json` (the lower LM has the
/// decoder's layers minus the TTS LM's; heads are `hidden / attention heads` wide unless set).
fn shape(config: &Path) -> ModelShape {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let d = &cfg["decoder_config"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
    let tts_layers = n(&cfg["tts_backbone_num_hidden_layers"]);
    let hidden_size = n(&d["hidden_size"]);
    ModelShape {
        lower_layers: n(&d["num_hidden_layers"]) - tts_layers,
        tts_layers,
        kv_heads: n(&d["num_key_value_heads"]),
        head_dim: d["head_dim"]
            .as_u64()
            .map_or(hidden_size / n(&d["num_attention_heads"]), |h| h as usize),
        hidden_size,
    }
}

const DAVIS_PT: &str = "voices/en-Davis_man.pt";
const DAVIS_ST: &str = "voices/en-Davis_man.safetensors";
const EMMA_PT: &str = "voices/en-Emma_woman.pt";
const EMMA_ST: &str = "voices/en-Emma_woman.safetensors";
const TINY_PT: &str = "vibevoice-tiny/golden/voice_preset.pt";
const TINY_ST: &str = "vibevoice-tiny/golden/voice_preset.safetensors";

/// The raw bit patterns of a bf16 or f32 tensor, for exact comparisons.
fn bits(t: &Tensor) -> Vec<u32> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::BF16 => flat
            .to_vec1::<bf16>()
            .unwrap()
            .into_iter()
            .map(|x| u32::from(x.to_bits()))
            .collect(),
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect(),
        other => panic!("unexpected dtype {other:?}"),
    }
}

fn assert_same_tensor(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    assert_eq!(a.dtype(), b.dtype(), "{what}: dtype");
    assert!(bits(a) == bits(b), "{what}: values differ");
}

/// Tolerance: none. Every tensor of every entry must be bit-identical.
fn assert_same_preset(a: &VoicePreset, b: &VoicePreset) {
    for kind in EntryKind::ALL {
        let (x, y) = (a.entry(kind), b.entry(kind));
        let name = kind.name();
        assert_eq!(x.num_layers(), y.num_layers(), "{name}: layers");
        assert_same_tensor(
            x.last_hidden_state(),
            y.last_hidden_state(),
            &format!("{name}/last_hidden_state"),
        );
        for layer in 0..x.num_layers() {
            assert_same_tensor(
                &x.keys()[layer],
                &y.keys()[layer],
                &format!("{name}/{layer}/key"),
            );
            assert_same_tensor(
                &x.values()[layer],
                &y.values()[layer],
                &format!("{name}/{layer}/value"),
            );
        }
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vv-model-presets-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// All members of a zip file, in archive order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().to_string(), data)
        })
        .collect()
}

/// A stored (uncompressed) zip of the given members, like `torch.save` writes.
fn rezip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The tiny preset's members with `data.pkl` replaced.
fn tiny_with_pickle(pickle: &[u8]) -> Vec<u8> {
    let mut members = unzip(&std::fs::read(data(TINY_PT)).unwrap());
    for (name, bytes) in &mut members {
        if name.ends_with("/data.pkl") {
            *bytes = pickle.to_vec();
        }
    }
    rezip(&members)
}

fn tiny_pickle() -> Vec<u8> {
    unzip(&std::fs::read(data(TINY_PT)).unwrap())
        .into_iter()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .unwrap()
        .1
}

#[test]
fn real_pt_presets_have_the_documented_structure() {
    for (rel, root, lp, tp) in [(DAVIS_PT, "Wayne", 60, 183), (EMMA_PT, "5683", 74, 251)] {
        let p = load(rel);
        assert_eq!(p.format(), PresetFormat::TorchZip);
        assert_eq!(p.zip_root(), Some(root), "{rel}");
        let lengths: Vec<usize> = p.entries().map(|(_, e)| e.seen_tokens()).collect();
        assert_eq!(lengths, vec![lp, tp, 1, 1], "{rel}");
        let layers: Vec<usize> = p.entries().map(|(_, e)| e.num_layers()).collect();
        assert_eq!(layers, vec![4, 20, 4, 20], "{rel}");
        for (kind, e) in p.entries() {
            let l = e.seen_tokens();
            assert_eq!(e.dtype(), DType::BF16, "{rel} {}", kind.name());
            assert_eq!(e.last_hidden_state().dims(), &[1, l, 896]);
            assert_eq!(e.kv_shape(), &[1, 2, l, 64]);
            assert!(e.keys().iter().chain(e.values()).all(|t| t.is_contiguous()));
        }
    }
}

#[test]
fn kv_storage_is_read_position_major() {
    // Storage of lm key layer 0 is `Wayne/data/1`, laid out [T][kv=2][hd=64] in bf16.
    let members = unzip(&std::fs::read(data(DAVIS_PT)).unwrap());
    let raw = &members.iter().find(|(n, _)| n == "Wayne/data/1").unwrap().1;
    let stored = |t: usize, h: usize, d: usize| {
        let i = ((t * 2 + h) * 64 + d) * 2;
        bf16::from_le_bytes([raw[i], raw[i + 1]])
    };
    let p = load(DAVIS_PT);
    let key: Vec<Vec<Vec<bf16>>> = p.lm().keys()[0].squeeze(0).unwrap().to_vec3().unwrap();
    for (t, h, d) in [(0, 0, 0), (0, 1, 5), (1, 0, 63), (37, 1, 17), (59, 1, 63)] {
        assert_eq!(
            key[h][t][d].to_bits(),
            stored(t, h, d).to_bits(),
            "({t},{h},{d})"
        );
    }
}

#[test]
fn real_pt_presets_equal_the_shipped_safetensors_bitwise() {
    for (pt, st) in [(DAVIS_PT, DAVIS_ST), (EMMA_PT, EMMA_ST)] {
        let a = load(pt);
        let b = load(st);
        assert_eq!(b.format(), PresetFormat::FlatSafetensors);
        assert_eq!(b.zip_root(), None);
        assert_same_preset(&a, &b);
        assert_eq!(a.source(), b.source(), "{pt}");
        assert_eq!(a.source_sha256(), b.source_sha256(), "{pt}");
        assert_eq!(a.source_sha256().map(str::len), Some(64));
    }
}

#[test]
fn negative_caches_are_identical_across_voices() {
    let davis = load(DAVIS_PT);
    let emma = load(EMMA_PT);
    for kind in [EntryKind::NegLm, EntryKind::NegTtsLm] {
        let (a, b) = (davis.entry(kind), emma.entry(kind));
        assert_same_tensor(a.last_hidden_state(), b.last_hidden_state(), kind.name());
        for (x, y) in a
            .keys()
            .iter()
            .zip(b.keys())
            .chain(a.values().iter().zip(b.values()))
        {
            assert_same_tensor(x, y, kind.name());
        }
    }
    // ... while the positive ones differ.
    assert_ne!(davis.lm().seen_tokens(), emma.lm().seen_tokens());
}

#[test]
fn tiny_pt_equals_its_safetensors_and_fits_the_tiny_model() {
    let pt = load(TINY_PT);
    let st = load(TINY_ST);
    assert_eq!(pt.zip_root(), Some("voice_preset"));
    let lengths: Vec<usize> = pt.entries().map(|(_, e)| e.seen_tokens()).collect();
    assert_eq!(lengths, vec![7, 11, 1, 1]);
    assert!(pt.entries().all(|(_, e)| e.dtype() == DType::F32));
    assert_same_preset(&pt, &st);

    let tiny = shape(&data("vibevoice-tiny/model/config.json"));
    pt.validate(&tiny).unwrap();
    st.validate(&tiny).unwrap();
    let real = shape(&data("real-config.json"));
    let err = pt.validate(&real).unwrap_err();
    assert_eq!(err.code(), "invalid_voice_preset");
    assert!(
        err.to_string()
            .contains("entry lm has layers 2, the model expects 4"),
        "{err}"
    );
}

#[test]
fn real_preset_validates_against_the_real_config_only() {
    let davis = load(DAVIS_ST);
    let real = shape(&data("real-config.json"));
    davis.validate(&real).unwrap();
    let mut wrong = real;
    wrong.kv_heads = 7;
    let err = davis.validate(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("entry lm has KV heads 2, the model expects 7"),
        "{err}"
    );
    let mut wrong = real;
    wrong.tts_layers = 19;
    let err = davis.validate(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("entry tts_lm has layers 20, the model expects 19"),
        "{err}"
    );
    let mut wrong = real;
    wrong.hidden_size = 1024;
    let err = davis.validate(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("entry lm has hidden size 896, the model expects 1024"),
        "{err}"
    );
}

#[test]
fn conditions_and_caches_come_from_the_right_entries() {
    let p = load(DAVIS_PT);
    let pos = p.positive_condition().unwrap();
    let neg = p.negative_condition().unwrap();
    assert_eq!(pos.dims(), &[896]);
    assert_eq!(neg.dims(), &[896]);
    let last_tts = p
        .tts_lm()
        .last_hidden_state()
        .get(0)
        .unwrap()
        .get(182)
        .unwrap();
    assert_same_tensor(&pos, &last_tts, "positive condition");
    let neg_row = p.neg_tts_lm().last_hidden_state().flatten_all().unwrap();
    assert_same_tensor(&neg, &neg_row, "negative condition");

    let (k, v) = p.tts_lm_cache();
    assert_eq!((k.len(), v.len()), (20, 20));
    assert_eq!(k[0].dims(), &[1, 2, 183, 64]);
    let (k, _) = p.lm_cache();
    assert_eq!(k.len(), 4);
    assert_eq!(k[3].dims(), &[1, 2, 60, 64]);
    let (k, v) = p.neg_tts_lm_cache();
    assert_eq!((k.len(), v[19].dims()), (20, &[1, 2, 1, 64][..]));

    // bf16 -> f32 is exact, so converting keeps every value.
    let f = p.to_dtype_device(DType::F32, &Device::Cpu).unwrap();
    assert_eq!(f.tts_lm().dtype(), DType::F32);
    let back = f.to_dtype_device(DType::BF16, &Device::Cpu).unwrap();
    assert_same_preset(&p, &back);
    assert!(p.to_dtype_device(DType::U8, &Device::Cpu).is_err());
}

#[test]
fn convert_round_trips_exactly_and_summarises() {
    let dir = temp_dir("convert");
    let out = dir.join("davis.safetensors");
    let summary = convert(&data(DAVIS_PT), &out).unwrap();
    assert_eq!(summary.format, PresetFormat::FlatSafetensors);
    assert_eq!(summary.source.as_deref(), Some("en-Davis_man.pt"));
    let written = VoicePreset::load(&out).unwrap();
    assert_same_preset(&written, &load(DAVIS_PT));
    assert_same_preset(&written, &load(DAVIS_ST));
    assert_eq!(written.source_sha256(), load(DAVIS_ST).source_sha256());

    // Writing then reading again is the identity, in memory too.
    let bytes = written.to_flat_bytes().unwrap();
    let again = VoicePreset::from_bytes(&bytes, "again").unwrap();
    assert_same_preset(&written, &again);
    assert_eq!(again.summary(), written.summary());

    let pt_summary = load(DAVIS_PT).summary();
    let json = serde_json::to_value(&pt_summary).unwrap();
    assert_eq!(json["format"], "torch_zip");
    assert_eq!(json["zip_root"], "Wayne");
    assert_eq!(json["entries"][1]["name"], "tts_lm");
    assert_eq!(json["entries"][1]["seen_tokens"], 183);
    assert_eq!(json["entries"][1]["num_layers"], 20);
    assert_eq!(json["entries"][1]["dtype"], "bf16");
    assert_eq!(
        json["entries"][1]["key_value"],
        serde_json::json!([1, 2, 183, 64])
    );
    assert_eq!(
        json["entries"][0]["last_hidden_state"],
        serde_json::json!([1, 60, 896])
    );
    let flat_json = serde_json::to_value(load(DAVIS_ST).summary()).unwrap();
    assert!(flat_json["zip_root"].is_null());

    let text = pt_summary.render_text();
    assert!(text.contains("zip root: Wayne"), "{text}");
    let tts_row = text.lines().find(|l| l.starts_with("tts_lm")).unwrap();
    assert!(
        tts_row.contains("183") && tts_row.contains("[1, 2, 183, 64]"),
        "{tts_row}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn format_is_detected_by_content_not_extension() {
    let dir = temp_dir("detect");
    let disguised = dir.join("really_a_pt.safetensors");
    std::fs::copy(data(TINY_PT), &disguised).unwrap();
    assert_eq!(
        VoicePreset::load(&disguised).unwrap().format(),
        PresetFormat::TorchZip
    );
    let text = dir.join("text.pt");
    std::fs::write(&text, b"hello").unwrap();
    let err = VoicePreset::load(&text).unwrap_err();
    assert_eq!(err.code(), "invalid_voice_preset");
    assert!(err.to_string().contains("neither a torch zip"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn disallowed_globals_are_refused_by_name() {
    // pickle.dumps(os.system("ls"))-style payload: GLOBAL 'os system', ('ls',), REDUCE.
    let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    let err = VoicePreset::from_bytes(&tiny_with_pickle(evil), "evil.pt").unwrap_err();
    assert_eq!(err.code(), "invalid_voice_preset");
    assert!(
        err.to_string().contains("os.system is not allowed"),
        "{err}"
    );

    // The same inside an otherwise valid preset: swap OrderedDict for builtins.eval.
    let pkl = tiny_pickle();
    let needle = b"collections\nOrderedDict\n";
    let pos = pkl.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut patched = pkl[..pos].to_vec();
    patched.extend_from_slice(b"builtins\neval\n");
    patched.extend_from_slice(&pkl[pos + needle.len()..]);
    let err = VoicePreset::from_bytes(&tiny_with_pickle(&patched), "eval.pt").unwrap_err();
    assert!(
        err.to_string().contains("builtins.eval is not allowed"),
        "{err}"
    );
}

#[test]
fn rezipped_tiny_preset_still_loads_and_big_endian_is_refused() {
    let members = unzip(&std::fs::read(data(TINY_PT)).unwrap());
    let same = VoicePreset::from_bytes(&rezip(&members), "rezipped.pt").unwrap();
    assert_same_preset(&same, &load(TINY_PT));

    let big: Vec<_> = members
        .iter()
        .map(|(n, d)| {
            let d = if n.ends_with("/byteorder") {
                b"big".to_vec()
            } else {
                d.clone()
            };
            (n.clone(), d)
        })
        .collect();
    let err = VoicePreset::from_bytes(&rezip(&big), "big.pt").unwrap_err();
    assert!(err.to_string().contains("little-endian"), "{err}");

    // A storage shorter than the pickle declares is refused, not read past.
    let short: Vec<_> = members
        .iter()
        .map(|(n, d)| {
            let d = if n.ends_with("/data/5") {
                d[..d.len() - 4].to_vec()
            } else {
                d.clone()
            };
            (n.clone(), d)
        })
        .collect();
    let err = VoicePreset::from_bytes(&rezip(&short), "short.pt").unwrap_err();
    assert!(
        err.to_string().contains("storage 5 holds 2812 bytes"),
        "{err}"
    );

    // A stride that walks past the end of the storage is refused: lm hidden state
    // [1, 7, 64] with strides (448, 64, 1) patched to (448, 65, 1) reaches 6*65+63 = 453 >= 448.
    let pkl = tiny_pickle();
    let needle = b"M\xc0\x01K@K\x01\x87";
    let pos = pkl.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut patched = pkl.clone();
    patched[pos + 4] = b'A';
    let err = VoicePreset::from_bytes(&tiny_with_pickle(&patched), "stride.pt").unwrap_err();
    assert!(err.to_string().contains("reaches element 453"), "{err}");
}

/// One way of damaging a valid preset.
#[derive(Debug, Clone)]
enum Damage {
    Random(Vec<u8>),
    Truncate(usize),
    Mutate(Vec<(usize, u8)>),
    MutatePickle(Vec<(usize, u8)>),
    TruncatePickle(usize),
    MutateFlat(Vec<(usize, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let edits = || prop::collection::vec((any::<usize>(), any::<u8>()), 1..8);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(Damage::Random),
        any::<usize>().prop_map(Damage::Truncate),
        edits().prop_map(Damage::Mutate),
        edits().prop_map(Damage::MutatePickle),
        any::<usize>().prop_map(Damage::TruncatePickle),
        edits().prop_map(Damage::MutateFlat),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    if !bytes.is_empty() {
        let n = bytes.len();
        for &(at, b) in edits {
            bytes[at % n] = b;
        }
    }
    bytes
}

proptest! {
    // Fuzzing by structured generation (issue 12): random bytes, truncations and byte edits of
    // the zip container, of the pickle inside it and of the safetensors form.
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Whatever the bytes, loading returns Ok or a damaged file's error and never panics.
    #[test]
    fn damaged_presets_never_panic(d in damage()) {
        let pt = std::fs::read(data(TINY_PT)).unwrap();
        let bytes = match &d {
            Damage::Random(b) => {
                let mut with_magic = b"PK\x03\x04".to_vec();
                with_magic.extend_from_slice(b);
                let _ = VoicePreset::from_bytes(b, "random");
                with_magic
            }
            Damage::Truncate(at) => pt[..at % (pt.len() + 1)].to_vec(),
            Damage::Mutate(edits) => apply(pt, edits),
            Damage::MutatePickle(edits) => tiny_with_pickle(&apply(tiny_pickle(), edits)),
            Damage::TruncatePickle(at) => {
                let pkl = tiny_pickle();
                tiny_with_pickle(&pkl[..at % (pkl.len() + 1)])
            }
            Damage::MutateFlat(edits) => apply(std::fs::read(data(TINY_ST)).unwrap(), edits),
        };
        // The fuzz targets' check: a damaged file's error kind, the flat round trip of what decodes.
        vv_preset::fuzz_entry::preset_bytes(&bytes);
    }
}

#[test]
fn voice_names_are_validated() {
    for ok in ["en-Davis_man", "a", "voice.v2", "A-b_c.9"] {
        assert!(is_valid_voice_name(ok), "{ok}");
    }
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/../b",
        "a/b",
        "a\\b",
        "a\0b",
        ".hidden",
        "a..b",
        "sp ace",
        "é",
        "/etc/passwd",
        "C:x",
    ] {
        assert!(!is_valid_voice_name(bad), "{bad:?}");
    }
    assert!(!is_valid_voice_name(&"x".repeat(129)));
}

#[test]
fn library_scans_prefers_safetensors_and_caches() {
    let dir = temp_dir("library");
    std::fs::copy(data(TINY_PT), dir.join("alpha.pt")).unwrap();
    std::fs::copy(data(TINY_ST), dir.join("alpha.safetensors")).unwrap();
    std::fs::copy(data(TINY_PT), dir.join("beta.pt")).unwrap();
    std::fs::copy(data(TINY_PT), dir.join("bad name.pt")).unwrap();
    std::fs::copy(data(TINY_PT), dir.join(".hidden.pt")).unwrap();
    std::fs::write(dir.join("notes.txt"), b"not a voice").unwrap();
    std::fs::write(dir.join("broken.pt"), b"PK\x03\x04 broken").unwrap();
    std::fs::create_dir(dir.join("folder.pt")).unwrap();

    let lib = VoiceLibrary::scan(&dir).unwrap();
    let names: Vec<&str> = lib.names().collect();
    assert_eq!(names, vec!["alpha", "beta", "broken"]);
    assert_eq!(lib.len(), 3);
    assert_eq!(lib.dir(), dir.as_path());
    assert_eq!(lib.path("alpha").unwrap(), dir.join("alpha.safetensors"));

    let alpha = lib.get("alpha").unwrap();
    assert_eq!(alpha.format(), PresetFormat::FlatSafetensors);
    assert!(Arc::ptr_eq(&alpha, &lib.get("alpha").unwrap()));
    assert_eq!(lib.get("beta").unwrap().format(), PresetFormat::TorchZip);
    assert_eq!(
        lib.get("broken").unwrap_err().code(),
        "invalid_voice_preset"
    );

    for bad in [
        "../alpha",
        "alpha/..",
        "a\0b",
        "",
        "..",
        "bad name",
        "/etc/passwd",
        "gamma",
    ] {
        let err = lib.get(bad).unwrap_err();
        assert!(
            matches!(err, PresetError::UnknownVoice(ref n) if n == bad),
            "{bad:?}: {err}"
        );
        assert_eq!(err.code(), "unknown_voice");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = dir.join("does-not-exist");
    let err = VoiceLibrary::scan(&missing).unwrap_err();
    assert_eq!(err.code(), "io_error");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}
