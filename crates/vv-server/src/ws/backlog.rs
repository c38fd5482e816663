//! What a context holds back while its flushed segment drains: text is appended to the text
//! queued last, and repeated flushes merge into one entry that counts them (each is still
//! answered by its own `flushed`). The queue is therefore bounded by the context's text limit,
//! however many messages arrive.

use std::collections::VecDeque;

/// A held-back client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Text to push into the next segment.
    Text(String),
    /// This many flushes in a row (at least one).
    Flush(usize),
}

/// The queue of held-back operations of one context.
#[derive(Debug, Default)]
pub struct Backlog(VecDeque<Op>);

impl Backlog {
    /// Queues `text`, merged into the text queued last when nothing came between.
    pub fn push_text(&mut self, text: &str) {
        match self.0.back_mut() {
            Some(Op::Text(queued)) => queued.push_str(text),
            _ => self.0.push_back(Op::Text(text.to_owned())),
        }
    }

    /// Queues a flush, merged into the flushes queued last when nothing came between.
    pub fn push_flush(&mut self) {
        match self.0.back_mut() {
            Some(Op::Flush(count)) => *count = count.saturating_add(1),
            _ => self.0.push_back(Op::Flush(1)),
        }
    }

    /// The oldest operation.
    pub fn pop(&mut self) -> Option<Op> {
        self.0.pop_front()
    }

    /// Whether nothing is held back.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries held back.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_flushes_and_texts_merge() {
        let mut backlog = Backlog::default();
        for _ in 0..10_000 {
            backlog.push_flush();
        }
        assert_eq!(backlog.len(), 1);
        backlog.push_text("a");
        backlog.push_text("b");
        backlog.push_flush();
        backlog.push_flush();
        assert_eq!(backlog.len(), 3);
        assert_eq!(backlog.pop(), Some(Op::Flush(10_000)));
        assert_eq!(backlog.pop(), Some(Op::Text("ab".into())));
        assert_eq!(backlog.pop(), Some(Op::Flush(2)));
        assert!(backlog.is_empty() && backlog.pop().is_none());
    }
}
