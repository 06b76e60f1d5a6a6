//! A data node's settings read (`CONFIG GET`, one setting a command: older
//! servers take one pattern a call), at the slow cadence the poller keeps.

use fred::error::ErrorKind;
use fred::prelude::*;

use crate::client::command;
use crate::model::settings::{Param, Settings, SettingsRead};

/// The settings that mean something on the node. `None` when the read did
/// not finish (a timeout, a dropped connection): the poller asks again at
/// its next poll. A refusal (`NOPERM`, or a server or proxy that does not
/// know `CONFIG`) is an answer: the findings that need the settings say
/// they cannot tell, and it is asked again at the slow cadence only.
pub async fn read(client: &Client, cluster: bool) -> Option<SettingsRead> {
    let params: Vec<Param> = Param::ALL
        .into_iter()
        .filter(|p| p.applies(cluster))
        .collect();
    // Sent together: fred writes them in one go and the replies come back
    // in one round trip.
    let replies = futures::future::join_all(
        params
            .iter()
            .map(|p| client.custom::<Vec<String>, _>(command("CONFIG"), vec!["GET", p.name()])),
    )
    .await;
    let mut settings = Settings::default();
    for (param, reply) in params.into_iter().zip(replies) {
        match reply {
            // `[name, value]`; an unknown setting gives an empty array.
            Ok(pair) => {
                if let Ok([_, value]) = <[String; 2]>::try_from(pair) {
                    settings.set(param, value);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Timeout | ErrorKind::IO | ErrorKind::Canceled
                ) =>
            {
                return None
            }
            Err(e) => return Some(SettingsRead::Refused(e.details().to_string())),
        }
    }
    Some(SettingsRead::Read(settings))
}
