//! The web UI in a real headless Chromium against the lab's real servers:
//! what the pages show after a sentinel failover and after a cluster shard
//! failure, checked against what the lab and the API say, with no console
//! error on any page. Screenshots go to `target/ui-screenshots/`.

mod browser;
mod support;

use std::time::Duration;

use browser::{screenshot_path, Browser};
use redis_ha_lab::{Cluster, ClusterOpts, SentinelGroup, SentinelOpts, SimCluster, SimOpts};
use serde_json::{json, Value};
use support::{cluster_deployment, sentinel_deployment, Agent, CANARY};

const LONG: Duration = Duration::from_secs(40);
/// How long a page may take to show what the API already says (the pages
/// read the API again every 1 to 5 seconds).
const SHOWN: Duration = Duration::from_secs(12);

/// `s` as a JavaScript string literal.
fn js(s: &str) -> String {
    json!(s).to_string()
}

/// `s` as one path segment: every byte but letters, digits and `-._~`
/// percent-encoded, as the pages' `encodeURIComponent` does.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path of a failover's page, its id as one percent-encoded segment.
fn failover_path(id: &str) -> String {
    format!("/ui/failovers/{}", segment(id))
}

/// A deployment name that is markup: the pages must show it as text.
const HOSTILE: &str = "c<i>x</i>&'";

/// Checks that `page` shows [`HOSTILE`] as text and nowhere as an element,
/// with no console error, and saves a screenshot named `shot`.
fn shows_the_name_cleanly(browser: &mut Browser, page: &str, shot: &str) {
    let as_text = format!(
        "document.querySelector('main').innerText.includes({}) && !document.querySelector('main i')",
        js(HOSTILE)
    );
    assert_eq!(browser.eval(&as_text), true, "{page}: the name as text");
    assert_no_errors(browser, page);
    browser.screenshot(&screenshot_path(shot));
}

fn assert_no_errors(browser: &mut Browser, page: &str) {
    let errors = browser.errors();
    assert!(
        errors.is_empty(),
        "{page}: errors in the console: {errors:#?}"
    );
}

/// Opens `url`, which names nothing the API knows: the page must show the
/// API's `message`, not a blank page.
fn shows_the_api_error(browser: &mut Browser, url: &str, message: &str) {
    browser.open(url);
    let error = browser.eval("document.querySelector('main').dataset.error");
    assert!(
        error.as_str().unwrap_or("").contains(message),
        "{url}: {error}"
    );
}

