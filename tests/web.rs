//! The agent's endpoint behind a web config (TLS, client certificates,
//! basic auth), and the `healthcheck` subcommand, against the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ha_lab::SentinelGroup;
use support::certs::Pki;
use support::{free_port, sentinel_deployment, smallest_sentinel_group, temp_dir, Agent, Client};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

const CHALLENGE: &str = "Basic realm=\"redis-ha-exporter\"";

fn deployment(group: &SentinelGroup) -> String {
    sentinel_deployment("s", &[group.sentinels[0].addr()])
}

/// An HTTPS client that trusts `ca` only, showing `identity` (certificate,
/// key) when given.
fn https(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> ureq::Agent {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((crt, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(crt)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .timeout(Duration::from_secs(10))
        .build()
}

/// What a request got: status and `WWW-Authenticate`, or why it got no
/// answer at all.
fn call(request: ureq::Request) -> Result<(u16, Option<String>, String), String> {
    let answer = |r: ureq::Response| {
        let challenge = r.header("WWW-Authenticate").map(str::to_string);
        (r.status(), challenge, r.into_string().unwrap_or_default())
    };
    match request.call() {
        Ok(r) => Ok(answer(r)),
        Err(ureq::Error::Status(_, r)) => Ok(answer(r)),
        Err(e) => Err(e.to_string()),
    }
}

fn with_auth(client: &Client, user: &str, password: &str) -> Client {
    Client {
        basic_auth: Some((user.into(), password.into())),
        ..client.clone()
    }
}

fn healthcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
        .arg("healthcheck")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Must show: over HTTPS, no or wrong credentials get 401 with the
/// challenge on every route (unknown paths too) but /-/healthy; the right
/// ones get 200 on /metrics and the API; plain HTTP to the TLS port gets no
/// answer; nothing but GET is served; a verified password is remembered
/// (no bcrypt per scrape); neither password nor hash is logged.
#[test]
fn basic_auth_over_tls_guards_every_route() {
    let group = smallest_sentinel_group();
    let dir = temp_dir("web-auth");
    let pki = Pki::new(&dir.join("pki"), "test CA");
    pki.issue("agent");
    // Cost 8: about 0.2 s per check in this debug build, so that a check
    // shows in the timings below.
    let hash = bcrypt::hash("s3cret-pw", 8).unwrap();
    // Relative paths are relative to the web config file.
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: pki/agent.crt\n  key_file: pki/agent.key\n\
             basic_auth_users:\n  alice: {hash}\n  bob: {}\n",
            bcrypt::hash("bobs-pw", 4).unwrap()
        ),
    )
    .unwrap();
    let client = Client {
        https: true,
        http: https(&pki.ca_file(), None),
        basic_auth: Some(("alice".into(), "s3cret-pw".into())),
    };
    let agent = Agent::start_with_client(
        &deployment(&group),
        &format!("web_config_file: {}\n", dir.join("web.yml").display()),
        &[],
        client.clone(),
    );
    let url = |path: &str| format!("{}{path}", agent.base);
    let anonymous = Client {
        basic_auth: None,
        ..client.clone()
    };

    for path in [
        "/metrics",
        "/api/v1/topology",
        "/api/v1/failovers",
        "/-/ready",
        "/",
        "/no-such-page",
    ] {
        for (who, c) in [
            ("no credentials", anonymous.clone()),
            ("a wrong password", with_auth(&client, "alice", "s3cret-pW")),
            (
                "bob's password for alice",
                with_auth(&client, "alice", "bobs-pw"),
            ),
            ("an unknown user", with_auth(&client, "carol", "s3cret-pw")),
        ] {
            let (status, challenge, _) = call(c.get(&url(path))).unwrap();
            assert_eq!(status, 401, "{path} with {who}");
            assert_eq!(challenge.as_deref(), Some(CHALLENGE), "{path} with {who}");
        }
    }
    let (status, _, body) = call(client.get(&url("/metrics"))).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("redis_ha_target_up{"), "{body}");
    let (status, _, body) = call(client.get(&url("/api/v1/topology"))).unwrap();
    assert_eq!(status, 200);
    let topology: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(topology["deployments"][0]["deployment"], "s", "{body}");
    let (status, _, _) = call(with_auth(&client, "bob", "bobs-pw").get(&url("/metrics"))).unwrap();
    assert_eq!(status, 200, "every configured user gets in");
    // Probes need no credentials; the route says only that the process serves.
    assert_eq!(call(anonymous.get(&url("/-/healthy"))).unwrap().0, 200);
    // Read-only: with the right credentials, nothing but GET (and HEAD).
    let post = client.http.post(&url("/metrics")).set(
        "Authorization",
        &format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "alice:s3cret-pw"
            )
        ),
    );
    assert_eq!(call(post).unwrap().0, 405);

    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let port = agent.base.rsplit(':').next().unwrap();
    for path in ["/metrics", "/-/healthy"] {
        let plain = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_secs(5))
            .call();
        assert!(
            matches!(plain, Err(ureq::Error::Transport(_))),
            "plain HTTP to the TLS port: {plain:?}"
        );
    }
    // A client that does not trust the test CA refuses the agent's certificate.
    let untrusting = ureq::AgentBuilder::new().build();
    assert!(call(untrusting.get(&url("/-/healthy"))).is_err());

    // A verified password is remembered: each wrong password costs a
    // bcrypt, the right one (verified above) does not any more.
    let wrong = with_auth(&client, "alice", "nope");
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(call(wrong.get(&url("/metrics"))).unwrap().0, 401);
    }
    let one_bcrypt = start.elapsed() / 3;
    let start = Instant::now();
    for _ in 0..20 {
        assert_eq!(call(client.get(&url("/metrics"))).unwrap().0, 200);
    }
    let twenty_right = start.elapsed();
    assert!(
        twenty_right < one_bcrypt * 5,
        "20 scrapes with verified credentials took {twenty_right:?}; one wrong password takes {one_bcrypt:?}: \
         each scrape pays a bcrypt"
    );

    let log = agent.log();
    for secret in ["s3cret-pw", "bobs-pw", hash.as_str(), &hash[7..29]] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
    assert!(log.contains("HTTPS, basic auth (2 users)"), "{log}");

    // The healthcheck finds HTTPS and the port in the agent's config, and
    // needs no credentials; pointed at the wrong scheme or at a protected
    // route it fails with the reason.
    let config = agent.config.to_str().unwrap();
    let ok = healthcheck(&["--config", config]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let plain = format!("http://127.0.0.1:{port}/-/healthy");
    let metrics = format!("https://localhost:{port}/metrics");
    for (url, reason) in [
        (plain.as_str(), "error"),
        (metrics.as_str(), "answered 401"),
    ] {
        let out = healthcheck(&["--url", url]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(
            err.starts_with("unhealthy: ") && err.contains(reason) && err.lines().count() == 1,
            "{url}: {err}"
        );
    }
}

/// Must show: with RequireAndVerifyClientCert, a client without a
/// certificate, or with one from another CA, is refused (on every route);
/// one with a certificate from the configured CA is served; the healthcheck
/// shows the agent's own certificate and passes.
#[test]
fn client_certificates_are_required_when_configured() {
    let group = smallest_sentinel_group();
    let dir = temp_dir("web-mtls");
    let pki = Pki::new(&dir.join("pki"), "test CA");
    let (crt, key) = pki.issue("agent");
    let prometheus = pki.issue("prometheus");
    let intruder = Pki::new(&dir.join("other"), "another CA").issue("intruder");
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n\
             \x20 client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n",
            crt.display(),
            key.display(),
            pki.ca_file().display()
        ),
    )
    .unwrap();
    let client = Client {
        https: true,
        http: https(&pki.ca_file(), Some(&prometheus)),
        basic_auth: None,
    };
    let agent = Agent::start_with_client(
        &deployment(&group),
        &format!("web_config_file: {}\n", web.display()),
        &[],
        client.clone(),
    );
    let url = |path: &str| format!("{}{path}", agent.base);

    let (status, _, body) = call(client.get(&url("/metrics"))).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("redis_ha_target_up{"));
    assert_eq!(call(client.get(&url("/api/v1/alerts"))).unwrap().0, 200);
    for (who, http) in [
        ("no certificate", https(&pki.ca_file(), None)),
        (
            "another CA's certificate",
            https(&pki.ca_file(), Some(&intruder)),
        ),
    ] {
        for path in ["/metrics", "/-/healthy"] {
            let refused = call(http.get(&url(path)));
            assert!(refused.is_err(), "{path} with {who}: {refused:?}");
        }
    }

    let ok = healthcheck(&["--config", agent.config.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Without the web config it has no certificate to show.
    let port = agent.base.rsplit(':').next().unwrap();
    let out = healthcheck(&["--url", &format!("https://127.0.0.1:{port}/-/healthy")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Must show: `healthcheck` exits 0 when the agent answers 200 (by URL, or
/// found through the agent's config), 1 with a one-line reason when
/// nothing listens or the config cannot be read.
#[test]
fn healthcheck_answers_by_exit_code() {
    let group = smallest_sentinel_group();
    let agent = Agent::start(&deployment(&group));
    let config = agent.config.to_str().unwrap();
    for args in [
        vec!["--url", &format!("{}/-/healthy", agent.base)],
        vec!["--config", config],
    ] {
        let out = healthcheck(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("healthy: "));
    }

    let nobody = format!("http://127.0.0.1:{}/-/healthy", free_port());
    let missing = "/nonexistent/redis-ha-exporter.yaml";
    for (args, reason) in [
        (vec!["--url", nobody.as_str()], "Connection refused"),
        (vec!["--config", missing], "cannot read config file"),
        (vec!["--url", "not a url"], "invalid URL"),
    ] {
        let out = healthcheck(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("unhealthy: ") && err.contains(reason) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// Must show: a bad web config stops both `check-config` and the agent
/// with the file, the key and the line, without repeating a hash or
/// password; `--web.config.file` wins over `web_config_file`.
#[test]
fn bad_web_configs_are_refused_with_the_key() {
    let dir = temp_dir("web-config");
    let hash = bcrypt::hash("pw", 4).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = |web: &Path| {
        write(
            &format!("{}.agent.yaml", web.file_name().unwrap().to_str().unwrap()),
            &format!(
                "web_config_file: {}\ndeployments:\n  - name: s\n    kind: sentinel\n    sentinels: [\"127.0.0.1:1\"]\n",
                web.display()
            ),
        )
    };
    let agent = |args: &[&str], config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap()
    };
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            write(
                "unknown-key.yml",
                "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  max_version: TLS13\n",
            ),
            vec!["unknown-key.yml", "tls_server_config", "unknown field `max_version`", "line 4"],
        ),
        (
            write("plain-password.yml", "basic_auth_users:\n  alice: hunter2-plain\n"),
            vec!["basic_auth_users.alice", "not a bcrypt hash", "htpasswd", "line 2"],
        ),
        (
            write(
                "short-hash.yml",
                &format!("basic_auth_users:\n  alice: \"{}\"\n", &hash[..50]),
            ),
            vec!["basic_auth_users.alice", "not a bcrypt hash"],
        ),
        (
            write(
                "no-cert.yml",
                "tls_server_config:\n  cert_file: /nonexistent/agent.crt\n  key_file: /nonexistent/agent.key\n",
            ),
            vec!["tls_server_config.cert_file /nonexistent/agent.crt", "cannot read it"],
        ),
        (
            write(
                "no-ca.yml",
                "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n",
            ),
            vec!["client_ca_file: needed with RequireAndVerifyClientCert"],
        ),
        (
            write(
                "bad-auth-type.yml",
                "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: VerifyClientCertIfGiven\n",
            ),
            vec!["client_auth_type", "unknown variant `VerifyClientCertIfGiven`", "line 4"],
        ),
        (
            dir.join("missing.yml"),
            vec!["missing.yml", "cannot read web config file", "No such file"],
        ),
    ];
    for (web, needles) in &cases {
        let config = config(web);
        for args in [&["check-config"][..], &[][..]] {
            let out = agent(args, &config);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{web:?} with {args:?}: {err}");
            for needle in needles {
                assert!(
                    err.contains(needle),
                    "{web:?} with {args:?}: {needle:?} not in {err}"
                );
            }
            for secret in ["hunter2", &hash[..50]] {
                assert!(!err.contains(secret), "{err}");
            }
        }
    }
    // The flag wins: the config's own web_config_file (missing) is not read.
    let good = write("good.yml", &format!("basic_auth_users:\n  alice: {hash}\n"));
    let out = agent(
        &["check-config", "--web.config.file", good.to_str().unwrap()],
        &config(&dir.join("missing.yml")),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("OK (1 deployments), endpoint: plain HTTP, basic auth (1 user)"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&hash) && !stdout.contains("alice"),
        "{stdout}"
    );
}
