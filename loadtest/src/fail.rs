//! Why one exchange with the server failed, sorted the way the exit code
//! needs it: a violation (the server broke SPEC.md: exit 1) or a transport
//! error (connect, reset, timeout: tolerated up to --max-errors).

use std::io;

use async_tungstenite::tungstenite;

/// The kind of [`Fail::dropped`].
pub const DROPPED: &str = "dropped without a close frame";

#[derive(Debug)]
pub struct Fail {
    pub violation: bool,
    /// What the report groups by, e.g. "timeout".
    pub kind: String,
    pub detail: String,
}

impl Fail {
    pub fn violation(kind: impl Into<String>, detail: impl Into<String>) -> Fail {
        Fail {
            violation: true,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    pub fn error(kind: impl Into<String>, detail: impl Into<String>) -> Fail {
        Fail {
            violation: false,
            ..Fail::violation(kind, detail)
        }
    }

    /// The connection ended with no close frame.
    pub fn dropped() -> Fail {
        Fail::error(DROPPED, "")
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        let kind = if e.kind() == io::ErrorKind::TimedOut {
            "timeout"
        } else {
            "I/O"
        };
        Fail::error(kind, e.to_string())
    }
}

impl From<glommio::GlommioError<()>> for Fail {
    fn from(e: glommio::GlommioError<()>) -> Fail {
        io::Error::from(e).into()
    }
}

impl From<tungstenite::Error> for Fail {
    fn from(e: tungstenite::Error) -> Fail {
        use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
        match e {
            tungstenite::Error::Io(e) => e.into(),
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ResetWithoutClosingHandshake) => Fail::dropped(),
            e => Fail::violation("WebSocket protocol", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_violations_transport_faults_errors() {
        let timeout = Fail::from(io::Error::from(io::ErrorKind::TimedOut));
        let utf8 = Fail::from(tungstenite::Error::Utf8(String::new()));
        let closed = Fail::from(tungstenite::Error::ConnectionClosed);
        assert_eq!(
            (timeout.violation, utf8.violation, closed.kind.as_str()),
            (false, true, DROPPED)
        );
    }
}
