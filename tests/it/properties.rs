//! Property tests of every parser of user input: whatever arrives, the answer is a value or
//! an error with a reason, never a panic, and what is accepted keeps its rule.

use proptest::prelude::*;

use fnhost::cli::units::{parse_bytes, parse_duration};
use fnhost::engine::check_component;
use fnhost::events::buckets::check_key;
use fnhost::model::{
    AliasSpec, BasisPoints, FunctionName, Qualifier, TriggerSource, VersionLabel, check_alias_name,
    check_bucket,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Accepted names are a lowercase DNS label, or two (`NAME.NS`, a function outside the
    /// default namespace); anything else is an error that says so.
    #[test]
    fn function_names(text in ".{0,80}") {
        match FunctionName::parse(&text) {
            Ok(name) => {
                let labels: Vec<&str> = name.as_str().split('.').collect();
                prop_assert!(labels.len() <= 2, "{:?}", labels);
                for label in labels {
                    prop_assert!((1..=63).contains(&label.len()));
                    prop_assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                    prop_assert!(!label.starts_with('-') && !label.ends_with('-'));
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn qualifiers_and_alias_names(text in ".{0,40}") {
        let _ = Qualifier::parse(&text);
        let _ = VersionLabel::parse(&text);
        if let Err(e) = check_alias_name(&text) {
            prop_assert!(!e.0.is_empty());
        }
    }

    /// Accepted percentages are 0-100 % in basis points and print back to the same value.
    #[test]
    fn percentages(text in "[0-9.%a-z-]{0,8}") {
        if let Ok(bp) = BasisPoints::parse(&text) {
            prop_assert!(bp.get() <= 10_000);
            prop_assert_eq!(BasisPoints::parse(&bp.to_string()), Ok(bp));
        }
    }

    #[test]
    fn durations_and_sizes(text in "[0-9.]{0,12}[a-zA-Z]{0,3}") {
        let _ = parse_duration(&text);
        let _ = parse_bytes(&text);
    }

    /// Accepted object keys cannot escape their bucket and fit the store.
    #[test]
    fn object_keys(text in "[a-z0-9./#\\\\ _-]{0,40}") {
        if check_key(&text).is_ok() {
            prop_assert!(!text.starts_with('/') && !text.ends_with('/'));
            prop_assert!(text.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            prop_assert!(!text.contains('#') && !text.contains('\\'));
        }
    }

    #[test]
    fn bucket_names(text in ".{0,70}") {
        if check_bucket(&text).is_ok() {
            prop_assert!((3..=63).contains(&text.len()));
        }
    }

    /// Any cron text is a schedule or an error, never a panic.
    #[test]
    fn cron_schedules(cron in "[0-9*/,\\- A-Za-z?#LW]{0,40}") {
        let source = TriggerSource::Timer { cron, allow_overlap: false };
        let _ = source.validate();
    }

    /// Any JSON an alias PUT may carry is a spec or an error, and validation never panics.
    #[test]
    fn alias_specs(
        versions in proptest::collection::vec(0u32..5, 0..6),
        weights in proptest::collection::vec(0u32..12_000, 0..6),
        header in "[a-zA-Z0-9 :-]{0,12}",
        value in ".{0,20}",
        mirror in proptest::option::of(0u32..12_000),
    ) {
        let routes: Vec<serde_json::Value> = versions
            .iter()
            .zip(weights.iter())
            .map(|(v, w)| serde_json::json!({"version": v, "weight_bp": w}))
            .collect();
        let body = serde_json::json!({
            "routes": routes,
            "sticky_header": header,
            "rules": [{"header": header, "prefix": value, "version": "latest"}],
            "mirror": mirror.map(|w| serde_json::json!({"version": 1, "weight_bp": w})),
        });
        if let Ok(mut spec) = serde_json::from_value::<AliasSpec>(body)
            && spec.validate().is_ok()
        {
            let total: BasisPoints = spec.routes.iter().map(|r| r.weight_bp).sum();
            prop_assert_eq!(total.get(), 10_000);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// A mutated component (bytes flipped, cut short, spliced) is refused with a reason or
    /// accepted, never a panic.
    #[test]
    fn mutated_components(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut wasm = crate::common::wasm("hello");
        for (at, byte) in flips {
            let i = at.index(wasm.len());
            wasm[i] = byte;
        }
        if let Some(at) = cut {
            wasm.truncate(at.index(wasm.len()));
        }
        if let Err(e) = check_component(&wasm) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
