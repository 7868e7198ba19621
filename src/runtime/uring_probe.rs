//! Checking that io_uring is usable before any executor starts. Where a seccomp
//! profile (Docker 25+, containerd 2.0 defaults) or `kernel.io_uring_disabled` blocks
//! it, glommio would panic deep inside start-up with a misleading message about the
//! kernel version; this turns that into one clear line that says what to do.

use std::io;

/// `struct io_uring_params` is 120 bytes; the kernel only reads zeros from it here.
const PARAMS_BYTES: usize = 120;

/// Creates and closes a one-entry ring.
pub fn check() -> Result<(), String> {
    let mut params = [0u8; PARAMS_BYTES];
    // SAFETY: io_uring_setup(2) with a valid, writable, zeroed params buffer.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: the descriptor was just returned to us and is closed once.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(());
    }
    let error = io::Error::last_os_error();
    Err(format!(
        "io_uring is not available ({error}). In a container, allow io_uring_setup, \
         io_uring_enter and io_uring_register (see deploy/docker/seccomp-io-uring.json and \
         README \"Containers\"); on the host, check sysctl kernel.io_uring_disabled"
    ))
}
