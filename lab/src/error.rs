use std::time::Duration;

/// Why a command sent by [`crate::Node::cmd`] failed.
///
/// Every variant names the server address and the command, because a failing
/// integration test usually has several servers and the first question is "which one".
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Connecting, writing or reading failed (connection refused: the server is not running).
    #[error("{addr}: I/O error during `{command}`: {source}")]
    Io {
        addr: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// No reply in time: the server is frozen (SIGSTOP), dead-locked or overloaded.
    #[error("{addr} did not answer `{command}` within {timeout:?} (frozen or overloaded?)")]
    Timeout {
        addr: String,
        command: String,
        timeout: Duration,
    },
    /// The server closed the connection before a complete reply arrived.
    #[error("{addr} closed the connection before replying to `{command}`")]
    Closed { addr: String, command: String },
    /// The server answered with a RESP error reply (`-ERR …`, `-LOADING …`, …).
    #[error("{addr} replied to `{command}` with an error: {message}")]
    Server {
        addr: String,
        command: String,
        message: String,
    },
    /// The reply was not valid RESP2, or not the shape the command should return.
    #[error("{addr} sent an unexpected reply to `{command}`: {detail}")]
    Protocol {
        addr: String,
        command: String,
        detail: String,
    },
}
