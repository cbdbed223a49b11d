use super::*;

/// Three datacenters: westus, eastus, westeurope.
pub(super) fn dcs() -> Vec<Datacenter> {
    [
        "westus@37.4,-122.1",
        "eastus@37.4,-79.4",
        "westeurope@52.4,4.9",
    ]
    .iter()
    .map(|s| parse_datacenter(s).expect("dc"))
    .collect()
}

#[test]
fn primaries_spread_and_standbys_are_in_another_datacenter() {
    let t = Topology::new("c".into(), dcs(), 4).expect("topology");
    let primaries: Vec<_> = t.partitions.iter().map(|p| p.primary.as_str()).collect();
    assert_eq!(primaries, ["westus", "eastus", "westeurope", "westus"]);
    for p in &t.partitions {
        assert_ne!(p.primary, p.sync_standby);
    }
    assert_eq!(t.partitions[0].sync_standby, "eastus");
    assert_eq!(t.partitions[2].sync_standby, "eastus");
}

#[test]
fn the_last_datacenter_serving_reads_is_not_drained() {
    let mut t = Topology::new("c".into(), dcs(), 4).expect("topology");
    t.set_drained("westus", true).expect("drain westus");
    t.set_drained("eastus", true).expect("drain eastus");
    let last = t.set_drained("westeurope", true);
    assert!(matches!(last, Err(Error::Conflict(_))), "{last:?}");
    assert!(!t.datacenter("westeurope").expect("dc").drained);
    // Draining one already drained, or undraining, is always allowed.
    t.set_drained("westus", true).expect("again");
    t.set_drained("eastus", false).expect("undrain");
    t.set_drained("westeurope", true)
        .expect("now eastus serves");
    assert!(matches!(
        t.set_drained("nowhere", true),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn bad_topologies_are_refused() {
    assert!(matches!(
        Topology::new("c".into(), dcs()[..1].to_vec(), 4),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Topology::new("c".into(), dcs(), 0),
        Err(Error::Invalid(_))
    ));
    let mut twice = dcs();
    twice.push(twice[0].clone());
    assert!(
        matches!(Topology::new("c".into(), twice, 2), Err(Error::Invalid(m)) if m.contains("twice"))
    );
}

/// Partition 0 with `primary` and `sync_standby`, whose terms started at (term, first
/// lsn) `starts` (the protocol's tests share it).
pub(crate) fn partition(primary: &str, sync_standby: &str, starts: &[(u64, u64)]) -> Partition {
    Partition {
        id: 0,
        primary: primary.into(),
        term: starts.last().map_or(1, |s| s.0),
        sync_standby: sync_standby.into(),
        term_starts: starts
            .iter()
            .map(|&(term, first_lsn)| TermStart { term, first_lsn })
            .collect(),
    }
}

fn with_starts(starts: &[(u64, u64)]) -> Partition {
    partition("a", "b", starts)
}

#[test]
fn a_token_keeps_what_its_history_still_holds() {
    // Planned failover: term 2 from lsn 11; tokens of either term stand.
    let planned = with_starts(&[(1, 1), (2, 11)]);
    assert_eq!(planned.kept_of_token(1, 10), 10);
    assert_eq!(planned.kept_of_token(2, 15), 15);
    // Lossy promotion: term 3 from lsn 8 replaced term 2's entries from 8 on.
    let lossy = with_starts(&[(1, 1), (2, 5), (3, 8)]);
    assert_eq!(lossy.kept_of_token(2, 12), 7);
    assert_eq!(lossy.kept_of_token(2, 6), 6);
    // A restore in place brought back a history that never had term 2.
    let restored = with_starts(&[(1, 1), (3, 101)]);
    assert_eq!(restored.kept_of_token(2, 95), 0);
    assert_eq!(restored.kept_of_token(1, 120), 100);
}

#[test]
fn diverged_is_exactly_an_old_term_at_or_past_a_later_terms_start() {
    let p = with_starts(&[(1, 1), (2, 5), (3, 9)]);
    for term in 0..=4u64 {
        for lsn in 0..=12u64 {
            let later_start = p
                .term_starts
                .iter()
                .find(|s| s.term > term)
                .map(|s| s.first_lsn);
            let expected = later_start.is_some_and(|start| lsn >= start);
            assert_eq!(
                p.diverged(crate::log::Position { term, lsn }),
                expected,
                "term {term} lsn {lsn}"
            );
        }
    }
    // A later term that started lower than an earlier one (after a lossy promotion).
    let q = with_starts(&[(1, 1), (2, 50), (3, 20)]);
    assert!(q.diverged(crate::log::Position { term: 1, lsn: 30 }));
    // Spot checks of what that means.
    assert!(!p.diverged(crate::log::Position { term: 1, lsn: 4 }));
    assert!(p.diverged(crate::log::Position { term: 1, lsn: 5 }));
    assert!(!p.diverged(crate::log::Position { term: 3, lsn: 12 }));
}

/// `check` of a topology that `edit` made inconsistent: the message it refuses with.
fn refused(edit: impl FnOnce(&mut Topology)) -> String {
    let mut t = Topology::new("c".into(), dcs(), 3).expect("topology");
    t.tenants.insert(
        "contoso".into(),
        TenantPlacement {
            id: "t1".into(),
            partition: 1,
        },
    );
    t.check().expect("a new topology is consistent");
    edit(&mut t);
    match t.check() {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?} for {t:#?}"),
    }
}

#[test]
fn check_refuses_a_primary_or_standby_that_is_not_a_declared_datacenter() {
    let m = refused(|t| t.partitions[2].primary = "nowhere".into());
    assert_eq!(
        m,
        r#"partitions[2].primary: datacenter "nowhere" is not declared"#
    );
    let m = refused(|t| t.partitions[1].sync_standby = "nowhere".into());
    assert_eq!(
        m,
        r#"partitions[1].sync_standby: datacenter "nowhere" is not declared"#
    );
}

#[test]
fn check_refuses_a_sync_standby_in_the_primarys_datacenter() {
    let m = refused(|t| t.partitions[0].sync_standby = t.partitions[0].primary.clone());
    assert!(m.starts_with("partitions[0].sync_standby: "), "{m}");
}

#[test]
fn check_refuses_a_term_raised_without_its_start() {
    let m = refused(|t| t.partitions[1].term = 2);
    assert!(m.starts_with("partitions[1].term: "), "{m}");
    let m = refused(|t| t.partitions[1].term_starts.clear());
    assert!(m.starts_with("partitions[1].term: "), "{m}");
}

#[test]
fn check_refuses_term_starts_out_of_order_or_at_lsn_0() {
    let m = refused(|t| {
        t.partitions[0].fence_from(5);
        t.partitions[0].term_starts.swap(0, 1);
        t.partitions[0].term = 1;
    });
    assert!(m.starts_with("partitions[0].term_starts[1]: "), "{m}");
    let m = refused(|t| t.partitions[0].term_starts[0].first_lsn = 0);
    assert!(m.starts_with("partitions[0].term_starts[0]: "), "{m}");
}

#[test]
fn check_refuses_a_partition_listed_twice() {
    let m = refused(|t| t.partitions[2].id = 0);
    assert!(m.starts_with("partitions[2].id: "), "{m}");
}

#[test]
fn check_refuses_a_tenant_on_an_undeclared_partition() {
    let m = refused(|t| t.tenants.get_mut("contoso").expect("tenant").partition = 7);
    assert_eq!(
        m,
        r#"tenants["contoso"].partition: partition 7 is not declared"#
    );
}

#[test]
fn check_refuses_datacenters_named_twice_badly_or_placed_off_the_globe() {
    let m = refused(|t| t.datacenters[2].name = "westus".into());
    assert!(m.starts_with("datacenters[2].name: "), "{m}");
    let m = refused(|t| {
        t.datacenters.push(Datacenter {
            name: "../x".into(),
            location: Location { lat: 0.0, lon: 0.0 },
            drained: false,
            endpoint: None,
            http_endpoint: None,
        })
    });
    assert!(m.starts_with("datacenters[3].name: "), "{m}");
    let m = refused(|t| t.datacenters[1].location.lat = 91.0);
    assert!(m.starts_with("datacenters[1].location: "), "{m}");
    let m = refused(|t| t.datacenters.clear());
    assert!(m.starts_with("datacenters: "), "{m}");
}

/// What the code itself makes of a topology passes: failovers, fencing, re-designation.
#[test]
fn check_passes_what_failover_fencing_and_redesignation_make() {
    let mut t = Topology::new("c".into(), dcs(), 3).expect("topology");
    t.partitions[0].switch_primary("eastus", "westus", 11);
    t.partitions[0].fence_from(20);
    t.partitions[0].set_sync_standby("westeurope");
    t.partitions[0].fence_from(8);
    t.datacenters[2].drained = true;
    t.check().expect("consistent");
}

#[test]
fn distance_orders_datacenters() {
    let d = dcs();
    let sf = Location {
        lat: 37.7,
        lon: -122.4,
    };
    assert_eq!(nearest(&sf, d.iter()).expect("some").name, "westus");
    let paris = Location {
        lat: 48.8,
        lon: 2.3,
    };
    assert_eq!(nearest(&paris, d.iter()).expect("some").name, "westeurope");
}

#[test]
fn the_file_control_plane_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let a = crate::topology::FileControlPlane::at(dir.path());
    let b = crate::topology::FileControlPlane::at(dir.path());
    crate::topology::conformance::conformance(&a, &b);
}
