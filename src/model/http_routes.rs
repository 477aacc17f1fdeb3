//! HTTP routes: which function serves a request by its host and path, so a shop can put `cart`
//! at `https://shop.example.com/api/cart/` instead of `/cart/`.
//!
//! A route matches a host (exactly, every name under a domain with `*.example.com`, or any
//! host) and a path prefix by whole segments (`/api/cart` matches `/api/cart` and
//! `/api/cart/x`, never `/api/cartoon`). The routes of the request's host are tried first,
//! then wildcards from the most specific, then the routes for any host, and among each the
//! longest prefix wins, so the order routes were written in never matters.

use std::collections::HashMap;
use std::fmt;

use super::names::{FunctionName, Qualifier};
use super::tenancy::{is_label, namespace_of};

/// Longest host name (as in DNS).
const MAX_HOST: usize = 253;
/// Longest path prefix a route may name.
const MAX_PREFIX: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid route: {0}")]
pub struct InvalidRoute(pub String);

/// Where a route applies: a host (empty for any) and a path prefix (`/`, or segments without a
/// trailing slash). Written `HOST/PATH/*` or `/PATH/*` (the `/*` is optional).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteMatch {
    pub host: String,
    pub prefix: String,
}

impl RouteMatch {
    /// Reads `shop.example.com/api/cart/*`, `/api/*`, `shop.example.com` (all paths).
    pub fn parse(text: &str) -> Result<Self, InvalidRoute> {
        let bad = |why: &str| Err(InvalidRoute(format!("{text:?}: {why}")));
        let (host, path) = match text.find('/') {
            Some(0) => ("", text),
            Some(i) => (&text[..i], &text[i..]),
            None => (text, "/"),
        };
        let host = host.to_ascii_lowercase();
        // `*.example.com`: any name under example.com (at any depth) without a route of its own.
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if !host.is_empty()
            && (host.len() > MAX_HOST
                || (name != host && !name.contains('.'))
                || !name.split('.').all(is_label))
        {
            return bad(
                "the host must be a DNS name such as shop.example.com, or *.example.com for every name under it (no port, no scheme)",
            );
        }
        let path = path
            .strip_suffix("/*")
            .or_else(|| path.strip_suffix('*'))
            .unwrap_or(path);
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { "/" } else { prefix };
        if prefix.len() > MAX_PREFIX {
            return bad(&format!("the path is longer than {MAX_PREFIX} bytes"));
        }
        let segments_ok = prefix == "/"
            || prefix[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;=:@".contains(&b))
            });
        if !segments_ok {
            return bad(
                "the path must be segments of URL path characters (no empty segment, '.', '..', '*' inside, '?' or '#')",
            );
        }
        Ok(Self {
            host,
            prefix: prefix.to_string(),
        })
    }

    /// Where the rest of `path` begins when this prefix matches it by whole segments.
    pub fn rest_start(&self, path: &str) -> Option<usize> {
        if self.prefix == "/" {
            return Some(0);
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(self.prefix.len())
    }
}

impl fmt::Display for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slash = if self.prefix == "/" { "" } else { "/" };
        write!(f, "{}{}{slash}*", self.host, self.prefix)
    }
}

/// One route: requests it matches go to `function` (an id) at `qualifier` (`$DEFAULT` when
/// absent), which sees the path without the prefix when `strip_prefix` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    pub matches: RouteMatch,
    pub function: String,
    pub qualifier: Option<String>,
    pub strip_prefix: bool,
}

impl HttpRoute {
    /// Reads a route of `namespace` from its text parts: `target` is `NAME[@QUALIFIER]`, the
    /// name relative to the namespace.
    pub fn parse(
        namespace: &str,
        matches: &str,
        target: &str,
        strip_prefix: bool,
    ) -> Result<Self, InvalidRoute> {
        let matches = RouteMatch::parse(matches)?;
        let (name, qualifier) = match target.split_once('@') {
            Some((name, qualifier)) => (name, Some(qualifier)),
            None => (target, None),
        };
        let function = super::tenancy::qualify(name, namespace);
        FunctionName::parse(&function)
            .map_err(|e| InvalidRoute(format!("target {target:?}: {e}")))?;
        if namespace_of(&function) != namespace {
            return Err(InvalidRoute(format!(
                "target {target:?} is not a function of namespace {namespace:?}"
            )));
        }
        if let Some(qualifier) = qualifier
            && Qualifier::parse(qualifier).is_none()
        {
            super::aliases::check_alias_name(qualifier)
                .map_err(|e| InvalidRoute(format!("target {target:?}: {e}")))?;
        }
        Ok(Self {
            matches,
            function,
            qualifier: qualifier.map(str::to_string),
            strip_prefix,
        })
    }

