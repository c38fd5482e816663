//! AFL target `ws_message`: protocol v1 client messages (`/v1/tts/stream`).

fn main() {
    afl::fuzz!(|data: &[u8]| vv_server::fuzz_entry::ws_message(data));
}
