use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A point on the globe in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coordinates {
    /// -90 to 90.
    pub lat: f64,
    /// -180 to 180.
    pub lng: f64,
}

impl Coordinates {
    /// Whether both angles are in range and finite.
    pub fn is_valid(&self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lng)
    }
}
