//! A tenant's settings: time zone, locale, booking rules, notification channels.

use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{CountryCode, Currency};

/// Language of messages to customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    /// German.
    #[default]
    De,
    /// English.
    En,
}

/// Rules every booking of the tenant must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct BookingRules {
    /// A booking must start at least this long after it is made (at most a week).
    #[schemars(range(max = 10_080))]
    pub min_notice_minutes: u32,
    /// A booking may start at most this many days ahead (capped by the server's limit).
    #[schemars(range(min = 1, max = 365))]
    pub max_advance_days: u32,
    /// Offered start times are on this grid.
    #[schemars(range(min = 5, max = 240))]
    pub slot_interval_minutes: u32,
    /// A cancellation later than this before the start counts as late.
    #[schemars(range(max = 336))]
    pub cancellation_cutoff_hours: u32,
}

impl Default for BookingRules {
    fn default() -> Self {
        Self {
            min_notice_minutes: 60,
            max_advance_days: 90,
            slot_interval_minutes: 15,
            cancellation_cutoff_hours: 24,
        }
    }
}

/// Which channels carry messages to customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct NotificationChannels {
    /// Text messages.
    pub sms: bool,
    /// E-mail.
    pub email: bool,
}

impl Default for NotificationChannels {
    fn default() -> Self {
        Self {
            sms: true,
            email: true,
        }
    }
}

/// Features bought separately from the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default)]
pub struct FeatureFlags {
    /// SMS notifications are paid for.
    pub sms_notifications: bool,
    /// WhatsApp integration is paid for.
    pub whatsapp_integration: bool,
}

/// Everything a tenant can configure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TenantSettings {
    /// IANA zone used where a branch has none, e.g. `Europe/Berlin`.
    #[schemars(with = "crate::values::patterns::TimeZoneName")]
    pub time_zone: Tz,
    /// Language of customer messages.
    pub locale: Locale,
    /// Country code for phone numbers written without one.
    pub default_country_code: CountryCode,
    /// Currency of the catalog.
    pub currency: Currency,
    /// Rules for bookings.
    pub booking_rules: BookingRules,
    /// Channels for customer messages.
    pub notifications: NotificationChannels,
    /// Paid extras.
    pub features: FeatureFlags,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            time_zone: chrono_tz::Europe::Berlin,
            locale: Locale::De,
            default_country_code: CountryCode::default(),
            currency: Currency::EUR,
            booking_rules: BookingRules::default(),
            notifications: NotificationChannels::default(),
            features: FeatureFlags::default(),
        }
    }
}

impl TenantSettings {
    /// Checks the numbers are sensible.
    pub fn validate(&self) -> Result<(), String> {
        let r = &self.booking_rules;
        if !(1..=365).contains(&r.max_advance_days) {
            return Err("booking_rules.max_advance_days must be 1 to 365".to_owned());
        }
        if !(5..=240).contains(&r.slot_interval_minutes) {
            return Err("booking_rules.slot_interval_minutes must be 5 to 240".to_owned());
        }
        if r.min_notice_minutes > 7 * 24 * 60 {
            return Err("booking_rules.min_notice_minutes must be at most a week".to_owned());
        }
        if r.cancellation_cutoff_hours > 14 * 24 {
            return Err("booking_rules.cancellation_cutoff_hours must be at most 336".to_owned());
        }
        if !(1..=999).contains(&self.default_country_code.0) {
            return Err("default_country_code must be 1 to 999".to_owned());
        }
        Ok(())
    }
}
