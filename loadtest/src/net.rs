//! Target parsing, loopback policy, socket set-up and small async helpers.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::time::Duration;

use futures_lite::future;
use glommio::net::TcpStream;
use glommio::timer::Timer;
use socket2::{Domain, SockAddr, Socket, Type};

/// Where the server is.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    /// Value of the Host header.
    pub host: String,
}

/// Parse `http://HOST[:PORT][/]` (also `ws://`). HOST is an IP literal or
/// `localhost` (no DNS: a load test must not depend on a resolver).
pub fn parse_target(url: &str, allow_remote: bool) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| format!("{url}: only http:// (or ws://) URLs are supported"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(format!("{url}: give the base URL without a path"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        // in "[::1]" every colon is inside the brackets
        Some((h, p)) if !p.contains(']') => (h, p),
        _ => (rest, "80"),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port '{port}'"))?;
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        bare.unwrap_or(host).parse().map_err(|_| {
            format!("{url}: host must be an IP literal or localhost (no DNS lookups)")
        })?
    };
    if !ip.is_loopback() && !allow_remote {
        return Err(format!(
            "{url}: {ip} is not a loopback address; refusing without --allow-remote"
        ));
    }
    let host_hdr = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        url: url.to_string(),
        addr: SocketAddr::new(ip, port),
        host: host_hdr,
    })
}

/// Source address number `i` (0-based) for spreading many client sockets:
/// 127.0.0.2, 127.0.0.3, ...
pub fn source_addr(i: usize) -> IpAddr {
    let n = 2 + i as u32;
    IpAddr::V4(Ipv4Addr::from(0x7f00_0000u32 + n.min(0x00ff_fffe)))
}

/// Start a non-blocking TCP connect to `dst`, optionally from source address
/// `src` (port chosen at connect time via IP_BIND_ADDRESS_NO_PORT so the
/// 4-tuple, not the source port alone, must be unique).
///
/// Returns at once; the connection completes in the background and the first
/// write waits for it (glommio polls for POLLOUT), surfacing e.g. ECONNREFUSED.
pub fn connect_start(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(dst), Type::STREAM.nonblocking(), None)?;
    s.set_nodelay(true)?;
    if let Some(src) = src.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own with a valid int option
        // (socket2 has no wrapper for this option).
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    match s.connect(&SockAddr::from(dst)) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => return Err(e),
        _ => {}
    }
    // SAFETY: the descriptor is a connected-or-connecting TCP socket that
    // `into_raw_fd` handed over; the TcpStream owns it from now on.
    Ok(unsafe { TcpStream::from_raw_fd(s.into_raw_fd()) })
}

/// Run `f` with a time limit; `None` when it timed out (`f` is dropped).
pub async fn timeout<T>(d: Duration, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
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

pub fn is_v4_loopback(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        let t = parse_target("ws://localhost:9/", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        let t = parse_target("http://[::1]:8080", false).unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(t.host, "[::1]:8080");
        let t = parse_target("http://[::1]", false).unwrap();
        assert_eq!((t.addr.port(), t.host.as_str()), (80, "[::1]"));
        let t = parse_target("http://127.1.2.3", false).unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(parse_target("http://10.0.0.1:80", false).is_err());
        assert!(parse_target("http://10.0.0.1:80", true).is_ok());
        assert!(parse_target("http://example.com:80", true).is_err());
        assert!(parse_target("https://127.0.0.1", false).is_err());
        assert!(parse_target("http://127.0.0.1:8080/api", false).is_err());
        assert!(parse_target("http://127.0.0.1:99999", false).is_err());
    }

    #[test]
    fn sources() {
        assert_eq!(source_addr(0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(source_addr(300), "127.0.1.46".parse::<IpAddr>().unwrap());
    }
}