    pub fn namespace(&self) -> &str {
        namespace_of(&self.function)
    }

    /// `NAME[@QUALIFIER]` with the name relative to the route's namespace.
    pub fn target(&self) -> String {
        let name = self
            .function
            .split_once('.')
            .map_or(self.function.as_str(), |(name, _)| name);
        match &self.qualifier {
            Some(q) => format!("{name}@{q}"),
            None => name.to_string(),
        }
    }
}

/// Checks a namespace's whole route set: no two routes with the same match.
pub fn check_routes(routes: &[HttpRoute]) -> Result<(), InvalidRoute> {
    let mut seen = std::collections::HashSet::new();
    for route in routes {
        if !seen.insert(&route.matches) {
            return Err(InvalidRoute(format!(
                "{} is routed twice; give each host and path one target",
                route.matches
            )));
        }
    }
    Ok(())
}

/// A change to one namespace's routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutesChange {
    /// All of them at once (a manifest's): the namespace's routes become these.
    Replace(Vec<HttpRoute>),
    /// One route, added or replacing the one with the same match.
    Put(HttpRoute),
    /// The route with this match.
    Delete(RouteMatch),
}

impl RoutesChange {
    /// The namespace's routes after the change; `Err` with the match a delete names when the
    /// namespace has no such route.
    pub fn apply(&self, mut current: Vec<HttpRoute>) -> Result<Vec<HttpRoute>, &RouteMatch> {
        match self {
            Self::Replace(routes) => Ok(routes.clone()),
            Self::Put(route) => {
                current.retain(|r| r.matches != route.matches);
                current.push(route.clone());
                Ok(current)
            }
            Self::Delete(matches) => {
                let before = current.len();
                current.retain(|r| &r.matches != matches);
                if current.len() < before {
                    Ok(current)
                } else {
                    Err(matches)
                }
            }
        }
    }
}

/// Every route, arranged for lookup: by host, each list longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_host: HashMap<String, Vec<HttpRoute>>,
    /// `*.example.com` routes by the suffix they match (`.example.com`).
    by_suffix: HashMap<String, Vec<HttpRoute>>,
    any_host: Vec<HttpRoute>,
}

impl RouteTable {
    pub fn new(routes: impl IntoIterator<Item = HttpRoute>) -> Self {
        let mut table = Self::default();
        for route in routes {
            if route.matches.host.is_empty() {
                table.any_host.push(route);
            } else if let Some(suffix) = route.matches.host.strip_prefix('*') {
                table
                    .by_suffix
                    .entry(suffix.to_string())
                    .or_default()
                    .push(route);
            } else {
                table
                    .by_host
                    .entry(route.matches.host.clone())
                    .or_default()
                    .push(route);
            }
        }
        let longest_first =
            |a: &HttpRoute, b: &HttpRoute| b.matches.prefix.len().cmp(&a.matches.prefix.len());
        for list in table
            .by_host
            .values_mut()
            .chain(table.by_suffix.values_mut())
        {
            list.sort_by(longest_first);
        }
        table.any_host.sort_by(longest_first);
        table
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.by_suffix.is_empty() && self.any_host.is_empty()
    }

