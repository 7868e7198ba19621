//! Target parsing, loopback policy, socket set-up and small async helpers.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::time::Duration;

use futures_lite::future;
use glommio::net::TcpStream;
use glommio::timer::Timer;

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
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| format!("{url}: unterminated [IPv6]"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p,
            None if after.is_empty() => "80",
            None => return Err(format!("{url}: bad port")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (rest.to_string(), "80"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url}: bad port '{port}'"))?;
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!("{url}: host must be an IP literal or localhost (no DNS lookups)")
        })?
    };
    if !ip.is_loopback() && !allow_remote {
        return Err(format!(
            "{url}: {ip} is not a loopback address; refusing without --allow-remote"
        ));
    }
    let host_hdr = match ip {
        IpAddr::V6(_) if port == 80 => format!("[{host}]"),
        IpAddr::V6(_) => format!("[{host}]:{port}"),
        _ if port == 80 => host.clone(),
        _ => format!("{host}:{port}"),
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

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Start a non-blocking TCP connect to `dst`, optionally from source address
/// `src` (port chosen at connect time via IP_BIND_ADDRESS_NO_PORT so the
/// 4-tuple, not the source port alone, must be unique).
///
/// Returns at once; the connection completes in the background and the first
/// write waits for it (glommio polls for POLLOUT), surfacing e.g. ECONNREFUSED.
pub fn connect_start(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let domain = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket syscalls on a descriptor we own; errors are checked.
    unsafe {
        let fd = libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let close_err = |fd: i32| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            e
        };
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if let Some(src) = src {
            if src.is_ipv4() == dst.is_ipv4() {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    &one as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                let (ss, len) = sockaddr(SocketAddr::new(src, 0));
                if libc::bind(fd, &ss as *const _ as *const libc::sockaddr, len) != 0 {
                    return Err(close_err(fd));
                }
            }
        }
        let (ss, len) = sockaddr(dst);
        if libc::connect(fd, &ss as *const _ as *const libc::sockaddr, len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                libc::close(fd);
                return Err(e);
            }
        }
        Ok(TcpStream::from_raw_fd(fd))
    }
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

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return rl.rlim_max;
            }
        }
        rl.rlim_cur
    }
}

/// CPU time and peak RSS of this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    pub max_rss_kb: u64,
}

pub fn self_usage() -> Usage {
    // SAFETY: getrusage with a valid pointer.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        Usage {
            user_s: ru.ru_utime.tv_sec as f64 + ru.ru_utime.tv_usec as f64 / 1e6,
            sys_s: ru.ru_stime.tv_sec as f64 + ru.ru_stime.tv_usec as f64 / 1e6,
            max_rss_kb: ru.ru_maxrss as u64,
        }
    }
}

/// Current RSS of this process in KiB (from /proc/self/statm).
pub fn self_rss_kb() -> u64 {
    proc_rss_kb("self").map(|(rss, _)| rss).unwrap_or(0)
}

/// (VmRSS, VmHWM) in KiB of /proc/<pid>.
pub fn proc_rss_kb(pid: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |key: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((get("VmRSS:")?, get("VmHWM:").unwrap_or(0)))
}

/// (user seconds, system seconds) of /proc/<pid> (all threads).
pub fn proc_cpu_s(pid: &str) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name is in parentheses and may contain spaces
    let after = &s[s.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ")" the fields start at #3 (state); utime is #14, stime #15
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf is always safe to call.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime / tck, stime / tck))
}

pub fn is_v4_loopback(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
}

#[allow(dead_code)]
pub const V6_LOOPBACK: Ipv6Addr = Ipv6Addr::LOCALHOST;

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

    #[test]
    fn proc_self() {
        assert!(proc_cpu_s("self").is_some());
        assert!(self_rss_kb() > 0);
    }
}
