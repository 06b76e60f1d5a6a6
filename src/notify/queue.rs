//! A bounded FIFO of notifications for one URL, mirrored in an append-only
//! file so that a restart (or a kill) loses nothing that was not delivered.
//!
//! The file holds one JSON line per change: `{"add": message}` when a
//! notification is queued, `{"done": seq}` when it left the queue
//! (delivered, refused or dropped). Reading it back replays the lines; it is
//! rewritten with only what is pending when it has grown well past that.
//! Lines are written straight to the OS (no buffering in the agent), so a
//! killed process loses nothing; a power cut may lose what the OS had not
//! flushed yet.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One notification, rendered once so that every attempt sends the same body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Position in this queue, increasing.
    pub seq: u64,
    /// Stable across retries and restarts: the `webhook-id`.
    pub id: String,
    /// When it was queued (unix seconds).
    pub created: f64,
    /// The request body.
    pub body: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Add(Message),
    Done(u64),
}

/// Rewrite the file once it has this many lines more than twice what is pending.
const COMPACT_SLACK: usize = 1000;

/// The queue of one URL.
#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Message>,
    capacity: usize,
    next_seq: u64,
    file: Option<(PathBuf, File)>,
    lines: usize,
    /// Writes to the file that failed since [`Queue::take_failed_writes`].
    failed_writes: u64,
}

impl Queue {
    /// An empty queue kept in memory only.
    pub fn in_memory(capacity: usize) -> Self {
        Queue {
            items: VecDeque::new(),
            capacity,
            next_seq: 0,
            file: None,
            lines: 0,
            failed_writes: 0,
        }
    }

    /// The queue kept at `path`, with what it held when the agent stopped.
    /// A file that cannot be used is an error for the caller to log; lines
    /// that cannot be parsed (a torn last write) are skipped.
    pub fn open(path: PathBuf, capacity: usize) -> std::io::Result<Self> {
        let mut queue = Queue::in_memory(capacity);
        match File::open(&path) {
            Ok(f) => {
                // Split on bytes: a torn line may not even be UTF-8.
                for line in BufReader::new(f).split(b'\n') {
                    match serde_json::from_slice::<Line>(&line?) {
                        Ok(Line::Add(m)) => {
                            queue.next_seq = queue.next_seq.max(m.seq + 1);
                            queue.items.push_back(m);
                        }
                        Ok(Line::Done(seq)) => queue.items.retain(|m| m.seq != seq),
                        Err(_) => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if queue.items.len() > capacity {
            tracing::warn!(file = %path.display(), dropped = queue.items.len() - capacity, "queue_size is smaller than what was queued: dropped the oldest");
        }
        while queue.items.len() > capacity {
            queue.items.pop_front();
        }
        let file = rewrite(&path, &queue.items)?;
        queue.lines = queue.items.len();
        queue.file = Some((path, file));
        Ok(queue)
    }

    /// Queues a notification; when full, the oldest is dropped and returned.
    pub fn push(&mut self, id: String, created: f64, body: String) -> Option<Message> {
        let m = Message {
            seq: self.next_seq,
            id,
            created,
            body,
        };
        self.next_seq += 1;
        self.write(&Line::Add(m.clone()));
        self.items.push_back(m);
        let mut dropped = None;
        if self.items.len() > self.capacity {
            dropped = self.items.pop_front();
            if let Some(d) = &dropped {
                self.write(&Line::Done(d.seq));
            }
        }
        // A receiver down for long fills the queue: the file stays bounded.
        self.compact();
        dropped
    }

    /// The oldest notification, next to deliver.
    pub fn front(&self) -> Option<&Message> {
        self.items.front()
    }

    /// Removes the notification `seq` (delivered or given up on).
    pub fn done(&mut self, seq: u64) {
        let before = self.items.len();
        self.items.retain(|m| m.seq != seq);
        if self.items.len() != before {
            self.write(&Line::Done(seq));
        }
        self.compact();
    }

    /// How many writes to the file failed since the last call: the
    /// notifications stay queued in memory and are delivered all the same.
    pub fn take_failed_writes(&mut self) -> u64 {
        std::mem::take(&mut self.failed_writes)
    }

    /// Notifications waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn write(&mut self, line: &Line) {
        let Some((path, file)) = &mut self.file else {
            return;
        };
        let mut text = serde_json::to_string(line).expect("plain data serializes");
        text.push('\n');
        self.lines = self.lines.saturating_add(1);
        if let Err(e) = file.write_all(text.as_bytes()) {
            self.failed_writes += 1;
            tracing::error!(file = %path.display(), error = %e, "cannot write the delivery queue; rewriting it");
            // A partial line would swallow the next one: start afresh.
            self.lines = usize::MAX;
        }
    }

    fn compact(&mut self) {
        let Some((path, _)) = &self.file else {
            return;
        };
        if self.lines <= 2 * self.items.len() + COMPACT_SLACK {
            return;
        }
        match rewrite(path, &self.items) {
            Ok(f) => {
                self.lines = self.items.len();
                if let Some((_, file)) = &mut self.file {
                    *file = f;
                }
            }
            Err(e) => {
                self.failed_writes += 1;
                tracing::warn!(file = %path.display(), error = %e, "cannot compact the delivery queue")
            }
        }
    }
}

/// Writes `items` to a new file that replaces `path`, and opens it for
/// appending. Not synced to disk: the queue promises to survive the
/// process, not the machine, and a sync would hold the queue's lock.
fn rewrite(path: &PathBuf, items: &VecDeque<Message>) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = private_file(&tmp, true)?;
        for m in items {
            let mut text = serde_json::to_string(&Line::Add(m.clone()))?;
            text.push('\n');
            f.write_all(text.as_bytes())?;
        }
    }
    std::fs::rename(&tmp, path)?;
    private_file(path, false)
}

/// Opens for appending (or truncates), readable by the agent's user only:
/// notifications carry the details of an incident.
pub(crate) fn private_file(path: &PathBuf, truncate: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rhe-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("q.jsonl")
    }