    /// The route for a request to `host` (any case, port ignored) and `path`, with where
    /// the rest of the path begins.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<(&HttpRoute, usize)> {
        let host = host.map(|h| {
            let name = match h.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => h,
            };
            name.trim_end_matches('.').to_ascii_lowercase()
        });
        let first = |routes: &'_ [HttpRoute]| -> Option<(usize, usize)> {
            routes
                .iter()
                .enumerate()
                .find_map(|(i, route)| route.matches.rest_start(path).map(|start| (i, start)))
        };
        if let Some(host) = host.as_deref() {
            if let Some(routes) = self.by_host.get(host)
                && let Some((i, start)) = first(routes)
            {
                return Some((&routes[i], start));
            }
            // Then wildcards from the most specific: a.b.example.com tries *.b.example.com,
            // then *.example.com.
            if !self.by_suffix.is_empty() {
                for (dot, _) in host.match_indices('.') {
                    if let Some(routes) = self.by_suffix.get(&host[dot..])
                        && let Some((i, start)) = first(routes)
                    {
                        return Some((&routes[i], start));
                    }
                }
            }
        }
        first(&self.any_host).map(|(i, start)| (&self.any_host[i], start))
    }

    /// Every route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &HttpRoute> {
        self.by_host
            .values()
            .chain(self.by_suffix.values())
            .flatten()
            .chain(&self.any_host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(matches: &str, target: &str) -> HttpRoute {
        HttpRoute::parse("default", matches, target, false).unwrap()
    }

    #[test]
    fn matches_parse_into_host_and_prefix() {
        let m = RouteMatch::parse("Shop.Example.com/api/cart/*").unwrap();
        assert_eq!(
            (m.host.as_str(), m.prefix.as_str()),
            ("shop.example.com", "/api/cart")
        );
        assert_eq!(m.to_string(), "shop.example.com/api/cart/*");
        for same in ["/api/cart", "/api/cart/", "/api/cart*", "/api/cart/*"] {
            assert_eq!(RouteMatch::parse(same).unwrap().prefix, "/api/cart");
        }
        let all = RouteMatch::parse("shop.example.com").unwrap();
        assert_eq!(all.prefix, "/");
        assert_eq!(all.to_string(), "shop.example.com/*");
        assert_eq!(RouteMatch::parse("/*").unwrap().to_string(), "/*");
        assert_eq!(
            RouteMatch::parse("*.Example.com/x").unwrap().host,
            "*.example.com"
        );
        for bad in [
            "shop.example.com:8080/x",
            "https://shop/x",
            "*.com/x",
            "a.*.example.com/x",
            "*example.com/x",
            "/a//b",
            "/a/../b",
            "/a/*/b",
            "/a?b",
            "-bad-.com/",
        ] {
            assert!(RouteMatch::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let m = RouteMatch::parse("/api/cart").unwrap();
        assert_eq!(m.rest_start("/api/cart"), Some(9));
        assert_eq!(m.rest_start("/api/cart/items"), Some(9));
        assert_eq!(m.rest_start("/api/cartoon"), None);
        assert_eq!(m.rest_start("/api"), None);
        assert_eq!(RouteMatch::parse("/").unwrap().rest_start("/x"), Some(0));
    }

    #[test]
    fn targets_are_functions_of_the_namespace() {
        let r = HttpRoute::parse("shop", "/api/*", "cart@prod", true).unwrap();
        assert_eq!(r.function, "cart.shop");
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
        assert_eq!(r.target(), "cart@prod");
        assert!(HttpRoute::parse("shop", "/", "cart.other", false).is_err());
        assert!(HttpRoute::parse("shop", "/", "Cart", false).is_err());
        assert!(HttpRoute::parse("shop", "/", "cart@bad alias", false).is_err());
        assert!(HttpRoute::parse("default", "/", "cart@7", false).is_ok());
    }

    #[test]
    fn host_routes_first_then_longest_prefix() {
        let table = RouteTable::new([
            route("/", "site"),
            route("/api/*", "api"),
            route("shop.example.com/", "shop"),
            route("shop.example.com/api/cart/*", "cart"),
            route("shop.example.com/api/*", "shopapi"),
        ]);
        let find = |host: Option<&str>, path: &str| {
            table
                .find(host, path)
                .map(|(r, start)| (r.function.clone(), start))
        };
        assert_eq!(
            find(Some("shop.example.com"), "/api/cart/1"),
            Some(("cart".into(), 9))
        );
        assert_eq!(
            find(Some("SHOP.example.com:8080"), "/api/x"),
            Some(("shopapi".into(), 4))
        );
        assert_eq!(
            find(Some("shop.example.com"), "/about"),
            Some(("shop".into(), 0))
        );
        assert_eq!(
            find(Some("other.example"), "/api/cart/1"),
            Some(("api".into(), 4))
        );
        assert_eq!(find(None, "/x"), Some(("site".into(), 0)));
        let wild = RouteTable::new([
            route("*.example.com/", "tenant"),
            route("*.eu.example.com/", "eu"),
            route("www.example.com/", "www"),
            route("/", "site"),
        ]);
        let find = |host: &str| wild.find(Some(host), "/x").map(|(r, _)| r.function.clone());
        assert_eq!(
            find("www.example.com"),
            Some("www".into()),
            "the name first"
        );
        assert_eq!(find("a.example.com"), Some("tenant".into()));
        assert_eq!(find("a.b.example.com"), Some("tenant".into()), "any depth");
        assert_eq!(
            find("shop.eu.example.com"),
            Some("eu".into()),
            "most specific wildcard"
        );
        assert_eq!(
            find("example.com"),
            Some("site".into()),
            "a wildcard needs a name under it"
        );
        let hostless = RouteTable::new([route("/api/*", "api")]);
        assert!(hostless.find(Some("a.b"), "/other").is_none());
        assert!(RouteTable::default().is_empty());
    }

    #[test]
    fn a_match_is_routed_once() {
        let twice = [route("/a/*", "x"), route("/a", "y")];
        assert!(check_routes(&twice).unwrap_err().0.contains("twice"));
        assert!(check_routes(&[route("/a", "x"), route("h.example/a", "y")]).is_ok());
    }
}
