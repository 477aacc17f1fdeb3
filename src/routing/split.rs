//! Traffic-split math: weights in basis points, weighted random choice, and sticky choice by
//! weighted rendezvous hashing.
//!
//! Sticky routing must keep a user on their version while weights stay, and when a canary's
//! weight grows, move users only towards the canary, never back. Weighted rendezvous hashing
//! gives both: each (key, target) pair draws an exponential variable `E / weight` from a hash,
//! and the smallest wins. A target's chance is exactly its share of the weights; raising one
//! target's weight (and lowering others') can only win it keys, never lose them.

/// A target's identity for hashing: stable across reorderings and other targets' changes.
pub type TargetId = u64;

/// Picks an index at random in proportion to `weights` (basis points summing to [`FULL`]).
/// `roll` is uniform in `0..FULL`.
pub fn pick_by_roll(weights: impl IntoIterator<Item = u32>, roll: u32) -> usize {
    let mut acc = 0;
    let mut last = 0;
    for (index, weight) in weights.into_iter().enumerate() {
        if weight == 0 {
            continue;
        }
        acc += weight;
        last = index;
        if roll < acc {
            return index;
        }
    }
    last
}

/// Picks the target a key sticks to: weighted rendezvous hashing over `(id, weight)` pairs.
/// Targets with weight 0 never win unless every weight is 0.
pub fn pick_sticky(key_hash: u64, targets: impl IntoIterator<Item = (TargetId, u32)>) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (index, (id, weight)) in targets.into_iter().enumerate() {
        if weight == 0 {
            continue;
        }
        // Uniform in (0, 1], then an exponential draw scaled down by the weight.
        let bits = mix(key_hash ^ mix(id.wrapping_add(0x9e37_79b9_7f4a_7c15)));
        let uniform = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let score = -uniform.ln() / weight as f64;
        if score < best.0 {
            best = (score, index);
        }
    }
    best.1
}

/// A stable 64-bit hash of a sticky key (FNV-1a, then a finaliser), identical across
/// processes and releases so users keep their version through restarts.
pub fn key_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    const FULL: u32 = crate::model::FULL.get();

    const KEYS: u32 = 100_000;

    fn shares(targets: &[(TargetId, u32)]) -> Vec<f64> {
        let mut counts = vec![0u32; targets.len()];
        for key in 0..KEYS {
            let hash = key_hash(format!("user-{key}").as_bytes());
            counts[pick_sticky(hash, targets.iter().copied())] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 * 100.0 / KEYS as f64)
            .collect()
    }

    #[test]
    fn sticky_shares_match_weights_within_half_a_point() {
        for targets in [
            vec![(1, 9000), (2, 1000)],
            vec![(3, 5000), (4, 3000), (5, 2000)],
            vec![(1, 100), (2, 9900)],
            vec![(7, 2500), (8, 2500), (9, 2500), (u64::MAX, 2500)],
        ] {
            for ((_, weight), share) in targets.iter().zip(shares(&targets)) {
                let expected = *weight as f64 / 100.0;
                assert!(
                    (share - expected).abs() < 0.5,
                    "{targets:?}: {share} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn random_rolls_match_weights_within_half_a_point() {
        let weights = [6000, 0, 3000, 1000];
        let mut counts = [0u32; 4];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..KEYS {
            counts[pick_by_roll(weights, rng.u32(0..FULL))] += 1;
        }
        assert_eq!(counts[1], 0);
        for (weight, count) in weights.iter().zip(counts) {
            let share = count as f64 * 100.0 / KEYS as f64;
            assert!((share - *weight as f64 / 100.0).abs() < 0.5);
        }
    }

    #[test]
    fn growing_a_canary_only_moves_users_onto_it() {
        let (stable, canary) = (1, 2);
        let mut previous: Vec<usize> = Vec::new();
        for canary_share in [100, 1000, 2000, 5000, 9000, 10_000] {
            let targets = [(stable, FULL - canary_share), (canary, canary_share)];
            let now: Vec<usize> = (0..KEYS)
                .map(|k| pick_sticky(key_hash(&k.to_le_bytes()), targets))
                .collect();
            for (before, after) in previous.iter().zip(&now) {
                assert!(
                    !(*before == 1 && *after == 0),
                    "a user moved from the canary back to stable at {canary_share}"
                );
            }
            previous = now;
        }
    }

    #[test]
    fn same_key_same_target_while_weights_stay() {
        let targets = [(1, 3333), (2, 3333), (3, 3334)];
        for key in 0..1000u32 {
            let hash = key_hash(&key.to_le_bytes());
            let first = pick_sticky(hash, targets);
            assert!((0..20).all(|_| pick_sticky(hash, targets) == first));
        }
    }

    #[test]
    fn zero_weights_never_win() {
        assert_eq!(pick_sticky(42, [(1, 0), (2, FULL)]), 1);
        assert_eq!(pick_by_roll([0, FULL, 0], 9_999), 1);
        assert_eq!(pick_by_roll([FULL, 0], 0), 0);
    }
}
