//! deploy/: the Kubernetes manifests and the Helm chart, checked offline as a
//! cluster and helm would check them, since neither is here:
//!
//! - what scripts/gen-deploy makes from alerts/ and dashboards/ (the
//!   PrometheusRule, the chart's copies) equals what is committed, and a
//!   changed rule file is reported as drift;
//! - the chart renders (deploy/helm/render: Go's text/template and sprig, as
//!   Helm 3) with its default values and with every switch on;
//! - every manifest and every rendered resource passes strict schema
//!   validation (deploy/validate/validate.py: the Kubernetes OpenAPI schemas
//!   of kubernetes-validate, the prometheus-operator CRDs' of cloudcoil's
//!   models), and a misspelt field is rejected by name;
//! - the config each one deploys passes `redis-ha-exporter check-config`
//!   with the Secrets and ConfigMaps as the Deployment mounts them;
//! - the Deployment runs as the image's user, locked down, with the probes
//!   and the port of the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_yaml::Value;

const CHART: &str = "deploy/helm/redis-ha-exporter";
const ALL_ON: &str = "deploy/helm/redis-ha-exporter/ci/all-on-values.yaml";
const CONFIG: &str = "/etc/redis-ha-exporter/config.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fresh directory under the system's temp dir, for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("redis-ha-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The YAML documents of a file or a render, empty ones dropped.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("bad YAML: {e}\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn only<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == k).collect();
    assert_eq!(found.len(), 1, "one {k}: {found:?}");
    found[0]
}

fn by_name<'a>(docs: &'a [Value], k: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| kind(d) == k && d["metadata"]["name"].as_str() == Some(name))
}

/// The validators' interpreter: scripts/k8s-tools makes its virtualenv
/// (scripts/install-deps has, before any test), and says where it is.
fn k8s_python() -> String {
    let out = run(Command::new(repo("scripts/k8s-tools")).arg("python"));
    assert!(
        out.status.success(),
        "scripts/k8s-tools: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

/// deploy/validate/validate.py on these files: (passed, its report).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = run(Command::new(k8s_python())
        .arg(repo("deploy/validate/validate.py"))
        .args(files));
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.success(), report)
}

