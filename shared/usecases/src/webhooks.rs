//! Signed webhooks (the job-end callback): signatures in the style of Standard Webhooks, checks
//! that a user-given target is a public address (SSRF), and one delivery attempt.
//!
//! A target is checked twice: its text when it is accepted (`check_url`, a 400 on `callback_url`)
//! and its addresses right before each delivery (`resolve_target`). `deliver` then connects to
//! exactly those addresses, so a DNS answer that changes in between (rebinding) cannot send the
//! request somewhere private. Redirects are never followed: a 3xx could point anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use url::{Host, Url};
use uuid::Uuid;

use mecapy_domain::error::DomainError;

pub mod send;

type HmacSha256 = Hmac<Sha256>;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a base64-encoded secret, as Standard Webhooks libraries print it.
const SECRET_PREFIX: &str = "whsec_";
/// The only signature scheme: HMAC-SHA256.
const SCHEME_V1: &str = "v1,";
/// Longer URLs are refused: they are stored with the job and sent in logs.
pub const MAX_URL_LEN: usize = 2048;
/// A resolver that does not answer in this time fails the delivery rather than holding it.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// The ceiling of `backoff`.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One message's signature, as its three headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub id: String,
    /// Unix seconds; the receiver refuses a message too far from its own clock (replays).
    pub timestamp: i64,
    /// `v1,<base64>`.
    pub signature: String,
}

impl Signature {
    pub fn new(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Self {
        Signature {
            id: id.to_string(),
            timestamp,
            signature: sign(secret, id, timestamp, body),
        }
    }

    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub fn into_headers(self) -> [(&'static str, String); 3] {
        [
            (ID_HEADER, self.id),
            (TIMESTAMP_HEADER, self.timestamp.to_string()),
            (SIGNATURE_HEADER, self.signature),
        ]
    }
}

/// The MAC over `{id}.{timestamp}.{body}`: the id and timestamp are signed with the body, so
/// neither can be swapped to replay it.
fn mac(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// `v1,<base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, id, timestamp, body).finalize().into_bytes();
    format!("{SCHEME_V1}{}", BASE64.encode(tag))
}

/// Whether any `v1,` entry of a space-separated `webhook-signature` value signs this message
/// (several entries let a secret be rotated). The comparison is constant-time. The timestamp's
/// distance from now is the caller's check.
pub fn verify(secret: &[u8], id: &str, timestamp: i64, body: &[u8], header_value: &str) -> bool {
    let expected = mac(secret, id, timestamp, body);
    header_value
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix(SCHEME_V1))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .any(|tag| expected.clone().verify_slice(&tag).is_ok())
}

/// The three signature headers of one message.
pub fn headers(
    secret: &[u8],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    Signature::new(secret, id, timestamp, body).into_headers()
}

/// The key of a configured secret: `whsec_<base64>` is decoded, as receivers' libraries do;
/// anything else is used as its bytes. An undecodable `whsec_` value is used as its bytes too
/// (and logged): signing never fails, but a receiver will then refuse the signatures.
pub fn secret_from(config_secret: &str) -> Vec<u8> {
    match config_secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => BASE64.decode(encoded).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "webhook secret: whsec_ but not base64, used as is");
            config_secret.as_bytes().to_vec()
        }),
        None => config_secret.as_bytes().to_vec(),
    }
}

/// The label that makes a user's signing secret a key of its own purpose.
const USER_SECRET_LABEL: &[u8] = b"mecapy webhook signing secret v1:";

