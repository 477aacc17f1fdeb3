//! The web console, served by the admin plane at `/console/`: three static files compiled
//! into the binary (no CDN, no build step, works offline). They hold no data and need no
//! credential; the page asks for an API key or the admin token, keeps it in the tab's
//! `sessionStorage` (never in a URL or a cookie) and sends it as `Authorization: Bearer`
//! on each API call, so every read and write goes through the same admin API as the CLI,
//! with the same checks and audit log. With no cookie there is nothing for another site to
//! ride on (no CSRF); a strict Content-Security-Policy allows only these files' own
//! script and style and calls to this origin.

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::body::{Body, full};

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/style.css");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's answer for `path`, if it is one of its paths.
pub fn serve(method: &Method, path: &str) -> Option<Response<Body>> {
    let (body, content_type) = match path {
        "/console" | "/console/" | "/console/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/console/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/console/style.css" => (STYLE, "text/css; charset=utf-8"),
        _ if path.starts_with("/console/") => {
            let mut response = Response::new(full("not found\n"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Some(response);
        }
        _ => return None,
    };
    if path == "/console" {
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/console/"));
        return Some(response);
    }
    let mut response = match *method {
        Method::GET => Response::new(full(body)),
        Method::HEAD => Response::new(full("")),
        _ => {
            let mut response = Response::new(full("use GET\n"));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(response);
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A new fnhost binary brings new files: revalidate rather than keep stale ones.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_its_files_with_a_strict_policy_and_nothing_else() {
        let page = serve(&Method::GET, "/console/").unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let policy = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe"));
        assert_eq!(
            serve(&Method::GET, "/console/app.js").unwrap().headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            serve(&Method::GET, "/console/../admin.token")
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve(&Method::POST, "/console/").unwrap().status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert!(serve(&Method::GET, "/v1/functions").is_none());
        // No inline script or style, which the policy would block.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
    }
}
