//! The SSRF guard: which URLs a webhook outbox may POST to, and which
//! addresses it may connect to.
//!
//! A webhook URL comes from a caller (`ReplyTo`, `_meta.webhookUrl`). Left
//! unchecked, a server would POST wherever a caller says: to its cloud's
//! metadata service (`169.254.169.254`, which hands out credentials), to an
//! admin port on `127.0.0.1`, to hosts inside its private network. What an
//! attacker can try, and what stops it:
//!
//! * **A URL outside the allow-list**, or `http://` where only `https://`
//!   is allowed: refused by [`WebhookPolicy::check_url`] before any lookup.
//!   Prefixes are matched against the parsed, normalised URL, and user info
//!   (`https://allowed.example@evil/`), `..` and backslashes are refused, so
//!   a prefix cannot be escaped by spelling.
//! * **A literal internal address** (`https://127.0.0.1/`, `https://[::1]/`,
//!   `https://[::ffff:169.254.169.254]/`, NAT64 and 6to4 forms): refused by
//!   [`check_url`](WebhookPolicy::check_url), as the HTTP client connects
//!   to a literal without asking any resolver.
//! * **A name that resolves to an internal address**, including one whose
//!   answer changes between a check and the connection (DNS rebinding): the
//!   check runs in the resolver the client connects through
//!   ([`GuardedResolver`]), on the very addresses it connects to; forbidden
//!   ones are dropped, and a name left with none fails.
//! * **A redirect** from an allowed URL to an internal one: redirects are
//!   never followed (the outbox treats a 3xx as a failure).
//! * **A proxy** from the environment (`HTTPS_PROXY`) would connect on the
//!   client's behalf, past the resolver: the outbox's client uses none.
//!
//! Forbidden unless allowed: loopback ([`WebhookPolicy::allow_loopback`]),
//! private ranges (RFC 1918, IPv6 unique-local, CGNAT `100.64.0.0/10`:
//! [`WebhookPolicy::allow_private`]). Always forbidden: link-local (the
//! metadata address among them), unspecified, broadcast, multicast,
//! documentation and other reserved ranges, which no real receiver uses.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be connected to (see [`classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, IPv6 unique-local `fc00::/7` and site-local `fec0::/10`.
    Private,
    /// Carrier-grade NAT, `100.64.0.0/10` (treated as private).
    SharedNat,
    /// `169.254.0.0/16` (cloud metadata at `169.254.169.254`), `fe80::/10`.
    LinkLocal,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`.
    Documentation,
    /// Other special-purpose ranges (`192.0.0.0/24`, `198.18.0.0/15`,
    /// `240.0.0.0/4`, IPv4-compatible and discard-only IPv6, ...).
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedNat => "shared (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Multicast => "multicast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// The special-purpose range `ip` is in, or `None` for a public address.
/// IPv4 addresses embedded in IPv6 (mapped `::ffff:0:0/96`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) are classified as the IPv4 address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, ..) => AddressClass::Loopback,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedNat,
        (169, 254, _) => AddressClass::LinkLocal,
        (0, ..) => AddressClass::Unspecified,
        (255, 255, 255) if ip.is_broadcast() => AddressClass::Broadcast,
        (224..=239, ..) => AddressClass::Multicast,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (192, 0, 0) | (198, 18..=19, _) | (240..=255, ..) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = || {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    Some(match s {
        // NAT64 (`64:ff9b::/96`): the gateway connects to the IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return classify_v4(embedded()),
        // 6to4 (`2002::/16`): the IPv4 address is in segments 1 and 2.
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            return classify_v4(Ipv4Addr::new(a, b, c, d));
        }
        // IPv4-compatible (`::a.b.c.d`, deprecated).
        [0, 0, 0, 0, 0, 0, _, _] => AddressClass::Reserved,
        // Discard-only `100::/64`.
        [0x100, 0, 0, 0, ..] => AddressClass::Reserved,
        [0x2001, 0xdb8, ..] => AddressClass::Documentation,
        [x, ..] if x & 0xfe00 == 0xfc00 => AddressClass::Private,
        [x, ..] if x & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => AddressClass::Private,
        [x, ..] if x & 0xff00 == 0xff00 => AddressClass::Multicast,
        _ => return None,
    })
}

/// Why a webhook URL or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// Not a URL, or one with user info, `..`, backslashes or spaces.
    #[error("webhook URL {0:?} is malformed")]
    Malformed(String),
    /// The scheme is not `https` (nor `http` where it is allowed).
    #[error("webhook URL {0:?} must use https")]
    Scheme(String),
    /// The URL is outside the allow-list of prefixes.
    #[error("webhook URL {0:?} is not allowed by the webhook policy's prefixes")]
    NotAllowed(String),
    /// The URL names, or its host resolves only to, forbidden addresses.
    #[error("webhook host {host:?} has no address the policy allows ({reasons})")]
    Forbidden {
        /// The host as the URL names it.
        host: String,
        /// Each refused address and its class, e.g. `127.0.0.1 (loopback)`.
        reasons: String,
    },
    /// The host could not be resolved.
    #[error("webhook host {host:?} could not be resolved: {message}")]
    Lookup {
        /// The host.
        host: String,
        /// The resolver's error.
        message: String,
    },
}

/// Which webhook URLs may be POSTed to, and which addresses connected to.
///
/// Empty by default: no URL is allowed until a prefix is. Prefixes should
/// name a host and end its path with `/` (`https://hooks.example.com/`), or
/// `https://hooks.example.com` would also allow
/// `https://hooks.example.com.evil.example/`. `https://` alone allows every
/// public HTTPS endpoint (the address check still applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    prefixes: Vec<String>,
    allow_http: bool,
    allow_loopback: bool,
    allow_private: bool,
}

