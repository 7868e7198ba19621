//! Reserving the listening port before the executors start. Each executor binds its own
//! listener with SO_REUSEPORT (glommio always sets it); when the user asks for port 0,
//! all of them must agree on one port, so the main thread first binds a socket with
//! SO_REUSEPORT to learn the concrete address. It never calls listen(), so the kernel
//! never hands it a connection; it is closed once every executor has bound.

use std::io;
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd};

pub struct Reservation {
    _socket: OwnedFd,
    pub addr: SocketAddr,
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Binds (without listening) to `addr` with SO_REUSEPORT and reports the bound address.
pub fn reserve(addr: SocketAddr) -> io::Result<Reservation> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    for option in [libc::SO_REUSEPORT, libc::SO_REUSEADDR] {
        // SAFETY: valid fd, pointer to a live c_int and its size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: storage holds a sockaddr of `len` bytes.
    check(unsafe {
        libc::bind(
            fd,
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    })?;
    let mut bound_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is writable for bound_len bytes.
    check(unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut bound_len,
        )
    })?;
    let port = match addr {
        // SAFETY: the kernel filled in an address of the family we bound.
        SocketAddr::V4(_) => {
            u16::from_be(unsafe { (*(&storage as *const _ as *const libc::sockaddr_in)).sin_port })
        }
        // SAFETY: as above, for IPv6.
        SocketAddr::V6(_) => u16::from_be(unsafe {
            (*(&storage as *const _ as *const libc::sockaddr_in6)).sin6_port
        }),
    };
    let addr = match addr {
        SocketAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(*v4.ip(), port)),
        SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), port, 0, v6.scope_id())),
    };
    Ok(Reservation {
        _socket: socket,
        addr,
    })
}
