use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code, three upper-case letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

super::patterns::string_schema!(Currency, "Currency", super::patterns::CURRENCY);

/// Why an amount of money was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not three ASCII letters.
    #[error("currency must be a three-letter ISO 4217 code, got {0:?}")]
    InvalidCurrency(String),
    /// Prices and deposits are never negative.
    #[error("amount must not be negative")]
    Negative,
}

impl Currency {
    /// The euro, the default for German tenants.
    pub const EUR: Self = Self(*b"EUR");

    /// Parses `eur` or `EUR`.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(MoneyError::InvalidCurrency(code.to_owned()));
        }
        let mut out = [0u8; 3];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b.to_ascii_uppercase();
        }
        Ok(Self(out))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

/// An amount in integer minor units (cents); never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Minor units, e.g. 4500 for 45.00 EUR.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
}

impl Money {
    /// A non-negative amount.
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_normalised_to_upper_case() {
        assert_eq!(Currency::parse("eur").unwrap(), Currency::EUR);
    }

    #[test]
    fn a_currency_must_have_three_letters() {
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("E1R").is_err());
    }

    #[test]
    fn negative_amounts_are_refused() {
        assert_eq!(Money::new(-1, Currency::EUR), Err(MoneyError::Negative));
    }
}