impl WebhookPolicy {
    /// Allows URLs starting with any of `prefixes`.
    pub fn prefixes<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds a prefix to the allow-list.
    pub fn allow(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Allows plain `http://` URLs (off by default: a reply sent in clear
    /// can be read and changed on its way).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Allows loopback addresses (`127.0.0.0/8`, `::1`): for a receiver on
    /// the same host, and tests.
    pub fn allow_loopback(mut self, allow: bool) -> Self {
        self.allow_loopback = allow;
        self
    }

    /// Allows private addresses (RFC 1918, `fc00::/7`, `100.64.0.0/10`): for
    /// receivers inside the server's own network.
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// The allowed prefixes.
    pub fn allowed(&self) -> &[String] {
        &self.prefixes
    }

    /// Whether `ip` may be connected to; `Err` names its class.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressClass> {
        match classify(ip) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(AddressClass::Private | AddressClass::SharedNat) if self.allow_private => Ok(()),
            Some(class) => Err(class),
        }
    }

    /// Whether `address` is a URL of an allowed scheme and prefix (no
    /// address check: see [`check_url`](Self::check_url)).
    pub fn allows(&self, address: &str) -> bool {
        self.parse(address).is_ok()
    }

    /// Checks `address` as far as can be done without a lookup: its form,
    /// scheme and prefix, and, when its host is a literal IP address, that
    /// address. A named host is checked when it is resolved
    /// ([`GuardedResolver`]).
    pub fn check_url(&self, address: &str) -> Result<Url, GuardError> {
        let url = self.parse(address)?;
        // The parser has normalised a literal (`127.1`, `2130706433` read as
        // `127.0.0.1`); IPv6 literals keep their brackets.
        let literal = url
            .host_str()
            .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|host| host.parse::<IpAddr>().ok());
        if let Some(ip) = literal {
            self.check_ip(ip).map_err(|class| GuardError::Forbidden {
                host: ip.to_string(),
                reasons: format!("{ip} ({class})"),
            })?;
        }
        Ok(url)
    }

    fn parse(&self, address: &str) -> Result<Url, GuardError> {
        let shown = || address.chars().take(200).collect::<String>();
        let odd = address.len() > 2048
            || !address.bytes().all(|b| (0x21..=0x7e).contains(&b))
            || address.contains("..")
            || address.contains(['@', '\\']);
        if odd {
            return Err(GuardError::Malformed(shown()));
        }
        let url = Url::parse(address).map_err(|_| GuardError::Malformed(shown()))?;
        if url.host_str().is_none_or(str::is_empty)
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(GuardError::Malformed(shown()));
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(GuardError::Scheme(shown())),
        }
        // Matched on the normalised URL: `HTTPS://Hooks.Example.COM/` and
        // `https://hooks.example.com:443/` read as the prefix says.
        let normal = url.as_str();
        if self
            .prefixes
            .iter()
            .any(|prefix| normal.starts_with(prefix.as_str()))
        {
            Ok(url)
        } else {
            Err(GuardError::NotAllowed(shown()))
        }
    }
}

/// Looks a host name up: the system resolver by default; tests inject
/// their own answers.
pub trait Lookup: fmt::Debug + Send + Sync + 'static {
    /// The addresses of `host`.
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;
}

/// The system resolver, through `tokio::net::lookup_host`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let host = host.to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(found.map(|addr| addr.ip()).collect())
        })
    }
}

