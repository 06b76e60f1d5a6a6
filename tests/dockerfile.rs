//! The Dockerfile cannot be built here (no Docker engine in CI), so this
//! checks that what it names still matches the code: the binary, the port,
//! the config path the README documents, the build command CI runs, the
//! state directory, and that the binary accepts the arguments the image
//! gives it.

use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One instruction: its keyword (upper case) and the rest, with
/// continuation lines joined and comments dropped.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(dockerfile: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The arguments of an exec-form instruction (`["a", "b"]`).
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{args:?} is not the exec form [\"...\"]: {e}"))
}

/// The only instruction with this keyword in the final stage.
fn last<'a>(all: &'a [Instruction], keyword: &str) -> &'a Instruction {
    let final_stage = all.iter().rposition(|i| i.keyword == "FROM").unwrap();
    let found: Vec<_> = all[final_stage..]
        .iter()
        .filter(|i| i.keyword == keyword)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {keyword} in the final stage: {found:?}"
    );
    found[0]
}

/// `name` of the `[[bin]]` section of Cargo.toml.
fn bin_name() -> String {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("[[bin]]")
        .nth(1)
        .expect("Cargo.toml has a [[bin]] section");
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("name"))
        .expect("[[bin]] has a name");
    line.split('"').nth(1).unwrap().to_string()
}

/// `rust-version` of Cargo.toml as numbers.
fn rust_version() -> Vec<u32> {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("rust-version"))
        .expect("Cargo.toml has a rust-version");
    version(line.split('"').nth(1).unwrap()).unwrap()
}

fn version(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

/// The section of README.md under the heading `title`, to the next heading
/// of the same or a higher level.
fn readme_section(title: &str) -> String {
    let readme = read("README.md");
    let start = readme
        .lines()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == title)
        .unwrap_or_else(|| panic!("README.md has no {title:?} section"));
    let lines: Vec<&str> = readme.lines().collect();
    let level = lines[start].chars().take_while(|c| *c == '#').count();
    let mut in_code = false;
    let mut section = Vec::new();
    for line in &lines[start + 1..] {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let heading = line.chars().take_while(|c| *c == '#').count();
        if !in_code && heading > 0 && heading <= level {
            break;
        }
        section.push(*line);
    }
    section.join("\n")
}

/// Must show: each reference of the Dockerfile matches the code, the
/// README and CI; a change to any of them fails here.
#[test]
fn the_dockerfile_matches_the_code() {
    let all = instructions(&read("Dockerfile"));
    let bin = bin_name();
    let installed = format!("/usr/local/bin/{bin}");

    // Base images: exact versions, never a moving `latest`; the Rust image
    // is at least the rust-version Cargo.toml promises.
    let froms: Vec<&Instruction> = all.iter().filter(|i| i.keyword == "FROM").collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    for from in &froms {
        let image = from.args.split_whitespace().next().unwrap();
        let (name, digest) = image.split_once('@').unwrap_or((image, ""));
        let (_, tag) = name
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{image}: no tag"));
        assert!(tag != "latest" && !tag.is_empty(), "{image}: pin a tag");
        if !digest.is_empty() {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            assert!(
                hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{image}: bad digest"
            );
        }
    }
    let build = froms[0].args.split_whitespace().next().unwrap();
    let rust = build
        .strip_prefix("rust:")
        .and_then(|t| t.split(['-', '@']).next())
        .and_then(version)
        .unwrap_or_else(|| panic!("{build}: expected rust:X.Y.Z-<debian>"));
    assert_eq!(rust.len(), 3, "{build}: an exact Rust version X.Y.Z");
    assert!(
        rust >= rust_version(),
        "{build} is older than Cargo.toml's rust-version"
    );
    assert!(
        froms[0].args.ends_with(" AS build"),
        "the build stage is called build"
    );

    // The build command is CI's release build.
    let cargo: Vec<&Instruction> = all
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo"))
        .collect();
    assert_eq!(cargo.len(), 1, "{cargo:?}");
    assert_eq!(cargo[0].args, "cargo build --release --locked");
    assert!(
        read(".ci/run")
            .lines()
            .any(|l| l.trim() == "cargo build --release --locked"),
        ".ci/run no longer runs `cargo build --release --locked`"
    );

    // The binary: copied from where cargo puts it, run as the entrypoint.
    assert!(
        all.iter().any(|i| i.keyword == "COPY"
            && i.args == format!("--from=build /src/target/release/{bin} {installed}")),
        "no COPY of target/release/{bin} to {installed}"
    );
    assert_eq!(
        exec_form(&last(&all, "ENTRYPOINT").args),
        [installed.as_str()]
    );

    // The port.
    let port = redis_ha_exporter::config::DEFAULT_LISTEN
        .rsplit(':')
        .next()
        .unwrap();
    assert_eq!(last(&all, "EXPOSE").args, port);

    // The config path: the one the README's Container section documents,
    // used by CMD and by the health check.
    let cmd = exec_form(&last(&all, "CMD").args);
    let [flag, config] = <[String; 2]>::try_from(cmd.clone())
        .unwrap_or_else(|_| panic!("CMD {cmd:?}: expected [\"--config\", PATH]"));
    assert_eq!(flag, "--config");
    let container = readme_section("Container");
    assert!(
        container.contains(&format!(":{config}")) && container.contains("docker build"),
        "README's Container section does not mount the config at {config}:\n{container}"
    );
    let health = &last(&all, "HEALTHCHECK").args;
    let (_, probe) = health
        .split_once("CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK {health}: no CMD"));
    assert_eq!(
        exec_form(probe),
        [installed.as_str(), "healthcheck", "--config", &config]
    );

    // Not root.
    let user = &last(&all, "USER").args;
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user}");

    // The state directory the example config uses is the volume.
    let volume = exec_form(&last(&all, "VOLUME").args);
    let example = read("config/example.yaml");
    let state_dir = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("state_dir: "))
        .expect("config/example.yaml sets alerts.state_dir");
    assert_eq!(volume, [state_dir]);
    // ... and the default state directory of a config without one.
    assert!(
        all.iter()
            .any(|i| i.keyword == "ENV" && i.args == format!("STATE_DIRECTORY={state_dir}")),
        "no ENV STATE_DIRECTORY={state_dir}"
    );
    assert!(
        all.iter()
            .any(|i| i.keyword == "COPY" && i.args.ends_with(&format!(" {state_dir}"))),
        "{state_dir} is not created for the runtime user"
    );

    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .collect();
    for dir in ["target", ".git"] {
        assert!(
            ignored.iter().any(|l| l == dir),
            ".dockerignore lacks {dir}"
        );
    }

    // The binary accepts the arguments the image gives it: with no config
    // at the path here, the agent stops on the missing file (not on a
    // usage error) and the health check reports it unhealthy.
    if std::path::Path::new(&config).exists() {
        return;
    }
    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
            .args(args)
            .output()
            .unwrap()
    };
    let missing = format!("cannot read config file {config}");
    let out = run(&cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && stderr.contains(&missing),
        "{stderr}"
    );
    let out = run(&exec_form(probe)[1..]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && stderr.contains(&missing),
        "{stderr}"
    );
}

#[test]
fn continuation_lines_and_comments_are_parsed() {
    let parsed =
        instructions("# c\nFROM a:1 AS b\n\nHEALTHCHECK --interval=1s \\\n    CMD [\"x\"]\n");
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].keyword, "HEALTHCHECK");
    assert_eq!(parsed[1].args, "--interval=1s CMD [\"x\"]");
}