/// A user's signing secret, derived from the platform's key (`WEBHOOK_SECRET`): each user
/// verifies their own webhooks and cannot sign anyone else's; changing the key rotates them all.
pub fn user_secret(platform_key: &[u8], user_id: Uuid) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(platform_key).expect("HMAC takes a key of any length");
    mac.update(USER_SECRET_LABEL);
    mac.update(user_id.as_hyphenated().to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A secret as receivers' Standard Webhooks libraries take it: `whsec_<base64>`.
pub fn encode_secret(secret: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", BASE64.encode(secret))
}

/// A `callback_url` a user gives with a job or a rule, as it will be stored: checked against the
/// deployment's policy (a 400 on `callback_url` otherwise), and, with `resolve`, its host's
/// addresses too, so a name that points somewhere private is refused now rather than at
/// delivery. Every delivery checks the addresses again.
pub async fn accept_callback(
    secret: Option<&[u8]>,
    policy: &TargetPolicy,
    raw: &str,
    resolve: bool,
) -> Result<String, DomainError> {
    if secret.is_none() {
        return Err(DomainError::invalid(
            "callback_url",
            "webhooks are not enabled on this deployment (WEBHOOK_SECRET is not set)",
        ));
    }
    let refused = |e: WebhookError| DomainError::invalid("callback_url", e.to_string());
    let url = check_url(raw, policy).map_err(refused)?;
    if resolve {
        resolve_target(&url, policy).await.map_err(refused)?;
    }
    Ok(url.to_string())
}

/// Why a target is refused; each message is fit for a 400's `detail` on `callback_url`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("callback_url is not a valid URL ({0})")]
    Invalid(url::ParseError),
    #[error("callback_url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("callback_url must use {expected}")]
    Scheme { expected: &'static str },
    #[error("callback_url must not contain a user name or password")]
    Userinfo,
    #[error("callback_url must have a host")]
    NoHost,
    #[error("callback_url resolves to a private address ({0}), which is not allowed")]
    NotPublic(IpAddr),
    #[error("callback_url's host {host} could not be resolved ({reason})")]
    Unresolvable { host: String, reason: String },
}

/// Where webhooks may go. In production both fields are off; in development `allowed_private`
/// names the few local addresses a test receiver listens on (e.g. the docker bridge 172.17.0.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allowed_private: Vec<IpAddr>,
}

impl TargetPolicy {
    fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip)
            || self.allowed_private.contains(&ip)
            || self.allowed_private.contains(&unmapped(ip))
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), WebhookError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(WebhookError::NotPublic(ip))
        }
    }
}

/// The URL a user gave, if it may be a target: https (or http when allowed), no credentials, a
/// host, at most `MAX_URL_LEN` characters, and a public address when the host is an IP literal.
/// A host name is only checked when it is resolved (`resolve_target`).
pub fn check_url(raw: &str, policy: &TargetPolicy) -> Result<Url, WebhookError> {
    if raw.len() > MAX_URL_LEN {
        return Err(WebhookError::TooLong);
    }
    let url = Url::parse(raw).map_err(|e| match e {
        url::ParseError::EmptyHost => WebhookError::NoHost,
        e => WebhookError::Invalid(e),
    })?;
    check_parsed(&url, policy)?;
    Ok(url)
}

fn check_parsed(url: &Url, policy: &TargetPolicy) -> Result<(), WebhookError> {
    // The serialised form can be longer than the text (percent-encoding, punycode).
    if url.as_str().len() > MAX_URL_LEN {
        return Err(WebhookError::TooLong);
    }
    match (url.scheme(), policy.allow_http) {
        ("https", _) | ("http", true) => {}
        (_, false) => return Err(WebhookError::Scheme { expected: "https" }),
        (_, true) => {
            return Err(WebhookError::Scheme {
                expected: "http or https",
            })
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::Userinfo);
    }
    match url.host() {
        None => Err(WebhookError::NoHost),
        Some(Host::Domain("")) => Err(WebhookError::NoHost),
        Some(Host::Domain(_)) => Ok(()),
        Some(Host::Ipv4(ip)) => policy.check_ip(ip.into()),
        Some(Host::Ipv6(ip)) => policy.check_ip(ip.into()),
    }
}

/// The addresses to deliver to, resolved now and all of them permitted: one private answer
/// among public ones refuses the target, since the connection could use any of them.
pub async fn resolve_target(
    url: &Url,
    policy: &TargetPolicy,
) -> Result<Vec<SocketAddr>, WebhookError> {
    check_parsed(url, policy)?;
    // check_parsed admits only http and https, which have a default port.
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = match url.host() {
        None => return Err(WebhookError::NoHost),
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Domain(name)) => {
            let unresolvable = |reason: String| WebhookError::Unresolvable {
                host: name.to_string(),
                reason,
            };
            let found = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name, port)))
                .await
                .map_err(|_| unresolvable("the lookup timed out".into()))?
                .map_err(|e| unresolvable(e.to_string()))?;
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for addr in found {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            if addrs.is_empty() {
                return Err(unresolvable("no address".into()));
            }
            addrs
        }
    };
    for addr in &addrs {
        policy.check_ip(addr.ip())?;
    }
    Ok(addrs)
}

