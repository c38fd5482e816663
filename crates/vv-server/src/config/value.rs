//! Raw values from any source (TOML value or text) and their conversion to typed settings.

use super::error::ValueProblem;
use super::settings::Choice;
use std::borrow::Cow;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

/// A value before conversion: text from a flag or variable, or a TOML value from the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawValue<'a> {
    /// A flag's or an environment variable's text.
    Text(&'a str),
    /// A value of the TOML file.
    Toml(&'a toml::Value),
}

impl<'a> RawValue<'a> {
    /// The value as the user wrote it (TOML syntax for file values).
    pub(crate) fn display(&self) -> String {
        match self {
            Self::Text(s) => (*s).to_string(),
            Self::Toml(v) => v.to_string(),
        }
    }

    /// The text of a single value; TOML numbers and booleans become their text.
    pub(crate) fn text(&self) -> Result<Cow<'a, str>, ValueProblem> {
        match self {
            Self::Text(s) => Ok(Cow::Borrowed(s)),
            Self::Toml(toml::Value::String(s)) => Ok(Cow::Borrowed(s)),
            Self::Toml(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => Ok(Cow::Owned(v.to_string())),
            Self::Toml(v) => Err(ValueProblem::WrongShape {
                expected: "a single value",
                found: v.type_str(),
            }),
        }
    }

    /// A value parsed with `FromStr`, whose errors are the problem itself (device, dtype).
    pub(crate) fn parse_as<T>(&self) -> Result<T, ValueProblem>
    where
        T: FromStr,
        ValueProblem: From<T::Err>,
    {
        Ok(self.text()?.parse::<T>()?)
    }

    /// A number; `expected` names it in errors ("an integer").
    pub(crate) fn number<T>(&self, expected: &str) -> Result<T, ValueProblem>
    where
        T: FromStr,
        T::Err: Display,
    {
        let text = self.text()?;
        text.trim()
            .parse::<T>()
            .map_err(|e| ValueProblem::Unparsable {
                expected: expected.to_string(),
                input: text.to_string(),
                reason: Some(e.to_string()),
            })
    }

    /// An integer within `range` (`range_text` describes it in errors).
    pub(crate) fn integer_in<T>(
        &self,
        range: RangeInclusive<T>,
        range_text: &'static str,
    ) -> Result<T, ValueProblem>
    where
        T: FromStr + PartialOrd + Display,
        T::Err: Display,
    {
        let value: T = self.number("an integer")?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ValueProblem::OutOfRange {
                value: value.to_string(),
                range: range_text,
            })
        }
    }

    /// A boolean: true/false, yes/no, on/off or 1/0, in any case.
    pub(crate) fn boolean(&self) -> Result<bool, ValueProblem> {
        let text = self.text()?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(ValueProblem::Unparsable {
                expected: "a boolean (true/false, yes/no, on/off, 1/0)".to_string(),
                input: text.to_string(),
                reason: None,
            }),
        }
    }

    /// One of the named values of `T`, in any case.
    pub(crate) fn choice<T: Choice>(&self) -> Result<T, ValueProblem> {
        let text = self.text()?;
        let wanted = text.trim().to_ascii_lowercase();
        T::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == wanted)
            .ok_or_else(|| ValueProblem::Unparsable {
                expected: format!(
                    "one of {}",
                    T::ALL
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                input: text.to_string(),
                reason: None,
            })
    }

    /// Non-empty text, trimmed.
    pub(crate) fn non_empty(&self) -> Result<String, ValueProblem> {
        let text = self.text()?;
        match text.trim() {
            "" => Err(ValueProblem::Empty),
            t => Ok(t.to_string()),
        }
    }

    /// Like `non_empty`, but empty text means "not set".
    pub(crate) fn optional_text(&self) -> Result<Option<String>, ValueProblem> {
        match self.non_empty() {
            Err(ValueProblem::Empty) => Ok(None),
            other => other.map(Some),
        }
    }

    /// An optional path; empty text means "not set".
    pub(crate) fn optional_path(&self) -> Result<Option<PathBuf>, ValueProblem> {
        Ok(self.optional_text()?.map(PathBuf::from))
    }

    /// An optional number; empty text means "not set".
    pub(crate) fn optional_number<T>(&self, expected: &str) -> Result<Option<T>, ValueProblem>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional_text()? {
            None => Ok(None),
            Some(_) => self.number(expected).map(Some),
        }
    }

    /// A list of strings: a TOML array of strings, or comma-separated text.
    pub(crate) fn string_list(&self) -> Result<Vec<String>, ValueProblem> {
        let Self::Toml(toml::Value::Array(items)) = self else {
            return Ok(self.text()?.split(',').map(str::to_string).collect());
        };
        items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(ValueProblem::WrongShape {
                    expected: "an array of strings",
                    found: other.type_str(),
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::Solver;

    #[test]
    fn toml_scalars_convert_and_tables_are_rejected() {
        let int = toml::Value::Integer(70000);
        assert_eq!(RawValue::Toml(&int).number::<u32>("n").unwrap(), 70000);
        assert!(matches!(
            RawValue::Toml(&int).number::<u16>("a port"),
            Err(ValueProblem::Unparsable { .. })
        ));
        let table = toml::Value::Table(Default::default());
        assert_eq!(
            RawValue::Toml(&table).text().unwrap_err(),
            ValueProblem::WrongShape {
                expected: "a single value",
                found: "table"
            }
        );
    }

    #[test]
    fn ranges_booleans_choices_and_lists() {
        let r = |s| RawValue::Text(s).integer_in(1..=100usize, "1..=100");
        assert_eq!(r(" 7 ").unwrap(), 7);
        assert_eq!(r("0").unwrap_err().code(), "out_of_range");
        assert_eq!(r("x").unwrap_err().code(), "invalid_value");
        assert!(!RawValue::Text("Off").boolean().unwrap());
        assert!(RawValue::Text("maybe").boolean().is_err());
        assert_eq!(
            RawValue::Text("SDE").choice::<Solver>().unwrap(),
            Solver::Sde
        );
        let msg = RawValue::Text("euler").choice::<Solver>().unwrap_err();
        assert!(msg.to_string().contains("one of ode, sde"), "{msg}");
        assert_eq!(RawValue::Text("a,b").string_list().unwrap(), ["a", "b"]);
        assert_eq!(
            RawValue::Text("  ").optional_number::<u64>("n").unwrap(),
            None
        );
    }
}
