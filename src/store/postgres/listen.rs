//! The change feed: a dedicated connection LISTENs on the changes channel and passes each
//! other node's committed change on. After connecting (or reconnecting) it asks for a full
//! resync first, since anything committed while it was not listening went unheard; an idle
//! connection is checked every few seconds, so a dead one is replaced rather than trusted.

use std::time::Duration;

use postgres::NoTls;
use postgres::fallible_iterator::FallibleIterator;

use super::CHANNEL;
use crate::store::Change;

/// How long to wait for a notification before checking the connection is alive.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Pause before reconnecting after the connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Runs until the receiving end is dropped.
pub(super) fn run(
    config: &postgres::Config,
    own_node: &str,
    sender: &tokio::sync::mpsc::UnboundedSender<Change>,
) {
    let mut failures = 0u32;
    while !sender.is_closed() {
        match listen(config, own_node, sender) {
            Ok(()) => return,
            Err(e) => {
                failures += 1;
                // Once per outage is enough in the log: the first failure, then every minute.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %e, "lost the PostgreSQL change feed; reconnecting");
                }
                std::thread::sleep(RECONNECT_PAUSE);
            }
        }
    }
}

/// Listens on one connection; returns `Ok` when the receiver is gone, `Err` when the
/// connection failed.
fn listen(
    config: &postgres::Config,
    own_node: &str,
    sender: &tokio::sync::mpsc::UnboundedSender<Change>,
) -> Result<(), postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    if sender.send(Change::Resync).is_err() {
        return Ok(());
    }
    loop {
        {
            let mut notifications = client.notifications();
            let mut pending = notifications.timeout_iter(IDLE_CHECK);
            while let Some(notification) = pending.next()? {
                let Some((node, function)) = notification.payload().split_once(' ') else {
                    continue;
                };
                let change = match function {
                    super::TENANCY => Change::Tenancy,
                    super::ROUTES => Change::Routes,
                    function => Change::Function(function.to_string()),
                };
                if node != own_node && sender.send(change).is_err() {
                    return Ok(());
                }
            }
        }
        if sender.is_closed() {
            return Ok(());
        }
        // Quiet for a while: make sure the connection still answers.
        client.batch_execute("SELECT 1")?;
    }
}
