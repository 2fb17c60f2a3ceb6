//! The forms of the API's text inputs as JSON Schema patterns (ECMA-262 syntax), for the
//! OpenAPI document and the MCP tools' input schemas. Each pattern accepts nothing the parser
//! behind it refuses, so a client that checks its input against the document is not turned
//! away for the form of a value (only for what the document cannot say: a slot taken, a
//! name already used).

/// Free text ([`super::bounded_text`]): at least one character that is not white space, and no
/// control characters other than line breaks and tabs. Its length limit is given beside it.
pub const TEXT: &str = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$";

/// A phone number as a client may write it ([`super::PhoneNumber::parse`]): `+` and 8 to 15
/// digits, or `00` and the same, or a national number with its trunk `0`; spaces, dashes,
/// dots, slashes and parentheses anywhere but before a `+`. The national lengths are those
/// for a two-digit country code, such as Germany's 49.
pub const PHONE_INPUT: &str = r"^\s*(?:\+[ ./()-]*[1-9](?:[ ./()-]*[0-9]){7,14}|[ ./()-]*0[ ./()-]*0[ ./()-]*[1-9](?:[ ./()-]*[0-9]){7,14}|[ ./()-]*0[ ./()-]*[1-9](?:[ ./()-]*[0-9]){5,12})[ ./()-]*\s*$";

/// A phone number as the API writes it: E.164, `+` and 8 to 15 digits.
pub const E164: &str = r"^\+[1-9][0-9]{7,14}$";

/// A wall-clock time `HH:MM`, `00:00` to `24:00`.
pub const CLOCK_TIME: &str = r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// An ISO 4217 currency code (upper case in answers).
pub const CURRENCY: &str = r"^[A-Za-z]{3}$";

/// An e-mail address, as far as it is checked ([`super::is_email`]): it has an `@`.
pub const EMAIL: &str = "@";

/// A secret or key handed over as one word.
pub const WORD: &str = r"^\S+$";

/// An `Idempotency-Key`: visible ASCII without spaces (its length, 1 to 255, beside it).
pub const IDEMPOTENCY_KEY: &str = "^[!-~]+$";

/// Schema only: an IANA time zone name, one of those the server knows (`Europe/Berlin`). Its
/// schema lists them, once, as the component `TimeZone`.
#[derive(Debug)]
pub struct TimeZoneName;

impl schemars::JsonSchema for TimeZoneName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeZone".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "An IANA time zone name, e.g. `Europe/Berlin`.",
            "enum": names,
        })
    }
}

/// Implements `JsonSchema` for a value type written as a string of the form `pattern`,
/// inlined where it is used.
macro_rules! string_schema {
    ($type:ty, $name:literal, $pattern:expr) => {
        impl schemars::JsonSchema for $type {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "pattern": $pattern })
            }
        }
    };
}
pub(crate) use string_schema;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{ClockTime, CountryCode, Currency, PhoneNumber, bounded_text};

    fn pattern(source: &str) -> regex::Regex {
        regex::Regex::new(source).unwrap()
    }

    /// Every string over `alphabet` up to `len` characters long.
    fn strings(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn text_pattern_accepts_only_what_bounded_text_takes() {
        let text = pattern(TEXT);
        for s in strings(&[' ', 'a', '\n', '\t', '\u{0}', '\u{7f}', '\u{85}', 'ä'], 4) {
            if text.is_match(&s) {
                assert!(bounded_text(&s, 200).is_some(), "{s:?}");
            }
        }
        assert!(text.is_match("Anna"));
        assert!(text.is_match("line\nnext"));
        assert!(!text.is_match("   "));
    }

    #[test]
    fn phone_pattern_accepts_only_what_the_parser_takes() {
        let de = CountryCode(49);
        let (input, e164) = (pattern(PHONE_INPUT), pattern(E164));
        let mut accepted = 0;
        for tail in strings(&['0', '1', '9', ' '], 6) {
            for head in [
                "+49", "+0", "0049", "00", "030", "0", "49", "+", "(030)", "+49 (0)",
            ] {
                let s = format!("{head}{tail}123");
                if input.is_match(&s) {
                    accepted += 1;
                    assert!(PhoneNumber::parse(&s, de).is_ok(), "{s:?}");
                }
            }
        }
        assert!(accepted > 10_000, "{accepted}");
        for s in [
            "+49 30 1234567",
            "+4930123456",
            "030 123456",
            "0049 30 123456",
            "(030) 12-34-56",
            "0170/1234567",
            " +1 (415) 555-0100 ",
        ] {
            assert!(input.is_match(s), "{s:?}");
            assert!(PhoneNumber::parse(s, de).is_ok(), "{s:?}");
        }
        let stored = PhoneNumber::parse("030 123456", de).unwrap();
        assert!(e164.is_match(stored.as_str()));
        assert!(!e164.is_match("+49 30 123456"));
    }

    #[test]
    fn clock_time_pattern_is_exactly_the_parser() {
        let clock = pattern(CLOCK_TIME);
        for s in strings(&['0', '1', '2', '4', '5', '9', ':', '+'], 5) {
            assert_eq!(clock.is_match(&s), ClockTime::parse(&s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn every_listed_time_zone_is_taken() {
        let schema = schemars::schema_for!(TimeZoneName);
        let names = schema
            .get("enum")
            .and_then(serde_json::Value::as_array)
            .unwrap();
        assert!(names.len() > 400, "{}", names.len());
        for name in names {
            let name = name.as_str().unwrap();
            assert!(name.parse::<chrono_tz::Tz>().is_ok(), "{name}");
        }
        assert!(names.contains(&serde_json::json!("Europe/Berlin")));
    }

    #[test]
    fn currency_pattern_is_exactly_the_parser() {
        let currency = pattern(CURRENCY);
        for s in strings(&['e', 'U', 'R', '1', ' ', 'é'], 4) {
            assert_eq!(currency.is_match(&s), Currency::parse(&s).is_ok(), "{s:?}");
        }
    }
}
