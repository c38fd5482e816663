//! "Did you mean ...?" for unknown keys of the configuration file.

use super::fields::FIELDS;

/// The setting name closest to `key`, when it is close enough to be a likely typo.
pub(crate) fn closest_setting(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).max(2);
    FIELDS
        .iter()
        .map(|f| (edit_distance(&key, f.name), f.name))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("port", "port"), 0);
    }

    #[test]
    fn suggests_typos_and_kebab_case_but_not_unrelated_words() {
        assert_eq!(closest_setting("prot"), Some("port"));
        assert_eq!(closest_setting("max-slots"), Some("max_slots"));
        assert_eq!(closest_setting("VOICES_DIR"), Some("voices_dir"));
        assert_eq!(closest_setting("completely_unrelated"), None);
    }
}
