//! Property tests: the parsers face whatever a broken, lying or hostile
//! server sends. They must return a value or an error, never panic, and
//! well-formed replies must round-trip.

use std::collections::HashMap;

use proptest::prelude::*;
use redis_ha_exporter::parse::clients::parse_client_list;
use redis_ha_exporter::parse::cluster::{parse_nodes, ClusterInfo};
use redis_ha_exporter::parse::event::{Event, InstanceKind};
use redis_ha_exporter::parse::info::{ReplicationInfo, SentinelInfo};
use redis_ha_exporter::parse::sentinel::{
    parse_ckquorum, MasterEntry, ReplicaEntry, SentinelEntry,
};
use redis_ha_exporter::parse::slot_stats::{parse_slot_stats, Entry};

const FIXTURES: &[&str] = &[
    include_str!("fixtures/sentinel-master-info-replication.txt"),
    include_str!("fixtures/sentinel-replica-info-replication.txt"),
    include_str!("fixtures/cluster-info-ok.txt"),
    include_str!("fixtures/cluster-info-shard-down.txt"),
    include_str!("fixtures/cluster-nodes-ok.txt"),
    include_str!("fixtures/cluster-nodes-shard-down.txt"),
    include_str!("fixtures/sentinel-info.txt"),
    include_str!("fixtures/client-list-master.txt"),
    include_str!("fixtures/valkey-8.1/client-list-master.txt"),
];

fn parse_everything(text: &str) {
    let _ = ReplicationInfo::parse(text);
    let _ = SentinelInfo::parse(text);
    let _ = ClusterInfo::parse(text);
    let _ = parse_nodes(text);
    let _ = parse_ckquorum(text);
    let _ = parse_client_list(text);
}

/// A recorded reply with bytes replaced, cut or duplicated: close enough to
/// real input to reach deep into the parsers.
fn mutated() -> impl Strategy<Value = String> {
    (
        0..FIXTURES.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    )
        .prop_map(|(i, edits)| {
            let mut bytes = FIXTURES[i].as_bytes().to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let at = at.index(bytes.len());
                match op {
                    0 => bytes[at] = byte,
                    1 => bytes.truncate(at),
                    _ => {
                        let tail = bytes[at..].to_vec();
                        bytes.extend(tail);
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        parse_everything(&text);
    }

    #[test]
    fn mutated_replies_never_panic(text in mutated()) {
        parse_everything(&text);
    }

    #[test]
    fn line_shaped_text_never_panics(text in "([0-9a-f]{40} [0-9a-z.:@,\\[\\]<>?-]{0,30} [a-z?,]{0,20} [-0-9a-f]{0,40} [0-9-]{0,5} [0-9-]{0,5} [0-9-]{0,5} [a-z]{0,12}( [0-9<>\\[\\]-]{0,12}){0,4}\n){0,4}") {
        let _ = parse_nodes(&text);
    }

    #[test]
    fn arbitrary_events_never_panic(channel in any::<String>(), payload in any::<String>()) {
        let e = Event::parse(&channel, &payload);
        let _ = e.master_name();
        prop_assert_eq!(e.channel, channel);
    }

    #[test]
    fn event_shaped_payloads_never_panic(
        channel in prop::sample::select(vec!["+sdown", "-sdown", "+odown", "+switch-master", "+new-epoch", "+vote-for-leader", "+selected-slave", "-role-change", "+tilt", "+x"]),
        payload in "((master|slave|sentinel|@|#quorum|[0-9a-z.:/]{0,12}) ){0,12}",
    ) {
        let _ = Event::parse(channel, &payload).master_name();
    }

    #[test]
    fn instance_payloads_round_trip(
        name in "[a-zA-Z0-9_-]{1,20}",
        ip in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        port in 1u16..,
        mport in 1u16..,
    ) {
        let e = Event::parse("+selected-slave", &format!("slave {ip}:{port} {ip} {port} @ {name} 10.0.0.1 {mport}"));
        let i = e.instance.clone().unwrap();
        prop_assert_eq!(i.kind, InstanceKind::Replica);
        prop_assert_eq!(i.addr, format!("{ip}:{port}"));
        prop_assert_eq!(e.master_name(), Some(name.as_str()));
        prop_assert_eq!(i.master.unwrap().1, format!("10.0.0.1:{mport}"));
    }

    #[test]
    fn arbitrary_sentinel_maps_never_panic(map in prop::collection::hash_map(
        prop::sample::select(vec!["name", "ip", "port", "flags", "config-epoch", "quorum", "num-slaves", "num-other-sentinels", "runid", "x"]).prop_map(String::from),
        any::<String>(), 0..10)) {
        let map: HashMap<String, String> = map;
        let _ = MasterEntry::parse(&map);
        let _ = ReplicaEntry::parse(&map);
        let _ = SentinelEntry::parse(&map);
    }

    #[test]
    fn arbitrary_slot_stats_never_panic(entries in prop::collection::vec((
        any::<String>(),
        prop::collection::hash_map(
            prop::sample::select(vec!["key-count", "cpu-usec", "network-bytes-in", "network-bytes-out", "x"]).prop_map(String::from),
            any::<String>(), 0..5)), 0..4)) {
        let entries: Vec<Entry> = entries;
        let _ = parse_slot_stats(&entries);
    }

    #[test]
    fn slot_stats_round_trip(slot in 0u16..16384, keys in any::<u64>(), cpu in prop::option::of(any::<u64>())) {
        let mut stats = HashMap::from([("key-count".to_string(), keys.to_string())]);
        if let Some(c) = cpu {
            stats.insert("cpu-usec".into(), c.to_string());
        }
        let s = parse_slot_stats(&[(slot.to_string(), stats)]).unwrap().remove(0);
        prop_assert_eq!((s.slot, s.keys, s.cpu_usec), (slot, keys, cpu));
    }

    #[test]
    fn cluster_node_lines_round_trip(
        id in "[0-9a-f]{40}",
        port in 1u16..,
        master in any::<bool>(),
        epoch in any::<u64>(),
        ranges in prop::collection::vec((0u16..16384, 0u16..200), 0..5),
    ) {
        let slots: Vec<(u16, u16)> = ranges.iter().map(|&(a, len)| (a, a.saturating_add(len).min(16383))).collect();
        let slot_text: Vec<String> = slots.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
        let line = format!(
            "{id} 10.1.2.3:{port}@{} {} - 0 0 {epoch} connected {}",
            u32::from(port) + 10000,
            if master { "master" } else { "slave" },
            slot_text.join(" ")
        );
        let node = parse_nodes(&line).unwrap().remove(0);
        prop_assert_eq!(node.id, id);
        prop_assert_eq!(node.addr, format!("10.1.2.3:{port}"));
        prop_assert_eq!(node.flags.master, master);
        prop_assert_eq!(node.config_epoch, epoch);
        prop_assert_eq!(node.slots, slots);
    }

    #[test]
    fn replication_offsets_round_trip(offset in any::<u64>(), replica_offset in any::<u64>(), lag in any::<u32>(), port in 1u16..) {
        let text = format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port={port},state=online,offset={replica_offset},lag={lag}\r\nmaster_repl_offset:{offset}\r\n"
        );
        let info = ReplicationInfo::parse(&text).unwrap();
        prop_assert_eq!(info.master_repl_offset, offset);
        prop_assert_eq!(info.replicas[0].offset, replica_offset);
        prop_assert_eq!(info.replicas[0].ack_age_seconds, Some(u64::from(lag)));
        prop_assert_eq!(&info.replicas[0].addr, &format!("10.0.0.2:{port}"));
    }
}
