//! Closed sets written as words ("newest", "keyboard-interactive", "jsonl") and values with a
//! payload ("move:/done/", "2GiB", "10%"), read through serde.
//!
//! Two things the derived `Deserialize` alone does not give:
//! - a refusal that says what *is* accepted, in the config's words, with a "did you mean":
//!   values are parsed with [`WordError`] as the deserializer's error, so serde hands over
//!   the unknown word and its list of accepted words (names and aliases) as data, not as a
//!   sentence to pick apart;
//! - collecting every problem: a field typed [`Parsed<T>`] keeps its own refusal, so the
//!   table around it still deserializes and its other fields are checked too (a bad
//!   `auth` does not hide a bad `port` beside it).

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer};

/// Why a written value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordError {
    /// Not one of the accepted words.
    Unknown { got: String, accepted: Vec<&'static str> },
    /// A value with a payload that did not parse; the message says what was expected.
    Invalid(String),
}

impl de::Error for WordError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WordError::Invalid(msg.to_string())
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        WordError::Unknown { got: variant.to_string(), accepted: expected.to_vec() }
    }
}

impl std::error::Error for WordError {}

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WordError::Unknown { got, accepted } => {
                write!(f, "expected {}; got \"{got}\"", one_of(accepted))?;
                match did_you_mean(got, accepted.iter().copied()) {
                    Some(near) => write!(f, " — did you mean \"{near}\"?"),
                    None => Ok(()),
                }
            }
            WordError::Invalid(m) => f.write_str(m),
        }
    }
}

/// `"a", "b" or "c"`.
pub fn one_of(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The candidate within two edits of `got` (the nearest), for "did you mean" hints on
/// short names; a case-only difference counts as near.
pub fn did_you_mean<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = got.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Parses one written word or value into `T` through `T`'s `Deserialize`.
pub fn parse<T: DeserializeOwned>(s: &str) -> Result<T, WordError> {
    T::deserialize(IntoDeserializer::<WordError>::into_deserializer(s))
}

/// A value as written: parsed, or the reason it was not (reported by the checker at the
/// field's key). Only text is taken; another TOML type is a type error of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T>(pub Result<T, WordError>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Parsed(parse(&s)))
    }
}

/// `Deserialize` for a value with a payload, through its `FromStr` (whose error is the
/// whole message).
pub fn from_str<'de, D: Deserializer<'de>, T: FromStr<Err = String>>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Colour {
        Red,
        DarkBlue,
        #[serde(alias = "grey")]
        Gray,
    }

    #[test]
    fn words_parse_with_names_and_aliases() {
        assert_eq!(parse::<Colour>("red"), Ok(Colour::Red));
        assert_eq!(parse::<Colour>("dark-blue"), Ok(Colour::DarkBlue));
        assert_eq!(parse::<Colour>("grey"), Ok(Colour::Gray));
    }

    #[test]
    fn an_unknown_word_lists_the_accepted_ones_and_the_nearest() {
        let e = parse::<Colour>("dark_blu").unwrap_err();
        assert_eq!(e.to_string(), "expected \"red\", \"dark-blue\", \"gray\" or \"grey\"; got \"dark_blu\" — did you mean \"dark-blue\"?");
        let e = parse::<Colour>("purple").unwrap_err();
        assert_eq!(e.to_string(), "expected \"red\", \"dark-blue\", \"gray\" or \"grey\"; got \"purple\"");
        assert_eq!(
            parse::<Colour>("RED").unwrap_err().to_string(),
            "expected \"red\", \"dark-blue\", \"gray\" or \"grey\"; got \"RED\" — did you mean \"red\"?"
        );
    }

    #[test]
    fn one_of_reads_as_a_sentence() {
        assert_eq!(one_of(&["scim"]), "\"scim\"");
        assert_eq!(one_of(&["auto", "off"]), "\"auto\" or \"off\"");
        assert_eq!(one_of(&["a", "b", "c"]), "\"a\", \"b\" or \"c\"");
    }

    #[test]
    fn did_you_mean_takes_the_nearest_within_two_edits() {
        assert_eq!(did_you_mean("pickk", ["path", "pick", "format"]), Some("pick"));
        assert_eq!(did_you_mean("prot", ["host", "port"]), Some("port"));
        assert_eq!(did_you_mean("certificate", ["key", "password"]), None);
    }

    #[test]
    fn parsed_keeps_the_refusal_beside_the_field() {
        #[derive(Deserialize)]
        struct T {
            a: Parsed<Colour>,
            b: i64,
        }
        let t: T = toml::from_str("a = \"pink\"\nb = 3").unwrap();
        assert!(matches!(t.a.0, Err(WordError::Unknown { .. })));
        assert_eq!(t.b, 3);
        // Not text: a type error of the table, as for any other field.
        assert!(toml::from_str::<T>("a = 1\nb = 3").is_err());
    }
}
