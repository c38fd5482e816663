//! Text input: the reference's normalisation, the Qwen2.5 tokenizer, and incremental
//! tokenization that gives the same ids for text streamed in any chunking.

#[doc(hidden)]
pub mod fuzz_entry;
mod incremental;
mod normalize;
mod tokenizer;

pub use incremental::{IncrementalTokenizer, MAX_HELD_BYTES};
pub use normalize::{normalize_chars, normalize_text};
pub use tokenizer::TextTokenizer;
