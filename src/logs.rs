//! The agent's log lines: one per event, as logfmt or JSON, the two formats
//! Prometheus exporters write (`--log.format`), so a log pipeline built for
//! them parses these too. Every line has `ts` (UTC, RFC 3339, milliseconds),
//! `level`, `source` (the module that logged it: the agent's own start with
//! `redis_ha_exporter`) and `msg`, then the event's fields in order.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `key=value` pairs, values quoted when they hold a space, `=` or `"`.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The filter the agent logs with when none is given: the agent's own
/// lines from `info` up, the Redis client library's only when they are
/// errors. The library warns about every frozen node, once per command it
/// gives up on ("Broadcasting error ... Unresponsive connection"), which
/// the agent already logs once, in its own words, as `target down`.
pub const DEFAULT_FILTER: &str = "info";

/// The directive added to a filter that does not name the client library
/// itself: `--log debug` is about the agent; `--log debug,fred=debug` shows
/// the library's own lines too.
const CLIENT_LIBRARY: &str = "fred=error";

/// `filter` (as in `RUST_LOG`) with the client library held to errors
/// unless the filter names it.
pub fn filter_directives(filter: &str) -> String {
    if filter.split(',').any(|d| d.trim().starts_with("fred")) {
        filter.to_string()
    } else if filter.trim().is_empty() {
        format!("{DEFAULT_FILTER},{CLIENT_LIBRARY}")
    } else {
        format!("{filter},{CLIENT_LIBRARY}")
    }
}

/// Sends the process's log lines (its own and the libraries', through the
/// `log` crate as well) to stderr in `format`, filtered by `filter`; a
/// filter that cannot be parsed falls back to the default.
pub fn init(filter: &str, format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter_directives(filter))
        .unwrap_or_else(|_| filter_directives(DEFAULT_FILTER).into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .event_format(Line(format))
        .init();
}

/// The event formatter: one line in the chosen format.
struct Line(Format);

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Lines from the `log` crate (the client library) carry their real
        // target in fields; normalised, they read like the agent's own.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let head = [
            Value::Text(ts),
            Value::Text(meta.level().as_str().to_lowercase()),
            Value::Text(meta.target().to_string()),
            Value::Text(fields.message.unwrap_or_default()),
        ];
        let pairs = HEAD
            .into_iter()
            .map(str::to_string)
            .zip(head)
            .chain(fields.pairs);
        writeln!(writer, "{}", render(self.0, pairs))
    }
}

/// The keys every line starts with, in this order.
const HEAD: [&str; 4] = ["ts", "level", "source", "msg"];

/// One field's value, kept typed so that JSON shows numbers as numbers.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

/// An event's message and other fields, in the order they were given.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    pairs: Vec<(String, Value)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                if let Value::Text(text) = value {
                    self.message = Some(text);
                }
            }
            // What the `log` crate bridge adds: in `source` already, or noise.
            name if name.starts_with("log.") => {}
            // A field named like one of the line's own keys keeps both.
            name if HEAD.contains(&name) => self.pairs.push((format!("event_{name}"), value)),
            name => self.pairs.push((name.to_string(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Text(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Int(value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::Text(format!("{value:?}")));
    }
}

/// One line, without its newline. Line breaks inside values are escaped in
/// both formats: one event is always one line.
fn render(format: Format, pairs: impl Iterator<Item = (String, Value)>) -> String {
    match format {
        Format::Json => {
            // Written by hand, not through a map: the keys stay in order.
            let members: Vec<String> = pairs
                .map(|(k, v)| {
                    let v: serde_json::Value = match v {
                        Value::Text(s) => s.into(),
                        Value::Int(i) => i64::try_from(i)
                            .map(Into::into)
                            .or_else(|_| u64::try_from(i).map(Into::into))
                            .unwrap_or_else(|_| i.to_string().into()),
                        Value::Float(f) => serde_json::Number::from_f64(f)
                            .map_or_else(|| f.to_string().into(), Into::into),
                        Value::Bool(b) => b.into(),
                    };
                    format!("{}:{v}", serde_json::Value::from(k))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Format::Logfmt => {
            let mut line = String::new();
            for (k, v) in pairs {
                if !line.is_empty() {
                    line.push(' ');
                }
                let text = match v {
                    Value::Text(s) => s,
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                };
                let _ = write!(line, "{k}={}", logfmt_value(&text));
            }
            line
        }
    }
}

/// A logfmt value: bare when it is a plain word, else quoted with `"`,
/// `\` and control characters escaped.
fn logfmt_value(text: &str) -> String {
    let bare = !text.is_empty()
        && !text
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if bare {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, Value)]) -> impl Iterator<Item = (String, Value)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it_and_keeps_one_line() {
        let line = render(
            Format::Logfmt,
            pairs(&[
                ("level", Value::Text("warn".into())),
                ("msg", Value::Text("target down".into())),
                ("target", Value::Text("10.0.0.1:6379".into())),
                ("error", Value::Text("a \"b\"\nc=d \\".into())),
                ("empty", Value::Text(String::new())),
                ("n", Value::Int(-3)),
                ("up", Value::Bool(false)),
            ]),
        );
        assert_eq!(
            line,
            r#"level=warn msg="target down" target=10.0.0.1:6379 error="a \"b\"\nc=d \\" empty="" n=-3 up=false"#
        );
    }

    #[test]
    fn json_keeps_types_and_parses_back() {
        let line = render(
            Format::Json,
            pairs(&[
                ("msg", Value::Text("x\ny".into())),
                ("n", Value::Int(u64::MAX.into())),
                ("small", Value::Int(7)),
                ("f", Value::Float(0.5)),
                ("nan", Value::Float(f64::NAN)),
                ("b", Value::Bool(true)),
            ]),
        );
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"msg":"x\ny","n":"#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "x\ny");
        assert_eq!(v["n"], u64::MAX);
        assert_eq!(v["small"], 7);
        assert_eq!(v["f"], 0.5);
        assert_eq!(v["nan"], "NaN");
        assert_eq!(v["b"], true);
    }

    #[test]
    fn the_client_library_is_held_to_errors_unless_named() {
        assert_eq!(filter_directives("info"), "info,fred=error");
        assert_eq!(filter_directives(""), "info,fred=error");
        assert_eq!(
            filter_directives("redis_ha_exporter=debug,info"),
            "redis_ha_exporter=debug,info,fred=error"
        );
        assert_eq!(filter_directives("debug,fred=warn"), "debug,fred=warn");
    }
}
