//! A real Alertmanager (the `prometheus-alertmanager` program), started for
//! one test with no cluster peers.

use serde_json::Value;

use super::Service;

/// The Alertmanager; killed on drop.
pub struct Alertmanager(pub Service);

impl Alertmanager {
    /// One that routes every alert nowhere: for tests that read its API.
    pub fn start() -> Alertmanager {
        Self::with_config(
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
    }

    /// One with this configuration (its `config.yml`).
    pub fn with_config(config: &str) -> Alertmanager {
        Alertmanager(Service::start(
            "prometheus-alertmanager",
            config,
            &[
                "--config.file=$DIR/config.yml",
                "--storage.path=$DIR/data",
                "--web.listen-address=127.0.0.1:$PORT",
                "--cluster.listen-address=",
            ],
        ))
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Vec<Value> {
        let body = ureq::get(&format!("{}/api/v2/alerts", self.0.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}
