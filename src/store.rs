//! The timeline file: one JSON object a line, appended as timelines change,
//! read back at start. The last line of an id wins, so an update is one
//! append; the file is compacted at start to the timelines kept. Also the
//! count of failed writes of every state file the agent keeps.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::model::timeline::Timeline;
use crate::model::write_errors::WriteErrors;

/// Reads the timelines in `path` (none if it does not exist), keeps the
/// last `keep_per_shard` ended ones of each shard and every open one, and
/// rewrites the file with just those. Lines that do not parse (a torn
/// last write) are skipped with a warning, never fatal.
pub fn load(path: &Path, keep_per_shard: usize) -> std::io::Result<Vec<Timeline>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut order: Vec<String> = Vec::new();
    let mut latest: HashMap<String, Timeline> = HashMap::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Timeline>(&line) {
            Ok(t) => {
                if !latest.contains_key(&t.id) {
                    order.push(t.id.clone());
                }
                latest.insert(t.id.clone(), t);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), line = n + 1, error = %e, "skipping unreadable timeline")
            }
        }
    }
    let mut kept_per_shard: HashMap<(String, String), usize> = HashMap::new();
    let mut kept: Vec<Timeline> = order
        .iter()
        .rev()
        .filter_map(|id| latest.remove(id))
        .filter(|t| {
            if t.is_open() {
                return true;
            }
            let n = kept_per_shard
                .entry((t.deployment.clone(), t.shard.clone()))
                .or_default();
            *n += 1;
            *n <= keep_per_shard
        })
        .collect();
    kept.reverse();
    let tmp = path.with_extension("compacting");
    {
        let mut out = File::create(&tmp)?;
        for t in &kept {
            writeln!(
                out,
                "{}",
                serde_json::to_string(t).map_err(std::io::Error::other)?
            )?;
        }
        out.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(kept)
}

/// Appends every batch of changed timelines to `path` until the sender is
/// gone. A failed write is logged and counted in `errors`, and the agent
/// goes on: losing the file must not stop monitoring (the timelines stay
/// in memory and in the API).
pub async fn write(
    path: PathBuf,
    mut rx: mpsc::UnboundedReceiver<Vec<Timeline>>,
    errors: Arc<WriteErrors>,
) {
    while let Some(batch) = rx.recv().await {
        let path = path.clone();
        let result = tokio::task::spawn_blocking(move || append(&path, &batch)).await;
        if let Ok(Err(e)) | Err(e) = result.map_err(std::io::Error::other) {
            errors.timelines.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot write timelines");
        }
    }
}

fn append(path: &Path, batch: &[Timeline]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = String::new();
    for t in batch {
        text.push_str(&serde_json::to_string(t).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;
    use crate::model::timeline::{MarkName, Outcome, Serial};

    fn timeline(shard: &str, start: f64, open: bool) -> Timeline {
        // Told apart by their start, as failovers of a shard are by epoch.
        let mut serial = Serial::default();
        serial.saw_epoch(start as u64);
        let mut t = Timeline::open(&serial, "d", shard, Kind::Sentinel);
        t.mark(MarkName::Odown, start, "s");
        if !open {
            t.outcome = Some(Outcome::Completed);
        }
        t
    }

    #[test]
    fn last_line_wins_bounded_per_shard_and_torn_lines_skipped() {
        let dir = std::env::temp_dir().join(format!("rhe-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("timelines.jsonl");
        let _ = std::fs::remove_file(&path);
        assert!(
            load(&path, 2).unwrap().is_empty(),
            "no file yet is no timelines"
        );
        let open = timeline("a", 1.0, true);
        append(
            &path,
            &[
                open.clone(),
                timeline("a", 2.0, false),
                timeline("a", 3.0, false),
            ],
        )
        .unwrap();
        append(
            &path,
            &[timeline("a", 4.0, false), timeline("b", 5.0, false)],
        )
        .unwrap();
        let mut done = open.clone();
        done.outcome = Some(Outcome::Aborted);
        append(&path, &[done]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\": \"torn")
            .unwrap();
        let loaded = load(&path, 2).unwrap();
        let ids: Vec<(&str, Option<Outcome>)> =
            loaded.iter().map(|t| (t.id.as_str(), t.outcome)).collect();
        assert_eq!(
            ids,
            [
                ("d:a:e3", Some(Outcome::Completed)),
                ("d:a:e4", Some(Outcome::Completed)),
                ("d:b:e5", Some(Outcome::Completed))
            ]
        );
        // Compacted: reading again gives the same.
        assert_eq!(load(&path, 2).unwrap(), loaded);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A path whose parent is a regular file cannot be written, whatever
    /// the user (root included): each failed append is counted.
    #[tokio::test]
    async fn failed_appends_are_counted() {
        let dir = std::env::temp_dir().join(format!("rhe-store-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a-file");
        std::fs::write(&file, "").unwrap();
        let errors = Arc::new(WriteErrors::default());
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(vec![timeline("a", 1.0, false)]).unwrap();
        tx.send(vec![timeline("a", 2.0, true)]).unwrap();
        drop(tx);
        write(file.join("timelines.jsonl"), rx, errors.clone()).await;
        assert_eq!(
            errors.by_file(),
            [
                ("timelines", 2),
                ("delivery_queue", 0),
                ("firing_alerts", 0)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