/// Must show the failover page as the agent recorded it: every mark with
/// its reporter, every phase as a bar, the canary's and the two masters'
/// windows, and the new master Sentinel names; the page follows a failover
/// in progress to its end by itself.
#[test]
fn failover_page_shows_a_sentinel_failover() {
    let group = SentinelGroup::start(SentinelOpts::default());
    let agent = Agent::start_full(
        &format!(
            "{}{CANARY}",
            sentinel_deployment("s", &[group.sentinels[0].addr()])
        ),
        "timelines:\n  clients_after: 1s\n",
        &[],
    );
    agent.wait_metrics("subscriptions up and replicas linked", LONG, |m| {
        m.find("redis_ha_sentinel_subscription_up", &[("deployment", "s")])
            .filter(|s| s.value == 1.0)
            .count()
            == 3
            && m.find("redis_ha_replica_link_up", &[("deployment", "s")])
                .count()
                == 2
    });
    let mut browser = Browser::start();
    let old_port = group.master_port().unwrap();
    let old = group.node(old_port).addr();
    group.node(old_port).freeze();

    // Opened while in progress when the test is quick enough to see it so;
    // either way the page is not reloaded until it shows the end.
    let mut id = String::new();
    agent.wait_until("a timeline of the failover", LONG, |a| {
        if let Some(t) = a.failovers("s").first() {
            id = t["id"].as_str().unwrap().to_string();
        }
        !id.is_empty()
    });
    let page = format!("{}{}", agent.base, failover_path(&id));
    browser.open(&page);
    let opened_open =
        browser.eval("document.body.innerText.includes('in progress')") == json!(true);
    eprintln!("failover page opened while the failover was in progress: {opened_open}");

    let new_port = group.wait_for_new_master(old_port, LONG);
    let new = group.node(new_port).addr();
    agent.ended_failover("s", "the failover's timeline to end", LONG, |t| {
        t["id"] == id.as_str()
    });
    browser.wait_for(
        "the page to show the end without a reload",
        &format!(
            "document.querySelector('#new-master')?.dataset.node === {} && document.body.innerText.includes('completed')",
            js(&new)
        ),
        SHOWN,
    );
    // The old master back: it still says master until the sentinels turn it.
    group.node(old_port).resume();
    let t = agent.ended_failover(
        "s",
        "the canary's report, the two-masters window and the clients left behind",
        LONG,
        |t| {
            t["id"] == id.as_str()
                && !t["canary"]["first_ack_after"].is_null()
                && !t["two_masters"]["end"].is_null()
                && !t["clients_left_behind"].is_null()
        },
    );
    assert_eq!(
        t["new_master"],
        new.as_str(),
        "the API names the lab's new master"
    );
    assert_eq!(t["old_master"], old.as_str());
    assert_eq!(t["outcome"], "completed");
    assert_no_errors(&mut browser, &page);
    // An ended failover's page is not read again: load it anew.
    browser.open(&page);

    let shown = browser.eval(
        "({ newMaster: document.querySelector('#new-master').textContent,
            marks: [...document.querySelectorAll('tr[data-mark]')].map(r => [r.dataset.mark, r.dataset.reporter]),
            phases: [...document.querySelectorAll('tr[data-phase]')].map(r => [r.dataset.phase, +r.dataset.seconds]),
            markDots: document.querySelectorAll('svg.timeline g.mark circle').length,
            phaseBars: document.querySelectorAll('svg.timeline g.phase rect').length,
            windows: [...document.querySelectorAll('svg.timeline g.window')].map(g => g.getAttribute('class')),
            text: document.body.innerText })",
    );
    eprintln!("the page shows: {shown:#}");
    assert_eq!(shown["newMaster"], new.as_str());
    let api_marks: Vec<Value> = t["marks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["name"], m["reporter"]]))
        .collect();
    assert_eq!(
        shown["marks"],
        json!(api_marks),
        "every mark and who reported it"
    );
    for name in ["sdown", "odown", "elected", "promoted", "switched", "ended"] {
        assert!(
            api_marks.iter().any(|m| m[0] == name),
            "a sentinel failover has {name}: {t}"
        );
    }
    assert!(
        api_marks.iter().any(|m| m[1] != "poll"),
        "sentinels are named as reporters"
    );
    assert_eq!(shown["markDots"], json!(api_marks.len()), "a dot per mark");
    let phases = t["phases"].as_object().unwrap();
    let shown_phases = shown["phases"].as_array().unwrap();
    assert_eq!(
        shown_phases.len(),
        phases.len(),
        "{shown_phases:?} vs {phases:?}"
    );
    for p in shown_phases {
        let api = phases[p[0].as_str().unwrap()].as_f64().unwrap();
        assert!((p[1].as_f64().unwrap() - api).abs() < 1e-9, "{p}: {api}");
    }
    assert_eq!(
        shown["phaseBars"],
        json!(phases.len()),
        "a bar per phase: each ends at a mark present"
    );
    assert_eq!(
        shown["windows"],
        json!(["window two-masters", "window canary"]),
        "the two masters' and the canary's windows"
    );
    let text = shown["text"].as_str().unwrap();
    let lost = t["canary"]["lost_writes"].as_u64().unwrap();
    assert!(
        text.contains(&format!("Canary: lost writes\t{lost}")),
        "{lost} lost writes shown: {text}"
    );
    assert!(text.contains("completed") && text.contains(&old), "{text}");
    let writes = t["two_masters"]["writes"].as_u64().unwrap();
    assert!(
        text.contains(&format!("Two masters: writes taken by the other\t{writes}")),
        "{writes} writes to the returning master shown: {text}"
    );
    // No application was connected; the agent's poller and canary are not counted.
    let left = &t["clients_left_behind"];
    assert_eq!(
        (&left["count"], &left["node"]),
        (&json!(0), &json!(old)),
        "{left}"
    );
    assert!(
        text.contains(&format!("Clients left behind\n\n0 on {old}")),
        "{text}"
    );
    assert_no_errors(&mut browser, &page);
    browser.screenshot(&screenshot_path("failover-sentinel"));

    // The overview lists it, linked, with the masters.
    browser.open(&format!("{}/", agent.base));
    let row = browser.eval(&format!(
        "(() => {{ const r = document.querySelector(`tr[data-failover=\"${{CSS.escape({})}}\"]`);
                   return r && {{ href: r.querySelector('a').getAttribute('href'), text: r.innerText }}; }})()",
        js(&id)
    ));
    assert_eq!(row["href"], failover_path(&id).as_str(), "{row}");
    assert!(row["text"].as_str().unwrap().contains(&new), "{row}");
    assert_no_errors(&mut browser, "/");
    browser.screenshot(&screenshot_path("overview-sentinel"));

    shows_the_api_error(
        &mut browser,
        &format!("{}/ui/failovers/s%3Anone%3A1", agent.base),
        "no failover with this id",
    );
    let errors = browser.errors();
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("\"network\"") && e.contains("404")),
        "only the API's 404: {errors:#?}"
    );
}

