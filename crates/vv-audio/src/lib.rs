//! vv-audio: turns the model's 24 kHz mono f32 frames into what clients receive.
//!
//! - [`pcm`] / [`g711`]: sample encodings (`pcm_s16le`, `pcm_f32le`, `mulaw`, `alaw`).
//! - [`stretch`]: pitch-preserving streaming time stretcher (WSOLA) for `speed`.
//! - [`resample`]: streaming 24 kHz -> 8/16/22.05/24/44.1/48 kHz resampler.
//! - [`wav`], [`flac`], [`opus`], [`mp3`]: containers and codecs for the HTTP speech endpoints
//!   (and MP3 on the ElevenLabs WebSockets).
//! - [`encoder`]: the [`AudioEncoder`] the server drives (`push` / `finish`).
//! - [`frame_header`]: the 16-byte header of binary WebSocket audio frames.
//!
//! No async runtime and no tensor library: this crate is pure, synchronous byte work.

pub mod encoder;
pub mod error;
pub mod flac;
pub mod format;
pub mod frame_header;
pub mod g711;
pub mod mp3;
pub mod opus;
pub mod pcm;
pub mod resample;
pub mod stretch;
pub mod wav;

pub use encoder::{new_encoder, new_encoder_at_speed, AudioEncoder};
pub use error::AudioError;
pub use format::OutputFormat;
pub use frame_header::{FrameHeader, FLAG_FIRST, FLAG_LAST, FRAME_HEADER_LEN};
pub use pcm::Encoding;
pub use resample::{resample_all, StreamResampler, NATIVE_SAMPLE_RATE, SUPPORTED_SAMPLE_RATES};
pub use stretch::{stretch_all, Speed, TimeStretcher, SPEED_RANGE};
pub use wav::{wav_header, write_wav_file};
