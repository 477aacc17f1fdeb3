//! Outbound HTTP from functions: who may be called, and how the connection is made.
//!
//! Two checks, by two people. The function's `allow_outbound` list (set by whoever deploys
//! it) names the origins it may call. The host's network policy (set by the operator)
//! decides which addresses any function may reach: public ones, and loopback, private,
//! link-local and other special ranges only where `--outbound-allow-private` lists them, so
//! no tenant can reach the host's own services, its cloud metadata endpoint
//! (169.254.169.254) or the internal network by allowlisting a name that resolves there.
//!
//! The name is resolved once, every address is checked, and the connection goes to a checked
//! address: a DNS answer that changes between check and connect (DNS rebinding) changes
//! nothing. TLS still verifies the certificate against the name.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Longest wait for DNS, the TCP connection and the TLS handshake, each, whatever the guest
/// asks for (the function's own timeout also bounds the whole call).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for response headers, and between two pieces of the response body, when the
/// guest does not ask for less.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Denied outbound calls logged per second, host-wide; the rest are counted and the count is
/// reported with the next line logged.
const DENIAL_LOGS_PER_SECOND: u32 = 10;

static DENIAL_LOG: LogLimiter = LogLimiter::new(DENIAL_LOGS_PER_SECOND);

/// An address range, `10.0.0.0/8` or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// `ADDRESS/PREFIX` or a bare address (one address).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not an address range like 10.0.0.0/8 or ::1");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(Self { base, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, canonical(ip)) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The operator's rules for where any function may connect.
#[derive(Clone, Debug, Default)]
pub struct NetworkPolicy {
    /// Non-public ranges functions may still reach (an internal API, a test server).
    pub allow_private: Vec<IpRange>,
}

impl NetworkPolicy {
    /// Whether a function may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow_private.iter().any(|range| range.contains(ip))
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Globally routable unicast: not loopback, private, shared (CGNAT), link-local,
/// documentation, benchmarking, multicast, reserved or unspecified, nor an IPv6 form of
/// those (mapped, NAT64, 6to4 and Teredo addresses are judged by the IPv4 address inside).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match segments {
        // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // 6to4 (2002::/16) carries one in bits 16-48.
        [0x2002, hi, lo, ..] => is_public_v4(embedded_v4(hi, lo)),
        // Teredo (2001::/32) reaches hosts behind NAT: never allowed.
        [0x2001, 0, ..] => false,
        // Documentation (2001:db8::/32).
        [0x2001, 0x0db8, ..] => false,
        _ => {
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local
                || (segments[0] & 0xffc0) == 0xfe80 // link-local
                || (segments[0] & 0xffc0) == 0xfec0) // site-local (deprecated)
        }
    }
}

/// The outbound rules one store applies: the function's allowlist and the host's policy.
pub struct OutboundPolicy {
    /// Normalized origins (see `model::normalize_origin`).
    allowed: Vec<String>,
    network: Arc<NetworkPolicy>,
    /// The current request's trace: each outbound call carries it (`traceparent`) and is a
    /// client span of it. Set per request, as a warm instance serves whichever comes.
    pub(super) trace: Option<Arc<crate::telemetry::RequestTrace>>,
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<String>, network: Arc<NetworkPolicy>) -> Self {
        Self {
            allowed,
            network,
            trace: None,
        }
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let origin = format!("{scheme}://{}:{port}", host.to_ascii_lowercase());
        self.allowed.contains(&origin)
    }
}