/// The slots the lab gives master `m` of `masters`: `[start, end]`.
fn lab_slots(m: usize, masters: usize) -> [u64; 2] {
    [
        (m * 16384 / masters) as u64,
        ((m + 1) * 16384 / masters - 1) as u64,
    ]
}

/// Must mark exactly the failed shard's slots as not served on the slot
/// map, strip and table alike; the overview and topology pages render with
/// the shard down and no console error. The deployment's name is markup,
/// which every page must show as text.
#[test]
fn slot_map_marks_exactly_the_slots_of_a_failed_shard() {
    let cluster = Cluster::start(ClusterOpts::default());
    let agent = Agent::start(&cluster_deployment(HOSTILE, &[cluster.nodes[0].addr()]));
    let slots_api = format!("/api/v1/clusters/{}/slots", segment(HOSTILE));
    agent.wait_until("every slot covered", LONG, |a| {
        let s = a.json(&slots_api);
        s["uncovered"] == 0 && s["ranges"].as_array().unwrap().len() == 3
    });
    // Master 1 and its replica (ClusterOpts::default: 3 masters, 1 replica each).
    let (master, replica) = (&cluster.nodes[1], &cluster.nodes[4]);
    let lost = lab_slots(1, 3);
    master.freeze();
    replica.freeze();
    let frozen = [master.addr(), replica.addr()];
    agent.wait_until("the shard's slots unserved and its nodes down", LONG, |a| {
        let s = a.json(&slots_api);
        let unserved: Vec<_> = s["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "fail" || r["state"] == "uncovered")
            .collect();
        let topo = a.json("/api/v1/topology");
        let down = topo["deployments"][0]["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["nodes"].as_array().unwrap())
            .filter(|n| n["up"] == false)
            .count();
        unserved.len() == 1 && down == 2
    });
    let mut browser = Browser::start();

    let page = format!("{}/ui/clusters/{}", agent.base, segment(HOSTILE));
    let load = browser.open(&page);
    eprintln!("slot map rendered in {load:?}");
    let shown = browser.eval(
        "[...document.querySelectorAll('table.ranges tr[data-state]')]
            .map(r => ({ start: +r.dataset.start, end: +r.dataset.end, state: r.dataset.state, text: r.innerText }))",
    );
    eprintln!("ranges shown: {shown:#}");
    let ranges = shown.as_array().unwrap();
    let unserved: Vec<[u64; 2]> = ranges
        .iter()
        .filter(|r| r["state"] == "fail" || r["state"] == "uncovered")
        .map(|r| [r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap()])
        .collect();
    assert_eq!(unserved, [lost], "exactly the failed shard's slots");
    let row = ranges.iter().find(|r| r["start"] == lost[0]).unwrap();
    let text = row["text"].as_str().unwrap();
    assert!(
        frozen.iter().all(|n| text.contains(n.as_str())),
        "the range names its master and replica: {text}"
    );
    let served: u64 = ranges
        .iter()
        .map(|r| r["end"].as_u64().unwrap() - r["start"].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(served, 16384, "the table covers every slot once");

    // The strip: red across the failed range, none elsewhere.
    let red = browser.eval(&format!(
        "(() => {{
            const c = document.getElementById('slot-strip');
            const g = c.getContext('2d');
            const row = g.getImageData(0, Math.floor(c.height * 0.7), c.width, 1).data;
            const inside = [], outside = [];
            for (let x = 0; x < c.width; x++) {{
                const slot = x / c.width * 16384;
                const isRed = row[4 * x] > 180 && row[4 * x + 1] < 90 && row[4 * x + 2] < 90;
                if (slot > {} + 40 && slot < {} - 40) inside.push(isRed);
                else if (slot < {} - 40 || slot > {} + 40) outside.push(isRed);
            }}
            return {{ inside: inside.filter(Boolean).length / inside.length,
                      outside: outside.filter(Boolean).length }};
        }})()",
        lost[0], lost[1], lost[0], lost[1]
    ));
    eprintln!("red on the strip: {red}");
    assert!(red["inside"].as_f64().unwrap() > 0.5, "{red}");
    assert_eq!(red["outside"], 0, "{red}");
    shows_the_name_cleanly(&mut browser, &page, "slots-cluster");

    let overview = format!("{}/", agent.base);
    browser.open(&overview);
    let text = browser.eval("document.querySelector('section[data-deployment]').innerText");
    let uncovered = lost[1] - lost[0] + 1;
    assert!(
        text.as_str()
            .unwrap()
            .contains(&format!("{uncovered} uncovered slot(s)")),
        "{text}"
    );
    shows_the_name_cleanly(&mut browser, &overview, "overview-cluster");

    let topology = format!("{}/ui/topology", agent.base);
    browser.open(&topology);
    let down = browser.eval(
        "[...document.querySelectorAll('table.nodes tr[data-node]')].filter(r => r.dataset.up === 'false').map(r => r.dataset.node).sort()",
    );
    let mut want = frozen.to_vec();
    want.sort();
    assert_eq!(down, json!(want), "the frozen nodes shown down");
    assert_eq!(
        browser.eval("document.querySelectorAll('table.nodes tr[data-node]').length"),
        6
    );
    shows_the_name_cleanly(&mut browser, &topology, "topology-cluster");

    // The shard's failover, open for good (no replica left to promote):
    // shown in progress, read again every second, its id full of markup.
    let open = agent.failovers(&segment(HOSTILE));
    let t = open
        .iter()
        .find(|t| t["outcome"].is_null())
        .unwrap_or_else(|| panic!("an open cluster failover: {open:?}"));
    let page = format!("{}{}", agent.base, failover_path(t["id"].as_str().unwrap()));
    browser.open(&page);
    browser.wait_for(
        "the page read again",
        "+document.querySelector('main').dataset.renders >= 2",
        SHOWN,
    );
    let text = browser.eval("document.querySelector('main').innerText");
    let text = text.as_str().unwrap();
    assert!(
        text.contains("in progress") && text.contains("Poll resolution"),
        "{text}"
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('tr[data-mark]').length"),
        t["marks"].as_array().unwrap().len(),
        "{t}"
    );
    shows_the_name_cleanly(&mut browser, &page, "failover-cluster-open");

    shows_the_api_error(
        &mut browser,
        &format!("{}/ui/clusters/nope", agent.base),
        "no cluster deployment with this name",
    );
}

