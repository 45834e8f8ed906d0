//! Where the invocation record of a caller's `X-Nimbus-Callback-Url` may be POSTed.
//!
//! The URL comes from whoever invoked, and the worker POSTs from inside its own network: left
//! open, a caller could reach what only the worker can (the cloud metadata service at
//! 169.254.169.254, an admin port on localhost, the services of a private network). So by
//! default a callback goes only to public addresses. The check holds for the address
//! actually connected to: names are resolved by a resolver that drops every other address,
//! so a name cannot resolve to a public address when checked and to a private one when
//! used, and redirects are not followed. (Behind an egress proxy the proxy resolves names,
//! and policing them is its job.) [`CallbackNetworks::Any`] lifts the restriction where
//! callers are trusted (local development, hooks on the same network).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long one POST of a callback may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Which addresses callbacks may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackNetworks {
    /// Public (globally routable) addresses only.
    #[default]
    PublicOnly,
    /// Any address, loopback and private ones included.
    Any,
}

/// The HTTP client callbacks are sent with, enforcing `networks`; `None` (logged) if it
/// cannot start, and then no callback is sent: a plain client would not enforce them.
pub(crate) fn client(networks: CallbackNetworks) -> Option<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(CALLBACK_TIMEOUT)
        // A redirect could lead anywhere: a callback endpoint answers itself or fails.
        .redirect(reqwest::redirect::Policy::none());
    let builder = match networks {
        CallbackNetworks::PublicOnly => builder.dns_resolver(Arc::new(PublicAddressesOnly)),
        CallbackNetworks::Any => builder,
    };
    builder
        .build()
        .inspect_err(|error| {
            tracing::error!(%error, "cannot start the callback client; no callback will be sent");
        })
        .ok()
}

/// Why `url` may not be called back under `networks`, if it may not. Names are checked when
/// they are resolved (see [`client`]); this catches the addresses written into the URL.
pub(crate) fn refusal(url: &str, networks: CallbackNetworks) -> Option<String> {
    if networks == CallbackNetworks::Any {
        return None;
    }
    let url = match reqwest::Url::parse(url) {
        Ok(url) => url,
        Err(error) => return Some(format!("not a URL: {error}")),
    };
    // The parser writes an address host in its usual form (IPv6 in brackets); anything
    // else is a name.
    let host = url.host_str()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!is_public(ip)).then(|| format!("{ip} is not a public address"))
}

/// Resolves names as the system does, keeping only public addresses.
struct PublicAddressesOnly;

impl Resolve for PublicAddressesOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addresses: Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

/// Whether `ip` is a globally routable unicast address: not loopback, private, link-local,
/// shared (carrier-grade NAT), documentation, benchmarking, multicast or otherwise reserved.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (b & 0xc0) == 64) // 100.64.0.0/10, shared address space
        || (a == 192 && b == 0 && c == 0) // 192.0.0.0/24, protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || a >= 240; // 240.0.0.0/4, reserved
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // An IPv4 address in IPv6 clothing (::ffff:a.b.c.d, or NAT64's 64:ff9b::/96) is
    // judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[0] == 0; // ::/16: IPv4-compatible and other reserved forms
    !special
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_globally_routable_addresses_are_public() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for special in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(special.parse().unwrap()), "{special}");
        }
    }

    #[test]
    fn urls_naming_a_special_address_are_refused_unless_any_is_allowed() {
        let refused = [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "https://[::1]/hook",
            "http://10.1.2.3/",
            // The same address, written as one number.
            "http://2130706433/",
        ];
        for url in refused {
            assert!(
                refusal(url, CallbackNetworks::PublicOnly).is_some(),
                "{url}"
            );
            assert_eq!(refusal(url, CallbackNetworks::Any), None, "{url}");
        }
        // Names are judged by what they resolve to, when they are resolved.
        assert_eq!(
            refusal("https://hooks.example.com/x", CallbackNetworks::PublicOnly),
            None
        );
        assert_eq!(
            refusal("https://1.1.1.1/x", CallbackNetworks::PublicOnly),
            None
        );
    }

    #[tokio::test]
    async fn names_resolving_only_to_special_addresses_are_refused() {
        let resolved = PublicAddressesOnly
            .resolve("localhost".parse().unwrap())
            .await;
        let Err(error) = resolved else {
            panic!("localhost resolved to a public address");
        };
        assert!(error.to_string().contains("no public address"), "{error}");
    }
}
