use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A point on the globe in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Coordinates {
    /// -90 to 90.
    #[schemars(range(min = -90, max = 90))]
    pub lat: f64,
    /// -180 to 180.
    #[schemars(range(min = -180, max = 180))]
    pub lng: f64,
}

impl Coordinates {
    /// Great-circle distance in kilometres (haversine, mean Earth radius 6371.0088 km).
    pub fn distance_km(&self, other: &Self) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0088;
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let d_lat = lat2 - lat1;
        let d_lng = (other.lng - self.lng).to_radians();
        let (sin_lat, sin_lng) = ((d_lat / 2.0).sin(), (d_lng / 2.0).sin());
        let h = (lat1.cos() * lat2.cos()).mul_add(sin_lng * sin_lng, sin_lat * sin_lat);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }

    /// Whether both angles are in range and finite.
    pub fn is_valid(&self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_known_city_pairs() {
        let berlin = Coordinates {
            lat: 52.5200,
            lng: 13.4050,
        };
        let munich = Coordinates {
            lat: 48.1351,
            lng: 11.5820,
        };
        let hamburg = Coordinates {
            lat: 53.5511,
            lng: 9.9937,
        };
        // Published great-circle distances: Berlin–Munich about 504 km, Berlin–Hamburg 255 km.
        assert!((berlin.distance_km(&munich) - 504.0).abs() < 2.0);
        assert!((berlin.distance_km(&hamburg) - 255.0).abs() < 2.0);
        assert!((berlin.distance_km(&munich) - munich.distance_km(&berlin)).abs() < 1e-9);
        assert!(berlin.distance_km(&berlin).abs() < 1e-9);
    }
}