/// The chart rendered by deploy/helm/render with these values files over
/// values.yaml, as `helm template` would.
fn render(values: &[PathBuf]) -> String {
    let mut cmd = Command::new("go");
    cmd.current_dir(repo("."))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .args(["run", "./deploy/helm/render", "--name", "redis-ha-exporter"]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    let out = run(cmd.arg(CHART));
    assert!(
        out.status.success(),
        "rendering {CHART} with {values:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// The files of one ConfigMap or Secret volume (a Secret's stringData and
/// base64 data), which must be in `docs`.
fn volume_files(docs: &[Value], volume: &Value) -> Option<BTreeMap<String, Vec<u8>>> {
    use base64::Engine;
    let (k, name) = if let Some(c) = volume.get("configMap") {
        ("ConfigMap", c["name"].as_str().unwrap())
    } else if let Some(s) = volume.get("secret") {
        ("Secret", s["secretName"].as_str().unwrap())
    } else {
        return None;
    };
    let doc = by_name(docs, k, name)
        .unwrap_or_else(|| panic!("volume {volume:?}: no {k} {name} among the manifests"));
    let mut files = BTreeMap::new();
    for (key, field) in [("data", false), ("stringData", true)] {
        for (file, value) in doc[key].as_mapping().into_iter().flatten() {
            let value = value.as_str().unwrap();
            let bytes = if field || k == "ConfigMap" {
                value.as_bytes().to_vec()
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .unwrap()
            };
            files.insert(file.as_str().unwrap().to_string(), bytes);
        }
    }
    Some(files)
}

/// Every string of a YAML value that starts with one of the mount paths,
/// moved under `root`.
fn remap(value: &mut Value, mounts: &[String], root: &Path) {
    match value {
        Value::String(s) => {
            if let Some(m) = mounts
                .iter()
                .find(|m| s == *m || s.starts_with(&format!("{m}/")))
            {
                *s = format!("{}{m}{}", root.display(), &s[m.len()..]);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| remap(v, mounts, root)),
        Value::Mapping(map) => map.values_mut().for_each(|v| remap(v, mounts, root)),
        _ => {}
    }
}

/// Lays out the Deployment's volumes as its container sees them, under
/// `root` (ConfigMaps and Secrets with their files, emptyDirs and claims
/// empty), points the config's paths there, and runs check-config on it.
/// Also checks that the state paths are on a writable volume, since the
/// root filesystem is read-only.
fn check_config(docs: &[Value], root: &Path) -> Output {
    let deployment = only(docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    let mut mounts = Vec::new();
    let mut writable = Vec::new();
    for mount in container["volumeMounts"].as_sequence().unwrap() {
        let path = mount["mountPath"].as_str().unwrap().to_string();
        let volume = volumes[mount["name"].as_str().unwrap()];
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        match volume_files(docs, volume) {
            Some(files) => {
                for (name, content) in files {
                    std::fs::write(dir.join(name), content).unwrap();
                }
            }
            None => {
                assert!(
                    volume.get("emptyDir").is_some()
                        || volume.get("persistentVolumeClaim").is_some(),
                    "{volume:?}"
                );
                assert_ne!(mount["readOnly"].as_bool(), Some(true));
                writable.push(path.clone());
            }
        }
        mounts.push(path);
    }
    // The longest first, so that a mount inside another one is found.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));

    let config_path = root.join(CONFIG.trim_start_matches('/'));
    let mut config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&config_path)
            .unwrap_or_else(|e| panic!("{CONFIG} is not in a mounted volume: {e}")),
    )
    .unwrap();
    for state in [
        config["timelines"]["path"].as_str(),
        config["alerts"]["state_dir"].as_str(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            writable
                .iter()
                .any(|w| state == w || state.starts_with(&format!("{w}/"))),
            "{state} is not on a writable volume ({writable:?})"
        );
    }
    if let Some(web) = config["web_config_file"].as_str() {
        let web = root.join(web.trim_start_matches('/'));
        let mut web_config: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&web).unwrap()).unwrap();
        remap(&mut web_config, &mounts, root);
        std::fs::write(&web, serde_yaml::to_string(&web_config).unwrap()).unwrap();
    }
    remap(&mut config, &mounts, root);
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
        .arg("check-config")
        .arg("--config")
        .arg(&config_path))
}