fn log_denial(uri: &http::Uri, why: &str) {
    // A function looping on a denied call must not flood the host's log.
    if let Some(suppressed) = DENIAL_LOG.admit(crate::model::now_ms().div_euclid(1000) as u64) {
        tracing::warn!(uri = %uri, suppressed, "outbound HTTP request denied: {why}");
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        if !self.allows(request.uri()) {
            log_denial(
                request.uri(),
                "the origin is not in the function's allow_outbound list",
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let network = self.network.clone();
        let client = self.trace.clone().map(|trace| {
            let span = crate::telemetry::new_span_id();
            trace.inject(request.headers_mut(), span);
            let method = request.method().to_string();
            let attributes = vec![
                ("http.request.method", method.clone().into()),
                ("url.full", request.uri().to_string().into()),
                ("server.address", request.uri().host().unwrap_or("").into()),
            ];
            (trace, span, method, crate::telemetry::now_ns(), attributes)
        });
        Box::new(async move {
            let sent = send(request, options, &network).await;
            if let Some((trace, span, method, started, mut attributes)) = client {
                let error = match &sent {
                    Ok((response, _)) => {
                        let status = response.status().as_u16();
                        attributes.push(("http.response.status_code", i64::from(status).into()));
                        (status >= 500).then(|| status.to_string())
                    }
                    Err(e) => Some(e.to_string()),
                };
                trace.child(
                    span,
                    trace.guest_span,
                    method,
                    crate::telemetry::Kind::Client,
                    started,
                    crate::telemetry::now_ns(),
                    attributes,
                    error,
                );
            }
            let (response, connection) = sent?;
            Ok((
                response,
                Box::new(connection) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Resolves the request's host once and returns the addresses the policy permits, in the
/// resolver's order; an error if there are none.
async fn checked_addresses(
    uri: &http::Uri,
    host: &str,
    port: u16,
    network: &NetworkPolicy,
) -> Result<Vec<SocketAddr>, Error> {
    // `[::1]` in a URI is the address ::1.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((bare, port))).await
            {
                Err(_) => return Err(Error::DnsTimeout),
                Ok(Err(_)) => return Err(Error::DestinationNotFound),
                Ok(Ok(addresses)) => addresses.collect(),
            }
        }
    };
    let permitted: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|address| network.permits(address.ip()))
        .collect();
    if permitted.is_empty() {
        let addresses: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
        log_denial(
            uri,
            &format!(
                "{host} resolves to {} (loopback, private or otherwise not public), which the \
                 host does not allow (an operator can with --outbound-allow-private)",
                addresses.join(", ")
            ),
        );
        return Err(Error::DestinationIpProhibited);
    }
    Ok(permitted)
}

async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// The TLS settings every outbound HTTPS connection uses: the public web's roots.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Sends one request over a new HTTP/1.1 connection to a checked address. Returns the
/// response and a future that ends when the connection does (with its error, if any).
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    network: &NetworkPolicy,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send + use<>,
    ),
    Error,
> {
    let uri = request.uri().clone();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let options = options.unwrap_or_default();
    let first_byte = options
        .first_byte_timeout
        .map_or(READ_TIMEOUT, |t| t.min(READ_TIMEOUT));
    let between_bytes = options
        .between_bytes_timeout
        .map_or(READ_TIMEOUT, |t| t.min(READ_TIMEOUT))
        .max(Duration::from_millis(1));

    let addresses = checked_addresses(&uri, host, port, network).await?;
    let stream = connect(&addresses).await?;
    let io: Box<dyn Io> = if tls {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(bare.to_string())
            .map_err(Error::InvalidDnsNameError)?;
        let connector = tokio_rustls::TlsConnector::from(tls_config());
        match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => return Err(Error::Tls(e)),
            Err(_) => return Err(Error::ConnectionTimeout),
        }
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    // The connection's I/O runs in its own task; the returned future reports how it ended.
    let connection = tokio::spawn(connection);

    // Origin-form on the wire: the scheme and authority travel in the Host header.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = match tokio::time::timeout(first_byte, sender.send_request(request)).await {
        Ok(response) => response?,
        Err(_) => {
            connection.abort();
            return Err(Error::ConnectionReadTimeout);
        }
    };
    let response = response.map(|incoming| {
        TimedBody {
            incoming,
            between_bytes,
            timer: Box::pin(tokio::time::sleep(between_bytes)),
        }
        .boxed_unsync()
    });
    let finished = async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    };
    Ok((response, finished))
}

/// A response body that fails if the server pauses longer than `between_bytes`.
struct TimedBody {
    incoming: Incoming,
    between_bytes: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// At most `per_second` log lines per second; lock-free, approximate at second boundaries.
struct LogLimiter {
    per_second: u32,
    second: std::sync::atomic::AtomicU64,
    logged: std::sync::atomic::AtomicU32,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            second: std::sync::atomic::AtomicU64::new(0),
            logged: std::sync::atomic::AtomicU32::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one logged)` if this line may be logged now.
    fn admit(&self, now_secs: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::AcqRel;
        if self.second.swap(now_secs, AcqRel) != now_secs {
            self.logged.store(0, std::sync::atomic::Ordering::Release);
        }
        if self.logged.fetch_add(1, AcqRel) < self.per_second {
            Some(self.suppressed.swap(0, AcqRel))
        } else {
            self.suppressed.fetch_add(1, AcqRel);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_logs_are_rate_limited_and_count_what_they_drop() {
        let limiter = LogLimiter::new(3);
        let first: Vec<Option<u64>> = (0..5).map(|_| limiter.admit(100)).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(
            limiter.admit(101),
            Some(2),
            "the next second reports the two dropped"
        );
        assert_eq!(limiter.admit(101), Some(0));
    }

    #[test]
    fn outbound_policy_matches_normalized_origins() {
        let policy = OutboundPolicy::new(
            vec![
                "https://api.example.com:443".into(),
                "http://127.0.0.1:8123".into(),
            ],
            Arc::default(),
        );
        for ok in [
            "https://api.example.com/v1/x",
            "https://API.example.com:443/",
            "http://127.0.0.1:8123/ping",
        ] {
            assert!(policy.allows(&ok.parse().unwrap()), "{ok}");
        }
        for denied in [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://evil.com/",
            "http://127.0.0.1:8124/",
        ] {
            assert!(!policy.allows(&denied.parse().unwrap()), "{denied}");
        }
    }

    #[test]
    fn only_public_addresses_unless_the_operator_allows_a_range() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001:0:4136:e378::1",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!is_public(ip), "{private} is not public");
            assert!(!NetworkPolicy::default().permits(ip), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} is public");
        }
        let policy = NetworkPolicy {
            allow_private: vec![
                IpRange::parse("10.0.0.0/8").unwrap(),
                IpRange::parse("::1").unwrap(),
            ],
        };
        assert!(policy.permits("10.200.0.1".parse().unwrap()));
        assert!(policy.permits("::ffff:10.0.0.1".parse().unwrap()));
        assert!(policy.permits("::1".parse().unwrap()));
        assert!(!policy.permits("127.0.0.1".parse().unwrap()));
        assert!(
            policy.permits("11.0.0.1".parse().unwrap()),
            "public stays allowed"
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::1/129", ""] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            IpRange::parse("0.0.0.0/0").unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
    }

    /// The name is resolved once and a name that resolves only to loopback is refused
    /// before any connection, even though the function allowlists it.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let uri: http::Uri = "http://localhost:9/".parse().unwrap();
        let error = checked_addresses(&uri, "localhost", 9, &NetworkPolicy::default())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::DestinationIpProhibited), "{error:?}");
        let allowed = NetworkPolicy {
            allow_private: vec![
                IpRange::parse("127.0.0.0/8").unwrap(),
                IpRange::parse("::1").unwrap(),
            ],
        };
        let addresses = checked_addresses(&uri, "localhost", 9, &allowed)
            .await
            .unwrap();
        assert!(
            addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9)
        );
        let literal: http::Uri = "http://[::1]:9/".parse().unwrap();
        assert!(
            checked_addresses(&literal, "[::1]", 9, &NetworkPolicy::default())
                .await
                .is_err()
        );
    }
}
