//! AFL target `preset_pt`: voice presets from `.pt` seeds (zip + pickle + strided storages).

fn main() {
    afl::fuzz!(|data: &[u8]| vv_preset::fuzz_entry::preset_bytes(data));
}
