//! AFL target `preset_safetensors`: voice presets from flat safetensors seeds.

fn main() {
    afl::fuzz!(|data: &[u8]| vv_preset::fuzz_entry::preset_bytes(data));
}