/// The resolver a webhook client connects through: resolves with a
/// [`Lookup`] and keeps only the addresses the [`WebhookPolicy`] allows,
/// so the address checked is the address connected to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<WebhookPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl GuardedResolver {
    /// A resolver checking `policy` on what `lookup` answers.
    pub fn new(policy: Arc<WebhookPolicy>, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// The allowed addresses of `host`, or why there are none.
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, GuardError> {
        let found = self
            .lookup
            .lookup(host)
            .await
            .map_err(|error| GuardError::Lookup {
                host: host.to_owned(),
                message: error.to_string(),
            })?;
        let mut allowed = Vec::with_capacity(found.len());
        let mut refused = Vec::new();
        for ip in found {
            match self.policy.check_ip(ip) {
                Ok(()) => allowed.push(ip),
                Err(class) => refused.push(format!("{ip} ({class})")),
            }
        }
        if !refused.is_empty() {
            tracing::warn!(host, refused = %refused.join(", "), "webhook host resolves to forbidden addresses; not connecting to them");
        }
        if allowed.is_empty() {
            let reasons = if refused.is_empty() {
                "no addresses".to_owned()
            } else {
                refused.join(", ")
            };
            return Err(GuardError::Forbidden {
                host: host.to_owned(),
                reasons,
            });
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let allowed = this.resolve_host(name.as_str()).await?;
            // The port is set by the connector from the URL.
            let addrs: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn internal_addresses_are_classified() {
        use AddressClass::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("::1", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("100.64.0.1", SharedNat),
            ("100.127.255.254", SharedNat),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("255.255.255.255", Broadcast),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("240.0.0.1", Reserved),
            ("::7f00:1", Reserved),
            ("100::1", Reserved),
            // IPv4 inside IPv6: classified as the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::7f00:1", Loopback),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
        ];
        for (text, class) in cases {
            assert_eq!(classify(ip(text)), Some(class), "{text}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.253.1.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert_eq!(classify(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn flags_allow_loopback_and_private_only() {
        let strict = WebhookPolicy::default();
        let open = WebhookPolicy::default()
            .allow_loopback(true)
            .allow_private(true);
        for allowed_when_open in ["127.0.0.1", "::1", "10.0.0.1", "fd00::1", "100.64.0.1"] {
            assert!(strict.check_ip(ip(allowed_when_open)).is_err());
            assert_eq!(open.check_ip(ip(allowed_when_open)), Ok(()));
        }
        for never in [
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(open.check_ip(ip(never)).is_err(), "{never}");
        }
        assert_eq!(strict.check_ip(ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn urls_are_checked_for_form_scheme_prefix_and_literal_address() {
        let policy = WebhookPolicy::prefixes(["https://hooks.example.com/", "https://"]);
        let only = WebhookPolicy::prefixes(["https://hooks.example.com/"]);
        assert!(only.check_url("https://hooks.example.com/reply").is_ok());
        assert!(
            only.check_url("HTTPS://Hooks.Example.com:443/reply")
                .is_ok()
        );
        for (url, refused) in [
            ("http://hooks.example.com/reply", "Scheme"),
            ("ftp://hooks.example.com/reply", "Scheme"),
            ("https://hooks.example.com.evil.example/", "NotAllowed"),
            ("https://other.example.com/reply", "NotAllowed"),
            ("https://hooks.example.com@evil.example/", "Malformed"),
            ("https://hooks.example.com/../admin", "Malformed"),
            ("https://hooks.example.com\\@evil/", "Malformed"),
            ("https://hooks.example.com/a b", "Malformed"),
            ("not a url", "Malformed"),
        ] {
            let error = only.check_url(url).expect_err(url);
            assert!(
                format!("{error:?}").starts_with(refused),
                "{url}: {error:?}"
            );
        }
        for literal in [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://10.0.0.1:8443/",
            "https://0.0.0.0/",
        ] {
            let error = policy.check_url(literal).expect_err(literal);
            assert!(
                matches!(error, GuardError::Forbidden { .. }),
                "{literal}: {error:?}"
            );
        }
        assert!(policy.check_url("https://8.8.8.8/hook").is_ok());
        let http = WebhookPolicy::prefixes(["http://127.0.0.1:"])
            .allow_http(true)
            .allow_loopback(true);
        assert!(http.check_url("http://127.0.0.1:8080/hook").is_ok());
    }

    #[derive(Debug)]
    struct Fixed(Vec<IpAddr>);

    impl Lookup for Fixed {
        fn lookup(&self, _: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
            let found = self.0.clone();
            Box::pin(async move { Ok(found) })
        }
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_allowed_addresses() {
        let policy = Arc::new(WebhookPolicy::default());
        let mixed = GuardedResolver::new(
            policy.clone(),
            Arc::new(Fixed(vec![ip("127.0.0.1"), ip("93.184.216.34")])),
        );
        assert_eq!(mixed.resolve_host("x").await, Ok(vec![ip("93.184.216.34")]));
        let internal = GuardedResolver::new(
            policy,
            Arc::new(Fixed(vec![ip("127.0.0.1"), ip("169.254.169.254")])),
        );
        let error = internal.resolve_host("rebind.example").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "webhook host \"rebind.example\" has no address the policy allows \
             (127.0.0.1 (loopback), 169.254.169.254 (link-local))"
        );
    }
}
