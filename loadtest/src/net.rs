//! Where the server is (loopback only unless --allow-remote), client sockets
//! spread over source addresses, and the timer helpers every scenario uses.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use glommio::timer::Timer;
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, SockAddr, Socket, Type};
use url::{Host, Url};

/// Where the server is.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// Value of the Host header.
    pub host: String,
}

/// Parse `http://HOST[:PORT][/]` (also `ws://`). HOST is an IP literal or
/// `localhost`: a load test must not depend on a resolver.
pub fn parse_target(url: &str, allow_remote: bool) -> Result<Target, String> {
    let u = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if !matches!(u.scheme(), "http" | "ws") {
        return Err(format!("{url}: only http:// (or ws://) URLs are supported"));
    }
    if u.path() != "/" || u.query().is_some() || !u.username().is_empty() {
        return Err(format!("{url}: give the base URL without a path"));
    }
    let ip: IpAddr = match u.host() {
        Some(Host::Ipv4(ip)) => ip.into(),
        Some(Host::Ipv6(ip)) => ip.into(),
        Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => Ipv4Addr::LOCALHOST.into(),
        _ => return Err(format!("{url}: host must be an IP literal or localhost")),
    };
    if !ip.is_loopback() && !allow_remote {
        return Err(format!(
            "{url}: {ip} is not a loopback address; refusing without --allow-remote"
        ));
    }
    let name = u.host_str().unwrap_or_default();
    Ok(Target {
        url: url.to_string(),
        addr: SocketAddr::new(ip, u.port_or_known_default().unwrap_or(80)),
        host: u.port().map_or(name.to_string(), |p| format!("{name}:{p}")),
    })
}

/// Source addresses client sockets rotate over (127.0.0.2 ..= 127.0.0.9):
/// eight address pairs hold eight times the ephemeral ports of one, so
/// neither 15,000 idle connections nor the TIME_WAIT sockets of thousands of
/// short lobby connections per second run out of them.
const SOURCES: u32 = 8;

pub fn source_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + i as u32 % SOURCES))
}

/// Start a non-blocking TCP connect to `dst`, from `src` when the target is
/// IPv4 loopback. IP_BIND_ADDRESS_NO_PORT defers the port choice to the
/// connect, so the 4-tuple, not the port alone, must be unique. The first
/// write waits for the connection.
pub fn connect_start(dst: SocketAddr, src: IpAddr) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(dst), Type::STREAM.nonblocking(), None)?;
    s.set_nodelay(true)?;
    if matches!(dst.ip(), IpAddr::V4(ip) if ip.is_loopback()) {
        setsockopt(&s, sockopt::IpBindAddressNoPort, &true)?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    match s.connect(&SockAddr::from(dst)) {
        Err(e) if e.raw_os_error() != Some(Errno::EINPROGRESS as i32) => return Err(e),
        _ => {}
    }
    // SAFETY: a connecting TCP socket that `into_raw_fd` handed over; the
    // TcpStream owns it from now on.
    Ok(unsafe { TcpStream::from_raw_fd(s.into_raw_fd()) })
}

/// Run `f` with a time limit; `None` when it timed out (`f` is dropped).
pub async fn timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        Timer::new(d).await;
        None
    })
    .await
}

pub async fn sleep(d: Duration) {
    if !d.is_zero() {
        Timer::new(d).await;
    }
}

pub async fn sleep_until(t: Instant) {
    sleep(t.saturating_duration_since(Instant::now())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_sources() {
        let t = parse_target("http://[::1]", false).unwrap();
        assert_eq!(
            (t.addr.to_string(), t.host.as_str()),
            ("[::1]:80".into(), "[::1]")
        );
        assert!(parse_target("http://10.0.0.1", false).is_err());
        for bad in [
            "http://example.com",
            "https://127.0.0.1",
            "http://127.0.0.1/api",
        ] {
            assert!(parse_target(bad, true).is_err(), "{bad}");
        }
        assert_eq!(source_addr(8), source_addr(0));
    }
}
