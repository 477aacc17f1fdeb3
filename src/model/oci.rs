//! OCI references: where a component lives in a registry, `oci://REGISTRY/REPO:TAG` or
//! `oci://REGISTRY/REPO@sha256:HEX` (or both: the tag as read, the digest it resolved to).
//!
//! The registry is always named (no implicit Docker Hub): a reference in a manifest or a CI
//! script then means the same thing on every machine.

use std::fmt;

/// A parsed `oci://` reference. Without a tag or digest the tag is `latest`, as with
/// `docker pull`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciReference {
    /// `host[:port]`, as written.
    pub registry: String,
    /// `path/of/repo`: lowercase components separated by `/`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:` and 64 lowercase hex digits: the manifest's digest.
    pub digest: Option<String>,
}

/// Why a reference was refused; the message shows the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid OCI reference {text:?}: {why}; expected oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. oci://ghcr.io/acme/cart:1.4"
)]
pub struct InvalidReference {
    pub text: String,
    pub why: String,
}

const SCHEME: &str = "oci://";

impl OciReference {
    /// Whether `text` names a registry artifact rather than a file.
    pub fn is_oci(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    pub fn parse(text: &str) -> Result<Self, InvalidReference> {
        let fail = |why: &str| InvalidReference {
            text: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| fail("it does not start with oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| fail("it names no repository after the registry"))?;
        check_registry(registry).map_err(|why| fail(&why))?;
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => {
                check_digest(digest).map_err(|why| fail(&why))?;
                (path, Some(digest.to_string()))
            }
            None => (path, None),
        };
        // A tag follows the last `:` after the last `/` (a port's `:` is in the registry).
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => {
                check_tag(tag).map_err(|why| fail(&why))?;
                (repository, Some(tag.to_string()))
            }
            _ => (path, None),
        };
        check_repository(repository).map_err(|why| fail(&why))?;
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What the registry's API is asked for: the digest when pinned, else the tag.
    pub fn api_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a parsed reference has a tag or a digest")
    }

    /// The same reference, pinned to `digest` (the tag kept, for people reading it).
    pub fn resolved(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// Whether the registry is this machine: spoken to over plain HTTP without asking.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("the registry is empty".into());
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !registry.ends_with(']') => {
            (host, Some(port))
        }
        _ => (registry, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("the registry's port {port:?} is not a number"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if !bracketed
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("the registry {registry:?} is not a host name"));
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository is empty".into());
    }
    for part in repository.split('/') {
        let valid = !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "the repository component {part:?} must be lowercase letters and digits, \
                 separated by '.', '_' or '-'"
            ));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the tag {tag:?} must be 1 to 128 letters, digits, '_', '.' or '-'"
        ))
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest registries and fnhost agree on.
pub fn check_digest(digest: &str) -> Result<(), String> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("the digest {digest:?} is not sha256:HEX"))?;
    if hex.len() == 64
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(format!(
            "the digest {digest:?} must be sha256: and 64 lowercase hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_tags_digests_ports_and_nested_repositories() {
        let r = OciReference::parse("oci://ghcr.io/acme/shop/cart:1.4").unwrap();
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "acme/shop/cart");
        assert_eq!(r.tag.as_deref(), Some("1.4"));
        assert_eq!(r.api_reference(), "1.4");
        let r = OciReference::parse(&format!("oci://127.0.0.1:5000/cart:v2@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "cart");
        assert_eq!(
            r.api_reference(),
            D,
            "a pinned reference asks for its digest"
        );
        assert!(r.is_loopback());
        let r = OciReference::parse("oci://localhost:5000/team/cart").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "oci://localhost:5000/team/cart:latest");
        let pinned = r.resolved(D);
        assert_eq!(
            pinned.to_string(),
            format!("oci://localhost:5000/team/cart:latest@{D}")
        );
        assert_eq!(OciReference::parse(&pinned.to_string()).unwrap(), pinned);
        assert!(
            !OciReference::parse("oci://registry.example.com/c:1")
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn refuses_what_is_not_a_reference_saying_why() {
        for (text, why) in [
            ("ghcr.io/acme/cart:1", "oci://"),
            ("oci://ghcr.io", "no repository"),
            ("oci://ghcr.io/Acme/cart", "lowercase"),
            ("oci://ghcr.io/acme//cart", "lowercase"),
            ("oci://ghcr.io/acme/cart:", "tag"),
            ("oci://ghcr.io/acme/cart:-x", "tag"),
            ("oci://ghcr.io/cart@sha256:abc", "64 lowercase hex"),
            ("oci://ghcr.io/cart@md5:abc", "sha256:HEX"),
            ("oci://host:99999/cart", "port"),
            ("oci://ho st/cart", "host name"),
        ] {
            let e = OciReference::parse(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.to_string().contains("oci://REGISTRY/REPOSITORY"), "{e}");
        }
    }
}