/// Whether an address is globally reachable, by the special-purpose registries (RFC 6890 and
/// successors), written out because the std methods for it are not stable.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // 0/8, "this network" (0.0.0.0 included)
        || a == 10 // 10/8, private
        || a == 127 // 127/8, loopback
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT
        || (a == 169 && b == 254) // 169.254/16, link-local (cloud metadata)
        || (a == 172 && (b & 0xf0) == 16) // 172.16/12, private
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24, IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2/24, documentation
        || (a == 192 && b == 168) // 192.168/16, private
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15, benchmarking
        || (a == 198 && b == 51 && c == 100) // 198.51.100/24, documentation
        || (a == 203 && b == 0 && c == 113) // 203.0.113/24, documentation
        || a >= 224; // 224/4 multicast, 240/4 reserved, 255.255.255.255 broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if ip == Ipv6Addr::UNSPECIFIED || ip == Ipv6Addr::LOCALHOST {
        return false;
    }
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let special = (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10, deprecated site-local
        || (s[0] & 0xff00) == 0xff00 // ff00::/8, multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8); // 2001:db8::/32, documentation
    !special
}

/// The IPv4 address an IPv6 one stands for: mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// or NAT64 `64:ff9b::a.b.c.d` (a gateway would forward it to that IPv4 address).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

/// An IPv4-mapped address as its IPv4 one, so `allowed_private` need not list both spellings.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.segments() {
            [0, 0, 0, 0, 0, 0xffff, ..] => embedded_v4(v6).map_or(ip, IpAddr::V4),
            _ => ip,
        },
        v4 => v4,
    }
}

/// The outcome of one attempt: the receiver's status when it answered, an error unless 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Delivery {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }

    fn failed(status: Option<u16>, error: String) -> Self {
        Delivery {
            status,
            error: Some(error),
        }
    }
}

