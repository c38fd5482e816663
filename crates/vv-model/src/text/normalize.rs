//! Text normalisation of the reference demos: curly quotes, strip, trailing newline.

/// Replaces typographic quotes the way the reference demos do (`’` -> `'`, `“`/`”` -> `"`).
/// Works per character, so applying it to chunks equals applying it to the whole text.
pub fn normalize_chars(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            other => other,
        })
        .collect()
}

/// The whole-text normalisation of the reference processor: quotes, `strip()`, then `"\n"`.
pub fn normalize_text(text: &str) -> String {
    let mut s = normalize_chars(text).trim().to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_appends_newline() {
        assert_eq!(
            normalize_text("  Hi “there” it’s me \n"),
            "Hi \"there\" it's me\n"
        );
        assert_eq!(normalize_text(""), "\n");
    }
}
