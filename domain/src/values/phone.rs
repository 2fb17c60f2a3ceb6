use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A telephone number in E.164 form: `+`, a country code, at most 15 digits in all.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

super::patterns::string_schema!(PhoneNumber, "PhoneNumber", super::patterns::E164);

/// A country calling code, the digits after `+` (49 for Germany).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CountryCode(#[schemars(range(min = 1, max = 999))] pub u16);

impl Default for CountryCode {
    fn default() -> Self {
        Self(49)
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a number that can be written in E.164 form.
    #[error("{0:?} is not a valid phone number (expected E.164, e.g. +4930123456)")]
    Invalid(String),
}

impl PhoneNumber {
    /// Parses a number in E.164 form, or a national one (`030 123456`, a leading trunk `0`),
    /// or one with the international prefix `00`, completing it with `default_country`.
    /// Spaces, dashes, dots, slashes and parentheses are ignored.
    pub fn parse(raw: &str, default_country: CountryCode) -> Result<Self, PhoneError> {
        let invalid = || PhoneError::Invalid(raw.to_owned());
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '/' | '(' | ')' => {}
                _ => return Err(invalid()),
            }
        }
        let international = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_owned()
        } else if let Some(rest) = digits.strip_prefix('0') {
            format!("{}{rest}", default_country.0)
        } else {
            return Err(invalid());
        };
        let valid_length = (8..=15).contains(&international.len());
        if !valid_length || international.starts_with('0') {
            return Err(invalid());
        }
        Ok(Self(format!("+{international}")))
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    /// Stored numbers are already E.164; anything else is refused.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if !value.starts_with('+') {
            return Err(PhoneError::Invalid(value));
        }
        Self::parse(&value, CountryCode::default())
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DE: CountryCode = CountryCode(49);

    #[test]
    fn an_e164_number_is_kept() {
        assert_eq!(
            PhoneNumber::parse("+49 30 1234567", DE).unwrap().as_str(),
            "+49301234567"
        );
    }

    #[test]
    fn a_national_number_gets_the_default_country_code() {
        assert_eq!(
            PhoneNumber::parse("030/123 4567", DE).unwrap().as_str(),
            "+49301234567"
        );
    }

    #[test]
    fn the_international_prefix_00_is_understood() {
        assert_eq!(
            PhoneNumber::parse("0043 1 234567", DE).unwrap().as_str(),
            "+431234567"
        );
    }

    #[test]
    fn letters_short_numbers_and_missing_prefixes_are_refused() {
        for raw in [
            "+49 30 CALL-ME",
            "+4930",
            "301234567",
            "",
            "+0301234567",
            "+1234567890123456",
        ] {
            assert!(PhoneNumber::parse(raw, DE).is_err(), "{raw} was accepted");
        }
    }
}
