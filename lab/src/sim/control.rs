//! The simulator's controls as text, for the process form
//! (`redis-ha-lab sim`): one command a line, answered `ok` (with a value
//! for the commands that return one) or `error <reason>`.

use super::{SimCluster, SimError};

/// One control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `fail-master <shard>`: answers `ok <index of the failed node>`.
    FailMaster(usize),
    /// `freeze <index>`
    Freeze(usize),
    /// `resume <index>`
    Resume(usize),
    /// `migrate <slot> <from shard> <to shard>`
    Migrate { slot: u16, from: usize, to: usize },
    /// `close-migration <slot>`
    CloseMigration(u16),
    /// `master-of <shard>`: answers `ok <index> <addr>`.
    MasterOf(usize),
    /// `quit`: answers `ok`, then the process stops.
    Quit,
}

/// Why a control line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("empty command")]
    Empty,
    #[error(
        "unknown command `{0}` (fail-master, freeze, resume, migrate, close-migration, master-of, quit)"
    )]
    Unknown(String),
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("`{0}` is not a number in range")]
    Number(String),
}

impl Control {
    /// Parses one line.
    pub fn parse(line: &str) -> Result<Control, ControlError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&command, args)) = words.split_first() else {
            return Err(ControlError::Empty);
        };
        let (usage, count) = match command {
            "fail-master" => ("fail-master <shard>", 1),
            "freeze" => ("freeze <index>", 1),
            "resume" => ("resume <index>", 1),
            "migrate" => ("migrate <slot> <from shard> <to shard>", 3),
            "close-migration" => ("close-migration <slot>", 1),
            "master-of" => ("master-of <shard>", 1),
            "quit" => ("quit", 0),
            other => return Err(ControlError::Unknown(other.to_string())),
        };
        if args.len() != count {
            return Err(ControlError::Usage(usage));
        }
        let index = |i: usize| number::<usize>(args[i]);
        Ok(match command {
            "fail-master" => Control::FailMaster(index(0)?),
            "freeze" => Control::Freeze(index(0)?),
            "resume" => Control::Resume(index(0)?),
            "migrate" => Control::Migrate {
                slot: number(args[0])?,
                from: index(1)?,
                to: index(2)?,
            },
            "close-migration" => Control::CloseMigration(number(args[0])?),
            "master-of" => Control::MasterOf(index(0)?),
            // Every other name was refused above.
            _ => Control::Quit,
        })
    }
}

fn number<T: std::str::FromStr>(word: &str) -> Result<T, ControlError> {
    word.parse()
        .map_err(|_| ControlError::Number(word.to_string()))
}

impl SimCluster {
    /// Carries out a control and returns its answer line.
    pub fn apply(&self, control: &Control) -> Result<String, SimError> {
        match *control {
            Control::FailMaster(shard) => return Ok(format!("ok {}", self.fail_master(shard)?)),
            Control::Freeze(index) => self.freeze(index)?,
            Control::Resume(index) => self.resume(index)?,
            Control::Migrate { slot, from, to } => self.open_migration(slot, from, to)?,
            Control::CloseMigration(slot) => self.close_migration(slot)?,
            Control::MasterOf(shard) => {
                let index = self.master_of(shard)?;
                return Ok(format!("ok {index} {}", self.node_addrs()[index]));
            }
            Control::Quit => {}
        }
        Ok("ok".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let cases = [
            ("fail-master 3", Control::FailMaster(3)),
            ("  freeze 17 ", Control::Freeze(17)),
            ("resume 17", Control::Resume(17)),
            (
                "migrate 100 0 1",
                Control::Migrate {
                    slot: 100,
                    from: 0,
                    to: 1,
                },
            ),
            ("close-migration 100", Control::CloseMigration(100)),
            ("master-of 2", Control::MasterOf(2)),
            ("quit", Control::Quit),
        ];
        for (line, control) in cases {
            assert_eq!(Control::parse(line), Ok(control), "{line}");
        }
    }

    #[test]
    fn explains_bad_lines() {
        assert_eq!(Control::parse("   "), Err(ControlError::Empty));
        assert!(matches!(
            Control::parse("explode 1"),
            Err(ControlError::Unknown(c)) if c == "explode"
        ));
        assert_eq!(
            Control::parse("migrate 1 2"),
            Err(ControlError::Usage(
                "migrate <slot> <from shard> <to shard>"
            ))
        );
        assert_eq!(
            Control::parse("freeze x"),
            Err(ControlError::Number("x".into()))
        );
        assert_eq!(
            Control::parse("close-migration 70000"),
            Err(ControlError::Number("70000".into()))
        );
        assert_eq!(Control::parse("quit now"), Err(ControlError::Usage("quit")));
    }
}
