//! Word timestamps of a context, estimated from the model's own interleaving of text and
//! speech: the model reads a window of (up to) 5 text tokens, then samples 6 speech frames,
//! and every audio frame tells how many of the segment's tokens had been read when it was
//! sampled. The tokens of a window are taken to be spoken evenly over its 6 frames; a word
//! spans its tokens (counted by tokenizing the word alone, so a count may differ slightly from
//! the tokens it gets within the text). A word is timed once the frame that ends it is about to
//! be sent (so its timestamps precede or accompany the audio that ends it); when a segment
//! ends, its remaining words are timed at once, clamped to the segment's audio.
//!
//! Words are the whitespace-separated runs of the text, with their original spelling; a word
//! split across `text` messages is one word, and a flush ends the word in progress. Times are
//! milliseconds of the context's audio, counting every segment before (flushes continue the
//! time base); at a `speed` other than 1 the model's time is divided by the speed, as the
//! time-stretched audio is.

use std::collections::VecDeque;

use serde::Serialize;
use vv_audio::NATIVE_SAMPLE_RATE;
use vv_model::generation::SPEECH_WINDOW;

/// One timed word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WordTime {
    /// The word as the client spelled it.
    pub word: String,
    /// Estimated start, in milliseconds from the context's first audio sample.
    pub start_ms: u64,
    /// Estimated end (`>= start_ms`).
    pub end_ms: u64,
}

/// A text window: tokens `first..end` of the segment were read before frame `frame`.
#[derive(Debug, Clone, Copy)]
struct Window {
    first: usize,
    end: usize,
    frame: usize,
}

/// A complete word of the segment and its token range.
#[derive(Debug, Clone)]
struct Word {
    text: String,
    first: usize,
    end: usize,
}

/// Word timing of one segment (one engine utterance).
#[derive(Debug, Clone)]
struct SegmentWords {
    /// Native samples of the context before this segment.
    base: u64,
    words: VecDeque<Word>,
    partial: String,
    /// Whether a word was completed (the next one carries its leading space).
    any_word: bool,
    /// Token boundary after the last complete word.
    tokens: usize,
    windows: Vec<Window>,
    frames: usize,
    samples: u64,
}

impl SegmentWords {
    fn new(base: u64) -> Self {
        Self {
            base,
            words: VecDeque::new(),
            partial: String::new(),
            any_word: false,
            tokens: 0,
            windows: Vec::new(),
            frames: 0,
            samples: 0,
        }
    }

    fn text(&mut self, text: &str, count: &mut dyn FnMut(&str) -> usize) {
        for c in text.chars() {
            if c.is_whitespace() {
                self.end_word(count);
            } else {
                self.partial.push(c);
            }
        }
    }

    fn end_word(&mut self, count: &mut dyn FnMut(&str) -> usize) {
        if self.partial.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.partial);
        // Within a text every word but the first carries the space before it.
        let tokens = if self.any_word {
            count(&format!(" {text}"))
        } else {
            count(&text)
        };
        self.any_word = true;
        let first = self.tokens;
        self.tokens += tokens;
        self.words.push_back(Word {
            text,
            first,
            end: self.tokens,
        });
    }

    /// Where token boundary `p` falls, in frames from the segment start (`None`: not read yet).
    fn frame_of(&self, p: usize) -> Option<f64> {
        let w = self.windows.iter().find(|w| w.first <= p && p <= w.end)?;
        let share = (p - w.first) as f64 / (w.end - w.first) as f64;
        Some(w.frame as f64 + share * SPEECH_WINDOW as f64)
    }

    /// Context milliseconds of a segment position in frames, clamped to the audio so far.
    fn ms(&self, frames: f64, scale: &Scale) -> u64 {
        let samples = ((frames * scale.frame_samples as f64) as u64).min(self.samples);
        let native_ms = (self.base + samples) as f64 * 1000.0 / f64::from(NATIVE_SAMPLE_RATE);
        (native_ms / scale.speed) as u64
    }

    fn timed(&self, word: Word, start: f64, end: f64, scale: &Scale) -> WordTime {
        WordTime {
            word: word.text,
            start_ms: self.ms(start, scale),
            end_ms: self.ms(end, scale),
        }
    }

    /// A frame of `samples` sampled after `read` tokens were read: the words it ends.
    fn frame(&mut self, read: usize, samples: usize, scale: &Scale) -> Vec<WordTime> {
        let read_before = self.windows.last().map_or(0, |w| w.end);
        if read > read_before {
            self.windows.push(Window {
                first: read_before,
                end: read,
                frame: self.frames,
            });
        }
        self.frames += 1;
        self.samples += samples as u64;
        let mut out = Vec::new();
        while let Some(word) = self.words.front() {
            let (Some(start), Some(end)) = (self.frame_of(word.first), self.frame_of(word.end))
            else {
                break;
            };
            if end > self.frames as f64 + 1e-9 {
                break;
            }
            if let Some(word) = self.words.pop_front() {
                out.push(self.timed(word, start, end, scale));
            }
        }
        out
    }

    /// The segment ended: every remaining word, clamped to the segment's audio.
    fn finish(&mut self, scale: &Scale) -> Vec<WordTime> {
        self.end_word(&mut |_| 0);
        let last = self.frames as f64;
        let words: Vec<Word> = self.words.drain(..).collect();
        words
            .into_iter()
            .map(|word| {
                let start = self.frame_of(word.first).unwrap_or(last).min(last);
                let end = self.frame_of(word.end).unwrap_or(last).min(last);
                self.timed(word, start, end, scale)
            })
            .collect()
    }
}

