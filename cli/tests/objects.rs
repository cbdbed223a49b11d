//! dirctl through the real binary: every object type's lifecycle, nested groups, regions.
#![allow(clippy::unwrap_used)]

mod util;

use util::Cluster;

#[test]
fn groups_hold_nested_members() {
    let c = Cluster::new();
    let u = c.create_user("m@contoso.com");
    let g1 = c.ok(&[
        "group",
        "create",
        "--tenant",
        "contoso",
        "--display-name",
        "inner",
    ])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let g2 = c.ok(&[
        "group",
        "create",
        "--tenant",
        "contoso",
        "--display-name",
        "outer",
    ])["object"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.ok(&["group", "add-member", "--tenant", "contoso", &g1, &u]);
    c.ok(&["group", "add-member", "--tenant", "contoso", &g2, &g1]);
    c.fails(&["group", "add-member", "--tenant", "contoso", &g2, &g1], 4);
    let m = c.ok(&[
        "group", "members", "--tenant", "contoso", &g2, "--region", "eastus",
    ]);
    assert_eq!(m["objects"][0]["id"], g1.as_str());
    c.ok(&["group", "remove-member", "--tenant", "contoso", &g1, &u]);
    let m = c.ok(&[
        "group", "members", "--tenant", "contoso", &g1, "--region", "eastus",
    ]);
    assert_eq!(m["objects"].as_array().unwrap().len(), 0);
    c.fails(
        &["group", "remove-member", "--tenant", "contoso", &g1, &u],
        3,
    );
}

#[test]
fn every_object_type_can_be_created_read_updated_and_deleted() {
    let c = Cluster::new();
    for (noun, args) in [
        (
            "user",
            vec!["--upn", "crud@contoso.com", "--display-name", "Crud"],
        ),
        ("group", vec!["--display-name", "G"]),
        ("app", vec!["--display-name", "App"]),
        (
            "sp",
            vec![
                "--app-id",
                "00000000-0000-4000-8000-00000000000a",
                "--display-name",
                "SP",
            ],
        ),
        (
            "device",
            vec![
                "--display-name",
                "DEV-1",
                "--set",
                "operatingSystem=Windows",
            ],
        ),
    ] {
        let mut a = vec![noun, "create", "--tenant", "contoso"];
        a.extend(args);
        let id = c.ok(&a)["object"]["id"].as_str().unwrap().to_string();
        let v = c.ok(&[
            noun,
            "update",
            "--tenant",
            "contoso",
            &id,
            "--display-name",
            "Renamed",
        ]);
        assert_eq!(v["object"]["displayName"], "Renamed");
        let v = c.ok(&[
            noun, "get", "--tenant", "contoso", &id, "--region", "eastus",
        ]);
        assert_eq!(v["displayName"], "Renamed");
        assert_eq!(
            c.ok(&[noun, "list", "--tenant", "contoso", "--region", "eastus"])["objects"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        c.ok(&[noun, "delete", "--tenant", "contoso", &id]);
        c.fails(
            &[
                noun, "get", "--tenant", "contoso", &id, "--region", "eastus",
            ],
            3,
        );
    }
}

#[test]
fn regions_take_southern_and_western_coordinates_and_refuse_impossible_ones() {
    let c = Cluster::new();
    let id = c.create_user("sydney@contoso.com");
    c.ok(&["sync"]);
    c.ok(&[
        "user",
        "get",
        "--tenant",
        "contoso",
        &id,
        "--region",
        "-33.9,151.2",
    ]);
    let r = c.fails(
        &[
            "user", "get", "--tenant", "contoso", &id, "--region", "100,0",
        ],
        2,
    );
    assert!(r.stderr.contains("latitude -90..90"), "{}", r.describe());
    // A datacenter's name as a region, in any letter case.
    assert_eq!(
        c.user_get(&id, &["--region", "WestEurope"])["@geodir.servedBy"]["datacenter"],
        "westeurope"
    );
    // Tenant names are unique whatever their letter case.
    let r = c.fails(&["tenant", "create", "Contoso"], 4);
    assert!(
        r.stderr.contains("tenant contoso already exists"),
        "{}",
        r.describe()
    );
}
