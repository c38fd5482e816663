//! The text every context and request speaks: by default about 3000 characters of plain
//! English prose in several paragraphs, long enough that a context outlasts most first-audio
//! delays; or that prose repeated or cut to a given length; sent whole or word by word.

/// The text sent in each `text` message (WebSocket) or as `input` (HTTP).
pub const LONG_TEXT: &str = "\
The harbour town wakes slowly in the autumn. Before the first light, the fishing boats slip \
out past the breakwater, their engines muffled by the fog, and the gulls follow them in lazy \
circles. By the time the bakery on the corner opens its shutters, the smell of fresh bread has \
already drifted down to the water, and the first customers are waiting outside with their \
collars turned up against the wind.

Most of the people who live here have done so for generations. They know which streets flood \
when the tide is high and the wind comes from the east, which neighbours will lend a ladder \
without asking why, and which of the old stories told in the pub on Friday evenings are true. \
Visitors come in the summer for the beaches and the boat trips, but they rarely stay long \
enough to learn any of this. When the season ends, the town belongs to its residents again.

The library sits at the top of the hill, in a stone building that used to be a school. On wet \
afternoons it fills with children who come to read, to do their homework, or simply to stay \
out of the rain. The librarian has worked there for almost thirty years. She remembers every \
child who ever borrowed a book about ships, and she likes to tell them that the town's best \
sailors all started in the same corner, by the window that looks out over the bay.

In the middle of the week, the market takes over the square. Farmers from the valley bring \
apples, cheese and honey, and a man with a folding table sells old maps and postcards. There \
is always music: sometimes a young violinist playing for coins, sometimes a group of retired \
teachers who sing sea shanties with more enthusiasm than precision. Nobody seems to mind. The \
market is less about buying things than about meeting people, catching up on the news, and \
arguing good-naturedly about the weather. By noon the stalls are packed away again, and the \
square is left to the pigeons.

Winter brings storms. The waves break over the harbour wall and throw spray across the road, \
and the boats stay tied up for days at a time. On those evenings, the town gathers in the \
community hall for soup and conversation. Someone always brings a guitar, someone else brings \
a cake, and the children run between the tables until they fall asleep on the benches. It is \
on nights like these that the town feels most like a family, held together by the simple \
habit of looking after one another.

When spring returns, the hills behind the town turn green and the first walkers appear on the \
coastal path. The fishermen repaint their boats in bright colours, the bakery adds a new \
bread to its shelves, and the librarian puts up a poster announcing the summer reading \
competition. Life goes on much as it always has, one tide after another, and the people who \
live here would not have it any other way. They say that the sea teaches patience, and that a \
town built beside it learns to measure time not in hours but in seasons.";

/// The built-in prose repeated (paragraph after paragraph) and cut at a word boundary to at
/// most `chars` characters (at least its first word); `None`: the prose as it is.
pub fn text_of(chars: Option<usize>) -> String {
    let Some(chars) = chars else {
        return LONG_TEXT.to_string();
    };
    let mut text = String::with_capacity(chars + LONG_TEXT.len());
    while text.len() < chars {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(LONG_TEXT);
    }
    // ASCII: bytes are characters.
    let cut = text[..=chars.min(text.len() - 1)]
        .rfind(char::is_whitespace)
        .filter(|&at| at > 0)
        .unwrap_or_else(|| text.find(char::is_whitespace).unwrap_or(text.len()));
    text.truncate(cut);
    text
}

/// `text` as an LLM streams it: one piece per word, each with the whitespace before the next.
pub fn words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            pieces.push(&text[start..i]);
            start = i;
            in_space = false;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::{text_of, words, LONG_TEXT};

    #[test]
    fn texts_of_any_length_end_at_a_word_and_words_rebuild_the_text() {
        assert_eq!(text_of(None), LONG_TEXT);
        for chars in [1, 60, 96, 3000, 10_000, 40_000] {
            let t = text_of(Some(chars));
            let first_word = t.split_whitespace().next().unwrap().len();
            assert!(t.len() <= chars.max(first_word), "{chars}: {}", t.len());
            assert!(chars < 60 || t.len() + 20 > chars, "{chars}: {}", t.len());
            assert!(!t.ends_with(char::is_whitespace), "{chars}");
            assert_eq!(words(&t).concat(), t);
            assert_eq!(words(&t).len(), t.split_whitespace().count());
        }
    }

    #[test]
    fn the_text_is_about_3000_characters_of_several_paragraphs() {
        let chars = LONG_TEXT.chars().count();
        assert!((2800..=3600).contains(&chars), "{chars} characters");
        assert!(LONG_TEXT.split("\n\n").count() >= 4);
        assert!(LONG_TEXT.is_ascii());
    }
}
