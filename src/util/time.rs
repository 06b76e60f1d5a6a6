//! Time as the agent shows it: unix seconds as `f64`, the unit of
//! timelines, alerts and the API.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of `t`; 0 for a time before 1970 (a clock set wrong).
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix seconds now.
pub fn unix_now() -> f64 {
    unix(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unix_seconds_keep_the_fraction_and_clamp_before_1970() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_314_809_800);
        assert_eq!(unix(t), 1_795_314_809.8);
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(5)), 0.0);
    }
}
