//! AFL target `tokenize_chunks`: text split into chunks at 0xFF bytes, tokenized incrementally
//! and whole with the tiny fixture's tokenizer (the ids must agree).

use vv_model::text::fuzz_entry::tokenize_chunks;
use vv_model::text::TextTokenizer;

const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/vibevoice-tiny/tokenizer/tokenizer.json"
);

fn main() {
    let tok = TextTokenizer::from_file(std::path::Path::new(TOKENIZER)).expect("tokenizer");
    afl::fuzz!(|data: &[u8]| tokenize_chunks(&tok, data));
}
