//! The agent's stop request, as the tasks that start the others see it.
//!
//! Only the tasks at the head of the data flow watch it (the poller
//! supervisor, the HTTP server): every other task ends when its input
//! does, after handling what it was sent, so stopping the head drains the
//! rest in order (docs/architecture.md, "Stopping").

use tokio::sync::watch;

/// Requests the stop; dropping it requests it too, so that no task outlives
/// what would have stopped it.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

/// Whether the stop was requested; one clone per task that watches it.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A stop request and its watchers.
pub fn channel() -> (Stop, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Stop(tx), Shutdown(rx))
}

impl Stop {
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once the stop is requested, at once if it already was.
    /// Cancel-safe: a `select!` loop may call it again.
    pub async fn requested(&mut self) {
        // An error is the `Stop` gone: a request as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requested_by_request_or_drop_and_seen_late() {
        let (stop, mut shutdown) = channel();
        let mut late = shutdown.clone();
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), shutdown.requested());
        assert!(pending.await.is_err(), "not requested yet");
        stop.request();
        shutdown.requested().await;
        late.requested().await;

        let (stop, mut shutdown) = channel();
        drop(stop);
        shutdown.requested().await;
    }
}
