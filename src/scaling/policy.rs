//! How many warm instances a version should have: pure arithmetic, unit-tested here.
//!
//! The target follows the version's recent peak concurrency with headroom, between its
//! provisioned floor and its function's maximum concurrency; an idle version falls back to
//! its floor (zero unless provisioned).

use std::collections::{BTreeMap, VecDeque};

use crate::model::VersionLabel;
use crate::routing::FunctionRoutes;

/// Samples (one per scaler tick) the moving peak looks back over.
pub const DEMAND_WINDOW: usize = 30;

/// Peak concurrency per tick over the last [`DEMAND_WINDOW`] ticks.
#[derive(Debug, Default)]
pub struct Demand {
    samples: VecDeque<u32>,
}

impl Demand {
    pub fn push(&mut self, peak: u32) {
        if self.samples.len() == DEMAND_WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(peak);
    }

    pub fn peak(&self) -> u32 {
        self.samples.iter().copied().max().unwrap_or(0)
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// The warm instances a version should hold: its recent peak plus a quarter (at least one
/// more), capped at `max_concurrency`, never below the provisioned floor. An idle version
/// keeps only its floor.
pub fn warm_target(peak: u32, idle: bool, floor: u32, max_concurrency: u32) -> u32 {
    let floor = floor.min(max_concurrency);
    if idle || peak == 0 {
        return floor;
    }
    let wanted = peak.saturating_add(peak.div_ceil(4));
    wanted.min(max_concurrency).max(floor)
}

/// Provisioned floors of one function's versions. A function-wide count is split over the
/// versions `$DEFAULT` routes to by their weights (each rounded up, so a 1% canary gets at
/// least one warm instance); a count set on a version replaces its share.
pub fn provisioned_floors(routes: &FunctionRoutes) -> BTreeMap<VersionLabel, u32> {
    let mut floors = BTreeMap::new();
    let wide = routes.scaling.provisioned;
    if wide > 0 {
        for (deployment, weight_bp) in routes.default.weighted_targets() {
            let share = (u64::from(wide) * u64::from(*weight_bp)).div_ceil(10_000) as u32;
            *floors.entry(deployment.label).or_insert(0) += share;
        }
    }
    for (label, count) in &routes.scaling.versions {
        match VersionLabel::parse(label) {
            Some(label) if routes.deployment(label).is_some() => {
                floors.insert(label, *count);
            }
            _ => {}
        }
    }
    floors.retain(|_, n| *n > 0);
    floors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_follows_peak_with_headroom_between_floor_and_max() {
        assert_eq!(warm_target(0, false, 0, 100), 0);
        assert_eq!(warm_target(1, false, 0, 100), 2);
        assert_eq!(warm_target(8, false, 0, 100), 10);
        assert_eq!(
            warm_target(90, false, 0, 100),
            100,
            "capped at max concurrency"
        );
        assert_eq!(warm_target(2, false, 5, 100), 5, "never below the floor");
        assert_eq!(
            warm_target(50, true, 3, 100),
            3,
            "idle keeps the floor only"
        );
        assert_eq!(
            warm_target(50, true, 0, 100),
            0,
            "idle and unprovisioned is zero"
        );
        assert_eq!(
            warm_target(0, false, 500, 10),
            10,
            "the floor is capped too"
        );
    }

    #[test]
    fn demand_is_the_peak_of_a_moving_window() {
        let mut demand = Demand::default();
        demand.push(7);
        for _ in 0..DEMAND_WINDOW - 1 {
            demand.push(1);
        }
        assert_eq!(demand.peak(), 7);
        demand.push(2);
        assert_eq!(demand.peak(), 2, "the 7 slid out of the window");
        demand.clear();
        assert_eq!(demand.peak(), 0);
    }
}