    #[test]
    fn what_is_not_done_survives_a_reopen_in_order() {
        let path = dir("reopen");
        let mut q = Queue::open(path.clone(), 10).unwrap();
        for i in 0..4 {
            q.push(format!("id{i}"), i as f64, format!("body{i}"));
        }
        let first = q.front().unwrap().seq;
        q.done(first);
        drop(q);
        let mut q = Queue::open(path.clone(), 10).unwrap();
        let ids: Vec<String> = q.items.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids, ["id1", "id2", "id3"]);
        // New messages continue after the ones read back.
        q.push("id4".into(), 4.0, "body4".into());
        assert_eq!(q.items.back().unwrap().seq, 4);
        assert_eq!(q.items.iter().map(|m| m.seq).max(), Some(4));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_records_it() {
        let path = dir("full");
        let mut q = Queue::open(path.clone(), 2).unwrap();
        assert_eq!(q.push("a".into(), 0.0, String::new()), None);
        assert_eq!(q.push("b".into(), 0.0, String::new()), None);
        assert_eq!(q.push("c".into(), 0.0, String::new()).unwrap().id, "a");
        let mut q = Queue::open(path.clone(), 2).unwrap();
        let ids: Vec<&str> = q.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        // Full for long (a receiver down): the file stays small.
        for i in 0..5000 {
            q.push(format!("m{i}"), 0.0, "x".into());
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * 2 + COMPACT_SLACK + 2, "{lines} lines");
        drop(q);
        let q = Queue::open(path, 2).unwrap();
        let ids: Vec<&str> = q.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["m4998", "m4999"]);
    }

    #[test]
    fn a_torn_line_is_skipped_and_the_file_compacts() {
        let path = dir("torn");
        let mut q = Queue::open(path.clone(), 5000).unwrap();
        for i in 0..1500 {
            q.push(format!("m{i}"), 0.0, "x".into());
            let seq = q.front().unwrap().seq;
            q.done(seq);
        }
        q.push("kept".into(), 0.0, "x".into());
        drop(q);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 1500, "compacted: {lines} lines");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"add\": {\"seq\": 9, \"id\": \"\xff\xfe")
            .unwrap();
        let q = Queue::open(path, 5000).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.front().unwrap().id, "kept");
    }
}