/// How model time becomes audio time.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Native samples per frame.
    frame_samples: usize,
    /// Playback speed (the audio is time-stretched by it).
    speed: f64,
}

/// Word timing of one context: its segments one after another on one time base, and the
/// words timed so far (for `cancelled`).
#[derive(Debug, Clone)]
pub struct WordClock {
    scale: Scale,
    /// Native samples of the finished segments.
    base: u64,
    segment: Option<SegmentWords>,
    timed: Vec<WordTime>,
}

impl WordClock {
    /// A clock for a model whose frames have `frame_samples` native samples, for audio played
    /// at `speed` (a positive factor; 1.0: as generated).
    pub fn new(frame_samples: usize, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        Self {
            scale: Scale {
                frame_samples: frame_samples.max(1),
                speed,
            },
            base: 0,
            segment: None,
            timed: Vec::new(),
        }
    }

    fn segment(&mut self) -> &mut SegmentWords {
        let base = self.base;
        self.segment.get_or_insert_with(|| SegmentWords::new(base))
    }

    /// Text pushed into the current segment; `count` gives a word's tokens.
    pub fn text(&mut self, text: &str, count: &mut dyn FnMut(&str) -> usize) {
        self.segment().text(text, count);
    }

    /// The current segment's input was closed (flush or close): its last word is complete.
    pub fn close_input(&mut self, count: &mut dyn FnMut(&str) -> usize) {
        self.segment().end_word(count);
    }

    /// An audio frame of `samples` native samples, sampled after `read` tokens of the
    /// segment were read: the words to announce before it.
    pub fn frame(&mut self, read: usize, samples: usize) -> Vec<WordTime> {
        let scale = self.scale;
        let words = self.segment().frame(read, samples, &scale);
        self.timed.extend(words.iter().cloned());
        words
    }

    /// The current segment ended: its remaining words (to announce before its last frame).
    pub fn segment_finished(&mut self) -> Vec<WordTime> {
        let Some(mut segment) = self.segment.take() else {
            return Vec::new();
        };
        let words = segment.finish(&self.scale);
        self.base += segment.samples;
        self.timed.extend(words.iter().cloned());
        words
    }

    /// The words announced whose end is within the first `audio_ms` of audio.
    pub fn spoken(&self, audio_ms: u64) -> Vec<WordTime> {
        self.timed
            .iter()
            .take_while(|w| w.end_ms <= audio_ms)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRAME: usize = 3200;

    /// A stand-in tokenizer: a word of n bytes has n / 3 tokens (0 for short ones), plus one
    /// for a leading space.
    fn count(word: &str) -> usize {
        word.len() / 3
    }

    #[test]
    fn words_follow_the_windows() {
        let mut clock = WordClock::new(FRAME, 1.0);
        // "aaaaaa" 2 tokens, " bbbbbbbb" 3, " cc" 1: 6 tokens, windows of 5 and 1.
        clock.text("aaaaaa bbbbbbbb c", &mut count);
        clock.text("c", &mut count);
        clock.close_input(&mut count);
        let mut timed = Vec::new();
        for f in 0..8 {
            let read = if f < 6 { 5 } else { 6 };
            timed.extend(clock.frame(read, FRAME));
        }
        timed.extend(clock.segment_finished());
        let words: Vec<&str> = timed.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["aaaaaa", "bbbbbbbb", "cc"]);
        // Token 0..2 of the first window: frames 0 to 2.4 of 133.3 ms.
        assert_eq!((timed[0].start_ms, timed[0].end_ms), (0, 320));
        assert_eq!((timed[1].start_ms, timed[1].end_ms), (320, 800));
        // "cc" was read with the second window (frame 6); the segment ended after 8 frames.
        assert_eq!((timed[2].start_ms, timed[2].end_ms), (800, 1066));
        assert_eq!(clock.spoken(800).len(), 2);
        assert_eq!(clock.spoken(799).len(), 1);
    }