/// Every page of a 1000-node cluster (the simulator: 500 masters, 500
/// replicas) shows every shard, node and range, without an error; prints
/// how long each took, from navigation to the page drawn (a debug build
/// on a loaded machine: the figure to compare is a release build's).
#[test]
fn pages_of_a_1000_node_cluster_show_every_shard_and_node() {
    let sim = SimCluster::start(SimOpts {
        masters: 500,
        replicas_per_master: 1,
        ..SimOpts::default()
    });
    let addrs = sim.node_addrs();
    // The default timing: the simulator runs in this process, beside a
    // browser, and the tests' fast polls (250 ms timeouts) time out all at
    // once when the machine is busy, leaving no view to draw the slots from.
    let agent = Agent::start_full(
        &cluster_deployment("big", &addrs[..1]),
        "poll_interval: 1s\ntimeout: 500ms\n",
        &[],
    );
    agent.wait_until(
        "every node in the topology and every slot covered",
        Duration::from_secs(120),
        |a| {
            let topo = a.json("/api/v1/topology");
            let nodes = topo["deployments"][0]["shards"].as_array().map_or(0, |s| {
                s.iter().map(|s| s["nodes"].as_array().unwrap().len()).sum()
            });
            nodes == 1000 && a.json("/api/v1/clusters/big/slots")["uncovered"] == 0
        },
    );
    let mut browser = Browser::start();
    let mut took = Vec::new();
    for (path, rows, want) in [
        ("/", "section[data-deployment] tr[data-shard]", 500),
        ("/ui/topology", "table.nodes tr[data-node]", 1000),
        ("/ui/clusters/big", "table.ranges tr[data-state]", 500),
    ] {
        let page = format!("{}{path}", agent.base);
        let load = browser.open(&page);
        assert_eq!(
            browser.eval(&format!("document.querySelectorAll({}).length", js(rows))),
            want,
            "{path}"
        );
        assert_no_errors(&mut browser, &page);
        let api = browser.eval(
            "Math.round(Math.max(0, ...performance.getEntriesByType('resource')
                .filter(e => e.name.includes('/api/')).map(e => e.duration)))",
        );
        took.push(format!(
            "{path} {} ms (slowest API call {api} ms)",
            load.as_millis()
        ));
    }
    browser.screenshot(&screenshot_path("slots-1000-nodes"));
    eprintln!("1000 nodes, navigation to rendered: {}", took.join(", "));
}
