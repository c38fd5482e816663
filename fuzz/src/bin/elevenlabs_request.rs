//! AFL target `elevenlabs_request`: ElevenLabs WebSocket requests translated into protocol v1.

fn main() {
    afl::fuzz!(|data: &[u8]| vv_server::fuzz_entry::elevenlabs_request(data));
}