fn assert_config_passes(docs: &[Value], root: &Path) {
    let out = check_config(docs, root);
    let config = &only(docs, "Deployment")["spec"]["template"]["spec"];
    assert!(
        out.status.success() && text(&out.stdout).contains(": OK ("),
        "check-config failed on the deployed config ({config:?}):\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The hardening the Deployment must keep, the image's user, and the
/// probes and port of the code.
fn assert_locked_down(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let user: i64 = read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|u| u.parse().ok())
        .expect("the Dockerfile has USER <uid>:<gid>");
    for ctx in [&pod["securityContext"], &c["securityContext"]] {
        assert_eq!(ctx["runAsNonRoot"], Value::Bool(true), "{ctx:?}");
        assert_eq!(ctx["runAsUser"].as_i64(), Some(user), "{ctx:?}");
        assert_eq!(
            ctx["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
    }
    let ctx = &c["securityContext"];
    assert_eq!(ctx["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(ctx["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(ctx["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false));

    let port: u64 = redis_ha_exporter::config::DEFAULT_LISTEN
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(port));
    assert_eq!(c["ports"][0]["name"].as_str(), Some("http"));
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[..2], ["--config", CONFIG]);
    // Whatever else is given, the agent takes it.
    let help = Command::new(env!("CARGO_BIN_EXE_redis-ha-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let named = help.match_indices(flag).any(|(i, _)| {
            help[i + flag.len()..]
                .starts_with(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
        });
        assert!(named, "{flag} is not a flag of the agent");
    }
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/-/healthy")
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"].as_str(), Some("http"));
    for resource in ["cpu", "memory"] {
        assert!(
            !c["resources"]["requests"][resource].is_null(),
            "{resource} request"
        );
        assert!(
            !c["resources"]["limits"][resource].is_null(),
            "{resource} limit"
        );
    }
}

/// The files of deploy/kubernetes that kustomization.yaml applies, which
/// must be every manifest there.
fn manifest_files() -> Vec<PathBuf> {
    let kustomization: Value =
        serde_yaml::from_str(&read("deploy/kubernetes/kustomization.yaml")).unwrap();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest");
    listed
        .iter()
        .map(|f| repo(&format!("deploy/kubernetes/{f}")))
        .collect()
}

fn manifests() -> Vec<Value> {
    manifest_files()
        .iter()
        .flat_map(|f| documents(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

fn gen_deploy(root: &Path, check: bool) -> Output {
    let mut cmd = Command::new(repo("scripts/gen-deploy"));
    cmd.arg("--root").arg(root);
    if check {
        cmd.arg("--check");
    }
    run(&mut cmd)
}

/// Must show: the committed PrometheusRule and the chart's copies are what
/// scripts/gen-deploy makes from alerts/ and dashboards/ now.
#[test]
fn generated_files_match_their_sources() {
    let out = gen_deploy(&repo("."), true);
    assert!(
        out.status.success(),
        "deploy/ has drifted from alerts/ or dashboards/:\n{}",
        text(&out.stderr)
    );

    // The same, read independently of the generator.
    let rules: Value = serde_yaml::from_str(&read("alerts/redis-ha.rules.yml")).unwrap();
    let rule = documents(&read("deploy/kubernetes/prometheusrule.yaml"));
    assert_eq!(rule.len(), 1);
    assert_eq!(rule[0]["spec"]["groups"], rules["groups"]);
    assert_eq!(
        read(&format!("{CHART}/files/redis-ha.rules.yml")),
        read("alerts/redis-ha.rules.yml")
    );
    let mut dashboards = 0;
    for entry in std::fs::read_dir(repo("dashboards")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert_eq!(
                read(&format!("{CHART}/files/dashboards/{name}")),
                read(&format!("dashboards/{name}")),
                "{name}"
            );
            dashboards += 1;
        }
    }
    assert!(dashboards >= 5, "{dashboards} dashboards");
}

/// Must show: a change to the rules file (or a dashboard gone) is drift
/// that --check reports by file and the generator then repairs.
#[test]
fn a_changed_rule_file_is_reported_as_drift() {
    let root = scratch("drift");
    for dir in [
        "alerts",
        "dashboards",
        "deploy/kubernetes",
        &format!("{CHART}/files/dashboards"),
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let mut copied = vec![
        "alerts/redis-ha.rules.yml".to_string(),
        "deploy/kubernetes/prometheusrule.yaml".to_string(),
        format!("{CHART}/files/redis-ha.rules.yml"),
    ];
    for entry in std::fs::read_dir(repo("dashboards")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        copied.push(format!("dashboards/{name}"));
        copied.push(format!("{CHART}/files/dashboards/{name}"));
    }
    for f in &copied {
        std::fs::copy(repo(f), root.join(f)).unwrap();
    }
    let out = gen_deploy(&root, true);
    assert!(
        out.status.success(),
        "the copy starts in sync: {}",
        text(&out.stderr)
    );

    let rules = root.join("alerts/redis-ha.rules.yml");
    let original = std::fs::read_to_string(&rules).unwrap();
    let changed = original.replacen("for: 30s", "for: 45s", 1);
    assert_ne!(changed, original, "the rules have a `for: 30s` to change");
    std::fs::write(&rules, &changed).unwrap();
    std::fs::remove_file(root.join("dashboards/sentinel.json")).unwrap();

    let out = gen_deploy(&root, true);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for reported in [
        "deploy/kubernetes/prometheusrule.yaml is out of date",
        "files/redis-ha.rules.yml is out of date",
        "files/dashboards/sentinel.json has no source",
    ] {
        assert!(stderr.contains(reported), "{reported:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("overview.json"), "{stderr}");

    let out = gen_deploy(&root, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(gen_deploy(&root, true).status.success());
    let regenerated = documents(
        &std::fs::read_to_string(root.join("deploy/kubernetes/prometheusrule.yaml")).unwrap(),
    );
    let wanted: Value = serde_yaml::from_str(&changed).unwrap();
    assert_eq!(regenerated[0]["spec"]["groups"], wanted["groups"]);
    assert!(!root
        .join(format!("{CHART}/files/dashboards/sentinel.json"))
        .exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// Must show: the plain manifests are valid Kubernetes and
/// prometheus-operator resources, their config passes check-config with
/// the Secret mounted where the Deployment mounts it, and the Deployment
/// is locked down.
#[test]
fn the_manifests_are_valid_and_their_config_passes_check_config() {
    let (ok, report) = validate(&manifest_files());
    assert!(ok, "{report}");
    assert!(report.contains("0 errors"), "{report}");

    let docs = manifests();
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    let want: BTreeSet<&str> = [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    ]
    .into();
    assert_eq!(kinds, want);
    let deployment = only(&docs, "Deployment");
    assert_locked_down(deployment);
    let readiness = &deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(readiness["httpGet"]["path"].as_str(), Some("/-/ready"));
    // The ServiceMonitor finds the Service, whose label becomes the job the
    // rules expect.
    let monitor = only(&docs, "ServiceMonitor");
    let service = only(&docs, "Service");
    let job_label = monitor["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(
        service["metadata"]["labels"][job_label].as_str(),
        Some("redis-ha-exporter")
    );
    assert!(read("alerts/redis-ha.rules.yml").contains("job=\"redis-ha-exporter\""));
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][k.as_str().unwrap()], v);
    }

    let root = scratch("manifests");
    assert_config_passes(&docs, &root);

    // Without the Secret's password file, the same check fails, naming it.
    let mut broken = docs.clone();
    for d in broken.iter_mut().filter(|d| kind(d) == "Secret") {
        d["stringData"]
            .as_mapping_mut()
            .unwrap()
            .remove("sentinel-password");
    }
    let out = check_config(&broken, &scratch("manifests-broken"));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("sentinel-password"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(scratch("manifests-broken"));
}

/// Must show: the validation rejects a misspelt field of a Kubernetes
/// resource and of a prometheus-operator one, by name and path.
#[test]
fn a_misspelt_field_fails_validation() {
    let dir = scratch("mutations");
    let deployment = read("deploy/kubernetes/deployment.yaml");
    let bad_deployment = deployment.replacen("imagePullPolicy:", "imagePullPolcy:", 1);
    assert_ne!(bad_deployment, deployment);
    let monitor = read("deploy/kubernetes/servicemonitor.yaml");
    let bad_monitor = monitor.replacen("interval:", "intervall:", 1);
    assert_ne!(bad_monitor, monitor);

    // A kind with no schema is an error too, not a pass.
    let service = read("deploy/kubernetes/service.yaml").replace("kind: Service", "kind: Servise");
    // One run for the three (loading the schemas is most of its time); each
    // error line names its file, resource and field.
    let files = [
        write(&dir, "deployment.yaml", &bad_deployment),
        write(&dir, "servicemonitor.yaml", &bad_monitor),
        write(&dir, "service.yaml", &service),
    ];
    let (ok, report) = validate(&files);
    assert!(!ok, "the mutations passed:\n{report}");
    for (file, expected) in [
        (
            &files[0],
            "Deployment/redis-ha-exporter: spec.template.spec.containers.0: \
             Additional properties are not allowed ('imagePullPolcy' was unexpected)",
        ),
        (
            &files[1],
            "ServiceMonitor/redis-ha-exporter: spec.endpoints.0: \
             Additional properties are not allowed ('intervall' was unexpected)",
        ),
        (
            &files[2],
            "Servise/redis-ha-exporter: kind: Couldn't find schema for kind Servise",
        ),
    ] {
        let line = format!("{}: {expected}", file.display());
        assert!(report.contains(&line), "expected {line:?} in:\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Must show: the chart with its default values renders only the agent
/// (every switch off), valid, and its config passes check-config.
#[test]
fn the_chart_renders_valid_with_default_values() {
    let dir = scratch("chart-default");
    let rendered = render(&[]);
    let docs = documents(&rendered);
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service"].into());
    let (ok, report) = validate(&[write(&dir, "default.yaml", &rendered)]);
    assert!(ok && report.contains("3 resources, 0 errors"), "{report}");
    assert_locked_down(only(&docs, "Deployment"));
    assert_config_passes(&docs, &dir.join("root"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Must show: with every switch on (ci/all-on-values.yaml) the chart
/// renders the Secrets, the claim, the web config, the ServiceMonitor, the
/// PrometheusRule of the rules file and a dashboard ConfigMap per dashboard,
/// all valid, with a config that passes check-config; HTTPS reaches the
/// probes and the scrape.
#[test]
fn the_chart_renders_valid_with_every_switch_on() {
    let dir = scratch("chart-all-on");
    let rendered = render(&[repo(ALL_ON)]);
    let docs = documents(&rendered);
    let (ok, report) = validate(&[write(&dir, "all-on.yaml", &rendered)]);
    assert!(ok && report.contains(" 0 errors"), "{report}");

    let count = |k: &str| docs.iter().filter(|d| kind(d) == k).count();
    let dashboards: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            kind(d) == "ConfigMap" && !d["metadata"]["labels"]["grafana_dashboard"].is_null()
        })
        .collect();
    assert_eq!(dashboards.len(), 5, "a ConfigMap per dashboard");
    for d in &dashboards {
        assert_eq!(
            d["metadata"]["labels"]["grafana_dashboard"].as_str(),
            Some("1")
        );
        let (file, json) = d["data"].as_mapping().unwrap().iter().next().unwrap();
        let file = file.as_str().unwrap();
        assert_eq!(
            json.as_str().unwrap(),
            read(&format!("dashboards/{file}")).trim_end()
        );
    }
    assert_eq!(count("ConfigMap"), 6);
    assert_eq!(count("Secret"), 2, "the auth and web config Secrets");
    assert_eq!(count("PersistentVolumeClaim"), 1);
    assert_eq!(count("ServiceMonitor"), 1);

    // The chart's PrometheusRule is the manifests' one.
    let rule = only(&docs, "PrometheusRule");
    let manifest = documents(&read("deploy/kubernetes/prometheusrule.yaml"));
    assert_eq!(rule["spec"], manifest[0]["spec"]);
    assert!(serde_yaml::to_string(&rule["spec"])
        .unwrap()
        .contains("{{ $labels.shard }}"));

    let deployment = only(&docs, "Deployment");
    assert_locked_down(deployment);
    let pod = &deployment["spec"]["template"]["spec"];
    let args = &pod["containers"][0]["args"];
    assert_eq!(
        (args[2].as_str(), args[3].as_str()),
        (Some("--log.format"), Some("json"))
    );
    let claim = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .expect("the state volume is the claim");
    assert!(by_name(&docs, "PersistentVolumeClaim", claim).is_some());
    // With basic auth only /-/healthy answers without a password.
    let readiness = &pod["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some("/-/healthy"));
    assert_eq!(readiness["scheme"].as_str(), Some("HTTP"));
    assert_config_passes(&docs, &dir.join("root"));

    let tls = write(&dir, "tls.yaml", "webConfig: { tls: true }\n");
    let docs = documents(&render(&[repo(ALL_ON), tls]));
    let c = &only(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe]["httpGet"]["scheme"].as_str(),
            Some("HTTPS"),
            "{probe}"
        );
    }
    let endpoint = &only(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["scheme"].as_str(), Some("https"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Must show: a value the chart needs and does not have stops the render
/// with the chart's message, as helm would.
#[test]
fn the_chart_refuses_an_empty_secret_value_and_an_unknown_log_format() {
    let dir = scratch("chart-required");
    for (values, message) in [
        (
            "auth:\n  secrets:\n    redis-password: \"\"\n",
            "auth.secrets.redis-password: give the value",
        ),
        ("log:\n  format: xml\n", "log.format: logfmt or json"),
    ] {
        let values = write(&dir, "values.yaml", values);
        let out = run(Command::new("go")
            .current_dir(repo("."))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .args(["run", "./deploy/helm/render", "-f"])
            .arg(&values)
            .arg(CHART));
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(message),
            "{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Must show: the chart's appVersion and the manifests' image tag are the
/// crate's version, so that a release bumps them together.
#[test]
fn the_image_versions_are_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let chart: Value = serde_yaml::from_str(&read(&format!("{CHART}/Chart.yaml"))).unwrap();
    assert_eq!(chart["appVersion"].as_str(), Some(version));
    let docs = manifests();
    let image = only(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert_eq!(
        image.rsplit_once(':').map(|(_, tag)| tag),
        Some(version),
        "{image}"
    );
}
