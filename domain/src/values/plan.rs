use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The subscription a tenant pays for; it sets limits and features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// One branch, small teams.
    #[default]
    Basic,
    /// Several branches.
    Professional,
    /// No limits.
    Enterprise,
}

/// What a plan allows; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanLimits {
    /// Active branches.
    pub branches: Option<u32>,
    /// Active staff members in one branch.
    pub staff_per_branch: Option<u32>,
    /// Bookings created in one calendar month (tenant time zone).
    pub bookings_per_month: Option<u32>,
    /// API calls in one rate-limit window.
    pub api_calls_per_hour: Option<u32>,
}

/// Features switched on by the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanFeatures {
    /// More than one branch.
    pub multi_branch: bool,
    /// Dashboards beyond the basics.
    pub advanced_analytics: bool,
    /// Tenant logo and colours in messages.
    pub custom_branding: bool,
    /// Programmatic access beyond the dashboard.
    pub api_access: bool,
}

impl Plan {
    /// The limits of the original design.
    pub fn limits(self) -> PlanLimits {
        match self {
            Self::Basic => PlanLimits {
                branches: Some(1),
                staff_per_branch: Some(5),
                bookings_per_month: Some(500),
                api_calls_per_hour: Some(100),
            },
            Self::Professional => PlanLimits {
                branches: Some(5),
                staff_per_branch: Some(20),
                bookings_per_month: Some(5000),
                api_calls_per_hour: Some(1000),
            },
            Self::Enterprise => PlanLimits {
                branches: None,
                staff_per_branch: None,
                bookings_per_month: None,
                api_calls_per_hour: Some(10_000),
            },
        }
    }

    /// The features of the original design.
    pub fn features(self) -> PlanFeatures {
        PlanFeatures {
            multi_branch: self != Self::Basic,
            advanced_analytics: self != Self::Basic,
            custom_branding: self == Self::Enterprise,
            api_access: self != Self::Basic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enterprise_has_unlimited_branches() {
        assert_eq!(Plan::Basic.limits().branches, Some(1));
        assert_eq!(Plan::Professional.limits().branches, Some(5));
        assert_eq!(Plan::Enterprise.limits().branches, None);
    }

    #[test]
    fn basic_has_neither_multi_branch_nor_api_access() {
        let f = Plan::Basic.features();
        assert!(!f.multi_branch && !f.api_access);
    }
}
