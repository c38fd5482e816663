//! AFL target `cartesia_request`: Cartesia WebSocket requests translated into protocol v1.

fn main() {
    afl::fuzz!(|data: &[u8]| vv_server::fuzz_entry::cartesia_request(data));
}
