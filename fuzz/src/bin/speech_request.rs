//! AFL target `speech_request`: `POST /v1/audio/speech` bodies.

fn main() {
    afl::fuzz!(|data: &[u8]| vv_server::fuzz_entry::speech_request(data));
}