/// One signed POST of `body` (JSON) to `url`, connecting only to `addrs` (what `resolve_target`
/// permitted; no second lookup), without proxy, redirects or retries, within `timeout`. The
/// receiver's body is not read.
pub async fn deliver(
    url: &Url,
    addrs: &[SocketAddr],
    secret: &[u8],
    id: &str,
    body: &[u8],
    timeout: Duration,
) -> Delivery {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would do its own lookup of the host, past the checked addresses.
        .no_proxy()
        .timeout(timeout)
        .user_agent(concat!("MecaPy-Webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(Host::Domain(name)) = url.host() {
        if addrs.is_empty() {
            return Delivery::failed(None, format!("no checked address for {name}"));
        }
        builder = builder.resolve_to_addrs(name, addrs);
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => return Delivery::failed(None, format!("the HTTP client: {}", describe(e))),
    };

    let timestamp = chrono::Utc::now().timestamp();
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (name, value) in headers(secret, id, timestamp, body) {
        request = request.header(name, value);
    }

    match request.send().await {
        Ok(reply) => {
            let status = reply.status();
            if status.is_success() {
                Delivery {
                    status: Some(status.as_u16()),
                    error: None,
                }
            } else if status.is_redirection() {
                Delivery::failed(
                    Some(status.as_u16()),
                    format!("HTTP {status} (redirects are not followed)"),
                )
            } else {
                Delivery::failed(Some(status.as_u16()), format!("HTTP {status}"))
            }
        }
        Err(e) if e.is_timeout() => {
            Delivery::failed(None, format!("no answer within {} ms", timeout.as_millis()))
        }
        Err(e) => Delivery::failed(None, describe(e)),
    }
}

/// A reqwest error with its causes (its own text is only "error sending request"), without the
/// URL, which the caller already has.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait before retry `attempt` (from 1): 2, 4, 8 … seconds, at most 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    mecapy_domain::backoff::backoff(Duration::from_secs(2), MAX_BACKOFF, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::{TcpListener, TcpStream};

    const SECRET: &[u8] = b"a test secret";
    const ID: &str = "msg_2xYzJ7";
    const TS: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"job_id":"5d1c","status":"succeeded"}"#;

    fn reference_signature(secret: &[u8], signed: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(signed.as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signature_is_hmac_sha256_of_id_timestamp_body() {
        let expected = reference_signature(
            SECRET,
            r#"msg_2xYzJ7.1700000000.{"job_id":"5d1c","status":"succeeded"}"#,
        );
        assert_eq!(sign(SECRET, ID, TS, BODY), expected);
        assert!(verify(SECRET, ID, TS, BODY, &expected));
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        let secret = secret_from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verify_refuses_a_changed_message() {
        let signature = sign(SECRET, ID, TS, BODY);
        assert!(!verify(
            SECRET,
            ID,
            TS,
            br#"{"job_id":"5d1c","status":"failed"}"#,
            &signature
        ));
        assert!(!verify(SECRET, ID, TS + 1, BODY, &signature));
        assert!(!verify(SECRET, "msg_other", TS, BODY, &signature));
        assert!(!verify(b"another secret", ID, TS, BODY, &signature));
    }

    #[test]
    fn verify_accepts_any_entry_of_a_list() {
        let signature = sign(SECRET, ID, TS, BODY);
        let old = sign(b"the previous secret", ID, TS, BODY);
        assert!(verify(SECRET, ID, TS, BODY, &format!("{old} {signature}")));
        assert!(verify(SECRET, ID, TS, BODY, &format!("{signature} {old}")));
        assert!(!verify(SECRET, ID, TS, BODY, &old));
    }

    #[test]
    fn verify_refuses_malformed_values() {
        let signature = sign(SECRET, ID, TS, BODY);
        let bare = signature.strip_prefix("v1,").unwrap();
        for value in [
            "",
            " ",
            bare,
            &format!("v2,{bare}"),
            "v1,",
            "v1,not base64!",
            &format!("v1,{}", &bare[..bare.len() - 4]),
        ] {
            assert!(!verify(SECRET, ID, TS, BODY, value), "{value:?}");
        }
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let [id, ts, sig] = headers(SECRET, ID, TS, BODY);
        assert_eq!(id, ("webhook-id", ID.to_string()));
        assert_eq!(ts, ("webhook-timestamp", "1700000000".to_string()));
        assert_eq!(sig, ("webhook-signature", sign(SECRET, ID, TS, BODY)));
    }

    #[test]
    fn whsec_secrets_are_base64_decoded() {
        assert_eq!(secret_from("whsec_aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(secret_from("hello world"), b"hello world");
        assert_eq!(secret_from("whsec_not base64!"), b"whsec_not base64!");
    }

    #[test]
    fn is_public_knows_the_special_ranges() {
        let refused = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.169.254",
            "169.254.255.255",
            "172.16.0.0",
            "172.17.0.1",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.255",
            "192.168.0.0",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "224.0.0.0",
            "239.255.255.255",
            "240.0.0.0",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::1",
            "ff00::",
            "ff02::1",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ];
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2001:db9::",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must be refused");
        }
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} must be public");
        }
    }

    fn strict() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn check_url_refuses_what_is_not_a_public_https_target() {
        let refusals = [
            (
                "http://example.com/hook",
                WebhookError::Scheme { expected: "https" },
            ),
            (
                "ftp://example.com/hook",
                WebhookError::Scheme { expected: "https" },
            ),
            (
                "file:///etc/passwd",
                WebhookError::Scheme { expected: "https" },
            ),
            ("https://user:pw@example.com/hook", WebhookError::Userinfo),
            ("https://user@example.com/hook", WebhookError::Userinfo),
            ("https://", WebhookError::NoHost),
            ("https://:443/hook", WebhookError::NoHost),
            (
                "not a url",
                WebhookError::Invalid(url::ParseError::RelativeUrlWithoutBase),
            ),
            (
                "https://127.0.0.1/hook",
                WebhookError::NotPublic("127.0.0.1".parse().unwrap()),
            ),
            (
                "https://[::1]/hook",
                WebhookError::NotPublic("::1".parse().unwrap()),
            ),
            (
                "https://169.254.169.254/latest/meta-data/",
                WebhookError::NotPublic("169.254.169.254".parse().unwrap()),
            ),
            (
                "https://10.1.2.3/hook",
                WebhookError::NotPublic("10.1.2.3".parse().unwrap()),
            ),
            // Other spellings of 127.0.0.1, normalised by the URL parser.
            (
                "https://2130706433/hook",
                WebhookError::NotPublic("127.0.0.1".parse().unwrap()),
            ),
            (
                "https://0x7f.1/hook",
                WebhookError::NotPublic("127.0.0.1".parse().unwrap()),
            ),
            (
                "https://[::ffff:7f00:1]/hook",
                WebhookError::NotPublic("::ffff:127.0.0.1".parse().unwrap()),
            ),
        ];
        for (raw, refusal) in refusals {
            assert_eq!(check_url(raw, &strict()), Err(refusal), "{raw}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long, &strict()), Err(WebhookError::TooLong));
    }

    #[test]
    fn check_url_accepts_a_public_https_target() {
        let url = check_url("https://example.com/hook", &strict()).unwrap();
        assert_eq!(url.as_str(), "https://example.com/hook");
        assert!(check_url("https://8.8.8.8:8443/hook?x=1", &strict()).is_ok());
        assert!(check_url("https://[2606:4700::1111]/hook", &strict()).is_ok());
    }

    #[test]
    fn http_needs_allow_http() {
        let dev = TargetPolicy {
            allow_http: true,
            ..TargetPolicy::default()
        };
        assert!(check_url("http://example.com/hook", &dev).is_ok());
        assert_eq!(
            check_url("ftp://example.com/hook", &dev),
            Err(WebhookError::Scheme {
                expected: "http or https"
            })
        );
    }

    #[test]
    fn allowed_private_lets_a_listed_address_through() {
        let dev = TargetPolicy {
            allow_http: true,
            allowed_private: vec!["172.17.0.1".parse().unwrap()],
        };
        assert!(check_url("http://172.17.0.1:8080/hook", &dev).is_ok());
        assert!(check_url("http://[::ffff:172.17.0.1]:8080/hook", &dev).is_ok());
        assert_eq!(
            check_url("http://172.17.0.2:8080/hook", &dev),
            Err(WebhookError::NotPublic("172.17.0.2".parse().unwrap()))
        );
        assert!(check_url("http://172.17.0.1:8080/hook", &strict()).is_err());
    }

    #[test]
    fn refusals_read_as_a_detail() {
        assert_eq!(
            check_url("http://example.com", &strict())
                .unwrap_err()
                .to_string(),
            "callback_url must use https"
        );
        assert_eq!(
            check_url("https://10.0.0.1", &strict())
                .unwrap_err()
                .to_string(),
            "callback_url resolves to a private address (10.0.0.1), which is not allowed"
        );
    }

    #[tokio::test]
    async fn resolve_target_refuses_localhost() {
        let url = check_url("https://localhost/hook", &strict()).unwrap();
        match resolve_target(&url, &strict()).await {
            Err(WebhookError::NotPublic(ip)) => assert!(ip.is_loopback(), "{ip}"),
            other => panic!("localhost must be refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn resolve_target_takes_an_ip_literal_as_is() {
        let url = Url::parse("https://8.8.8.8/hook").unwrap();
        assert_eq!(
            resolve_target(&url, &strict()).await,
            Ok(vec!["8.8.8.8:443".parse().unwrap()])
        );
        // A URL built elsewhere is checked again.
        let url = Url::parse("https://127.0.0.1/hook").unwrap();
        assert!(resolve_target(&url, &strict()).await.is_err());
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs = |attempt| backoff(attempt).as_secs();
        assert_eq!(
            [1, 2, 3, 8, 9, 10, 64, u32::MAX].map(secs),
            [2, 4, 8, 256, 300, 300, 300, 300]
        );
    }

    /// What the test receiver saw of one request.
    #[derive(Debug)]
    struct Received {
        head: String,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim())
            })
        }
    }

    /// One HTTP/1.1 request read off `stream` (only `tokio/net`: no io-util in the lib).
    async fn read_request(stream: &TcpStream) -> Received {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(data[..end].to_vec()).unwrap();
                let mut received = Received {
                    head,
                    body: Vec::new(),
                };
                let length: usize = received
                    .header("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                if data.len() >= end + 4 + length {
                    received.body = data[end + 4..end + 4 + length].to_vec();
                    return received;
                }
            }
            stream.readable().await.unwrap();
            match stream.try_read(&mut buf) {
                Ok(0) => panic!("the client closed before a whole request"),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn write_all(stream: &TcpStream, mut data: &[u8]) {
        while !data.is_empty() {
            stream.writable().await.unwrap();
            match stream.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A receiver on 127.0.0.1 answering each request with the next of `replies`, one request per
    /// connection, recording what it received.
    async fn receiver(replies: Vec<String>) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for reply in replies {
                let (stream, _) = listener.accept().await.unwrap();
                let received = read_request(&stream).await;
                log.lock().unwrap().push(received);
                write_all(&stream, reply.as_bytes()).await;
            }
        });
        (addr, seen)
    }

    fn reply(status: &str, extra: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{extra}content-length: 2\r\nconnection: close\r\n\r\nok")
    }

    #[tokio::test]
    async fn deliver_signs_posts_and_follows_no_redirect() {
        let (addr, seen) = receiver(vec![
            reply("302 Found", "location: /elsewhere\r\n"),
            reply("500 Internal Server Error", ""),
            reply("200 OK", ""),
        ])
        .await;
        // A name that resolves nowhere: reaching the receiver proves the checked addresses are
        // used, not a second lookup.
        let url = Url::parse(&format!("http://webhook.invalid:{}/hook", addr.port())).unwrap();
        let timeout = Duration::from_secs(10);

        let redirected = deliver(&url, &[addr], SECRET, "msg_1", BODY, timeout).await;
        assert_eq!(redirected.status, Some(302));
        assert!(!redirected.succeeded());
        assert!(redirected
            .error
            .unwrap()
            .contains("redirects are not followed"));
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "the redirect must not be followed"
        );

        let refused = deliver(&url, &[addr], SECRET, "msg_2", BODY, timeout).await;
        assert_eq!(refused.status, Some(500));
        assert!(!refused.succeeded());

        let accepted = deliver(&url, &[addr], SECRET, "msg_3", BODY, timeout).await;
        assert_eq!(
            accepted,
            Delivery {
                status: Some(200),
                error: None
            }
        );

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        for (received, id) in seen.iter().zip(["msg_1", "msg_2", "msg_3"]) {
            assert!(
                received.head.starts_with("POST /hook HTTP/1.1"),
                "{}",
                received.head
            );
            assert_eq!(received.header("content-type"), Some("application/json"));
            assert_eq!(received.body, BODY);
            assert_eq!(received.header("webhook-id"), Some(id));
            let timestamp: i64 = received
                .header("webhook-timestamp")
                .unwrap()
                .parse()
                .unwrap();
            assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
            let signature = received.header("webhook-signature").unwrap();
            assert!(verify(SECRET, id, timestamp, &received.body, signature));
        }
    }

    #[tokio::test]
    async fn deliver_reports_an_unreachable_receiver() {
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let url = Url::parse(&format!("http://webhook.invalid:{}/hook", closed.port())).unwrap();
        let timeout = Duration::from_secs(5);
        let failed = deliver(&url, &[closed], SECRET, ID, BODY, timeout).await;
        assert_eq!(failed.status, None);
        assert!(failed.error.is_some());
        // No checked address: nothing is sent.
        let none = deliver(&url, &[], SECRET, ID, BODY, timeout).await;
        assert_eq!(none.status, None);
        assert!(none.error.unwrap().contains("no checked address"));
    }
}
