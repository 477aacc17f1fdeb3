//! Function names and version qualifiers: what a user may type, checked in one place.

use std::fmt;

/// The rule, quoted verbatim in every refusal so users know what to type instead.
pub const NAME_RULE: &str = "function names are lowercase DNS labels: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'";

/// Names the data plane keeps for itself (`/healthz`, `/readyz`).
const RESERVED: &[&str] = &["healthz", "readyz"];

/// A validated function id: a lowercase DNS label, then `.NAMESPACE` (another label) outside
/// the default namespace; safe in URLs, file names and metric labels without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct FunctionName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid function name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: String,
}

impl FunctionName {
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let fail = |reason: &str| InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        let (base, namespace) = match name.split_once('.') {
            Some((base, namespace)) => (base, Some(namespace)),
            None => (name, None),
        };
        if !super::tenancy::is_label(base) {
            return Err(fail(NAME_RULE));
        }
        if let Some(namespace) = namespace {
            if !super::tenancy::is_label(namespace) {
                return Err(fail(
                    "NAME.NAMESPACE: the namespace after the dot is a lowercase DNS label too",
                ));
            }
            if namespace == super::tenancy::DEFAULT_NAMESPACE {
                return Err(fail(
                    "functions of the default namespace are named without a namespace: drop \".default\"",
                ));
            }
        }
        if RESERVED.contains(&base) {
            return Err(fail("this name is reserved by the host; choose another"));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace the function belongs to (`default` when unqualified).
    pub fn namespace(&self) -> &str {
        super::tenancy::namespace_of(&self.0)
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `@` in `NAME@QUALIFIER`: a published version number or `$LATEST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qualifier {
    Latest,
    Version(u32),
}

impl Qualifier {
    /// Parses `latest`, `$LATEST` or a version number >= 1.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("latest") || text.eq_ignore_ascii_case("$latest") {
            return Some(Self::Latest);
        }
        if text.starts_with('0') || text.starts_with('+') {
            return None;
        }
        text.parse().ok().map(Self::Version)
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Version(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in [
            "a",
            "hello",
            "img-resize-2",
            &"x".repeat(63),
            "0day",
            "cart.shop",
        ] {
            assert!(FunctionName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else_with_the_rule() {
        for bad in [
            "",
            "Hello",
            "a_b",
            ".b",
            "-a",
            "a-",
            "a/b",
            "é",
            &"x".repeat(64),
            "a b",
            "..",
        ] {
            let err = FunctionName::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("lowercase DNS labels"),
                "{bad}: {err}"
            );
        }
        assert!(FunctionName::parse("healthz").is_err());
        for bad in ["a.b.c", "a.", "a.default", "a.B", "healthz.ns"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            FunctionName::parse("cart.shop").unwrap().namespace(),
            "shop"
        );
        assert_eq!(FunctionName::parse("cart").unwrap().namespace(), "default");
    }

    #[test]
    fn qualifiers() {
        assert_eq!(Qualifier::parse("latest"), Some(Qualifier::Latest));
        assert_eq!(Qualifier::parse("$LATEST"), Some(Qualifier::Latest));
        assert_eq!(Qualifier::parse("7"), Some(Qualifier::Version(7)));
        assert_eq!(Qualifier::parse("0"), None);
        assert_eq!(Qualifier::parse("07"), None);
        assert_eq!(Qualifier::parse("-1"), None);
        assert_eq!(Qualifier::parse("prod"), None);
    }
}