    /// A segment as the engine runs it: text in chunks, windows of 1 to 5 tokens read one
    /// after another (each then sampled for 6 frames), cut anywhere by a stop.
    #[derive(Debug, Clone)]
    struct Segment {
        chunks: Vec<String>,
        windows: Vec<usize>,
        frames: usize,
        samples: usize,
    }

    fn segment() -> impl Strategy<Value = Segment> {
        (
            prop::collection::vec("[a-zé’ .,!]{0,12}", 0..6),
            prop::collection::vec(1usize..=5, 0..8),
            0usize..60,
            prop::sample::select(vec![FRAME, FRAME - 7, FRAME + 5]),
        )
            .prop_map(|(chunks, windows, frames, samples)| Segment {
                chunks,
                windows,
                frames,
                samples,
            })
    }

    /// Runs segments through one clock; returns every word timed and the audio's end (ms).
    fn run(segments: &[Segment], speed: f64) -> (Vec<Vec<WordTime>>, Vec<u64>) {
        let audio_ms = |samples: u64| (samples as f64 * 1000.0 / 24_000.0 / speed) as u64;
        let mut clock = WordClock::new(FRAME, speed);
        let mut all = Vec::new();
        let mut ends = Vec::new();
        let mut samples = 0u64;
        for seg in segments {
            let mut timed = Vec::new();
            let mut read = 0;
            let mut windows = seg.windows.iter();
            for f in 0..seg.frames {
                if let Some(chunk) = seg.chunks.get(f) {
                    clock.text(chunk, &mut count);
                }
                if f % SPEECH_WINDOW == 0 {
                    read += windows.next().copied().unwrap_or(0);
                }
                samples += seg.samples as u64;
                let words = clock.frame(read, seg.samples);
                // Announced before their frame: they end inside the audio up to it.
                let sent = audio_ms(samples);
                assert!(words.iter().all(|w| w.end_ms <= sent));
                timed.extend(words);
            }
            for chunk in seg.chunks.iter().skip(seg.frames) {
                clock.text(chunk, &mut count);
            }
            clock.close_input(&mut count);
            timed.extend(clock.segment_finished());
            all.push(timed);
            ends.push(audio_ms(samples));
        }
        (all, ends)
    }

    proptest! {
        /// Every word once, in order, as spelled; times monotone, `start <= end`, inside the
        /// context's audio (time-stretched at any speed); each segment continues the time base
        /// of the ones before.
        #[test]
        fn words_are_complete_ordered_and_inside_the_audio(
            segments in prop::collection::vec(segment(), 1..4),
            speed in prop_oneof![Just(1.0), 0.25f64..=4.0],
        ) {
            let (timed, ends) = run(&segments, speed);
            let mut previous_end = 0;
            let mut segment_start = 0;
            for ((seg, words), end) in segments.iter().zip(&timed).zip(&ends) {
                let text = seg.chunks.concat();
                let expected: Vec<&str> = text.split_whitespace().collect();
                let got: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
                prop_assert_eq!(got, expected);
                for w in words {
                    prop_assert!(w.start_ms <= w.end_ms, "{:?}", w);
                    prop_assert!(w.start_ms >= previous_end, "{:?} after {}", w, previous_end);
                    prop_assert!(w.start_ms >= segment_start);
                    prop_assert!(w.end_ms <= *end, "{:?} past {}", w, end);
                    previous_end = w.end_ms;
                }
                segment_start = *end;
            }
        }

        /// The words listed as spoken are the timed ones whose end is within the audio sent.
        #[test]
        fn spoken_words_are_those_ended_in_the_audio(
            seg in segment(), cut in 0u64..10_000
        ) {
            let mut clock = WordClock::new(FRAME, 1.0);
            for chunk in &seg.chunks {
                clock.text(chunk, &mut count);
            }
            let mut read = 0;
            let mut windows = seg.windows.iter();
            for f in 0..seg.frames {
                if f % SPEECH_WINDOW == 0 {
                    read += windows.next().copied().unwrap_or(0);
                }
                clock.frame(read, seg.samples);
            }
            let spoken = clock.spoken(cut);
            prop_assert!(spoken.iter().all(|w| w.end_ms <= cut));
            prop_assert!(clock.timed[spoken.len()..].iter().all(|w| w.end_ms > cut));
        }
    }
}
