//! Promise 8 through the real binary: backups created, verified, pruned; their age reported.
#![allow(clippy::unwrap_used)]

mod util;

use std::io::Read;
use std::path::Path;

use util::backups::{archive, at, backed_up, dest, ok_at, run_at, DAY1};
use util::Cluster;

/// Rewrites an archive entry by entry through `change(name, data)`; `None` drops the entry.
fn rewrite(from: &Path, to: &Path, mut change: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut a = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(from).unwrap()).unwrap());
    let enc = zstd::Encoder::new(std::fs::File::create(to).unwrap(), 3).unwrap();
    let mut b = tar::Builder::new(enc);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if let Some(data) = change(&name, data) {
            let mut h = e.header().clone();
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data.as_slice()).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn promise_8_verify_passes_an_intact_backup_and_names_a_file_with_a_flipped_byte() {
    let c = backed_up();
    let v = c.ok(&["backup", "verify", "2026-12-01", "--dest", &dest(&c)]);
    assert_eq!(v["verified"], true);
    let bad = c.path("flipped.tar.zst");
    let mut flipped = String::new();
    rewrite(&archive(&c, "2026-12-01"), &bad, |name, mut data| {
        if flipped.is_empty() && name.ends_with(".sst") {
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
            flipped = name.to_string();
        }
        Some(data)
    });
    assert!(flipped.starts_with("p0/"), "{flipped}");
    let r = c.fails(&["backup", "verify", bad.to_str().unwrap()], 1);
    assert!(
        r.stderr.contains(&flipped) && r.stderr.contains("checksum mismatch"),
        "{}",
        r.describe()
    );
    // A restore of it is refused and leaves no target behind.
    let to = c.path("restored");
    c.fails(
        &[
            "backup",
            "restore",
            bad.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        1,
    );
    assert!(!to.exists());
    // A flipped byte in the compressed stream itself names the archive.
    let raw = c.path("raw-flip.tar.zst");
    let mut bytes = std::fs::read(archive(&c, "2026-12-01")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&raw, bytes).unwrap();
    let r = c.fails(&["backup", "verify", raw.to_str().unwrap()], 1);
    assert!(r.stderr.contains("raw-flip.tar.zst"), "{}", r.describe());
}

#[test]
fn promise_8_a_second_backup_the_same_day_does_nothing_unless_forced() {
    let c = Cluster::new();
    c.create_user("ada@contoso.com");
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    let first = std::fs::read(archive(&c, "2026-12-01")).unwrap();
    c.create_user("bob@contoso.com");
    let again = ok_at(
        &c,
        "2026-12-01T23:59:00Z",
        &["backup", "create", "--dest", &dest(&c)],
    );
    assert_eq!(again["created"], false);
    assert_eq!(std::fs::read(archive(&c, "2026-12-01")).unwrap(), first);
    let r = run_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    assert!(r.stdout.contains("already exists"), "{}", r.describe());
    let forced = ok_at(
        &c,
        DAY1,
        &["backup", "create", "--dest", &dest(&c), "--force"],
    );
    assert_eq!(forced["created"], true);
    assert_eq!(forced["manifest"]["partitions"][0]["counts"]["objects"], 2);
    let next = ok_at(
        &c,
        "2026-12-02T00:00:01Z",
        &["backup", "create", "--dest", &dest(&c)],
    );
    assert_eq!(next["backup"], "2026-12-02");
    let list = c.ok(&["backup", "list", "--dest", &dest(&c)]);
    let ids: Vec<_> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(ids, vec!["2026-12-01", "2026-12-02"]);
}

#[test]
fn promise_8_prune_keeps_the_daily_and_weekly_backups_it_promises() {
    let c = Cluster::new();
    c.create_user("ada@contoso.com");
    // 2026-12-01 (Tue) .. 2026-12-16 (Wed): ISO weeks 49 (1-6), 50 (7-13), 51 (14-).
    for d in 1..=16 {
        ok_at(
            &c,
            &format!("2026-12-{d:02}T03:00:00Z"),
            &["backup", "create", "--dest", &dest(&c)],
        );
    }
    let r = c.ok(&[
        "backup",
        "prune",
        "--keep-daily",
        "3",
        "--keep-weekly",
        "3",
        "--dest",
        &dest(&c),
    ]);
    assert_eq!(r["removed"].as_array().unwrap().len(), 11);
    let list = c.ok(&["backup", "list", "--dest", &dest(&c)]);
    let ids: Vec<_> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![
            "2026-12-06",
            "2026-12-13",
            "2026-12-14",
            "2026-12-15",
            "2026-12-16"
        ]
    );
    // Zero of each still keeps the newest good backup.
    c.ok(&[
        "backup",
        "prune",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
        "--dest",
        &dest(&c),
    ]);
    let list = c.ok(&["backup", "list", "--dest", &dest(&c)]);
    assert_eq!(list["backups"][0]["id"], "2026-12-16");
    assert_eq!(list["backups"].as_array().unwrap().len(), 1);
}

#[test]
fn promise_8_prune_never_removes_intact_backups_for_a_newer_one_that_changed_on_disk() {
    let c = Cluster::new();
    c.create_user("ada@contoso.com");
    for d in 1..=4 {
        ok_at(
            &c,
            &format!("2026-12-{d:02}T03:00:00Z"),
            &["backup", "create", "--dest", &dest(&c)],
        );
    }
    // A byte of the newest archive rots on disk; its size is unchanged.
    let newest = archive(&c, "2026-12-04");
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    let now = "2026-12-04T10:00:00Z";
    let prune = [
        "backup",
        "prune",
        "--keep-daily",
        "1",
        "--keep-weekly",
        "0",
        "--dest",
        &dest(&c),
    ];
    let r = run_at(&c, now, &prune);
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("2026-12-04") && r.stderr.contains("SHA-256"),
        "{}",
        r.describe()
    );
    let left: Vec<_> = c.ok(&["backup", "list", "--dest", &dest(&c)])["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec!["2026-12-03", "2026-12-04"]);
    ok_at(
        &c,
        now,
        &["backup", "verify", "2026-12-03", "--dest", &dest(&c)],
    );
    // health names the corrupt backup and counts the intact one's age.
    let r = run_at(
        &c,
        now,
        &["health", "--dest", &dest(&c), "--output", "json"],
    );
    assert_ne!(r.code, 0, "{}", r.describe());
    let v = r.json();
    let problems = v["problems"].to_string();
    assert!(problems.contains("backup 2026-12-04 is corrupt"), "{v}");
    assert!(problems.contains("2026-12-03 is 31 hours old"), "{v}");
}

#[test]
fn a_mistyped_backups_folder_or_id_and_a_renamed_archive_are_named_as_such() {
    let c = Cluster::new();
    let missing = c.path("no-such-folder").display().to_string();
    for args in [
        vec!["backup", "list", "--dest", &missing],
        vec!["backup", "verify", "2026-12-01", "--dest", &missing],
        vec!["backup", "prune", "--dest", &missing],
    ] {
        let r = c.fails(&args, 3);
        assert!(r.stderr.contains("does not exist"), "{}", r.describe());
    }
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    let r = c.fails(&["backup", "verify", "2026-12-02", "--dest", &dest(&c)], 3);
    assert!(
        r.stderr.contains("no backup 2026-12-02"),
        "{}",
        r.describe()
    );
    // A good archive copied under another day's name is not that day's backup.
    std::fs::copy(archive(&c, "2026-12-01"), archive(&c, "2026-11-20")).unwrap();
    let r = c.fails(&["backup", "verify", "2026-11-20", "--dest", &dest(&c)], 1);
    assert!(
        r.stderr.contains("holds backup 2026-12-01, not 2026-11-20"),
        "{}",
        r.describe()
    );
}

#[test]
fn promise_8_a_backup_taken_while_a_writer_runs_is_consistent_at_its_recorded_lsn() {
    let c = Cluster::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let (made, written) = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || i < 10 {
                c.create_user(&format!("u{i}@contoso.com"));
                i += 1;
                let _ = tx.send(i);
            }
            i
        });
        // The backup starts once the writer is well under way, and the writer goes on after.
        while rx.recv().unwrap() < 5 {}
        let made = ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (made, w.join().unwrap())
    });
    let lsn = made["manifest"]["partitions"][0]["lsn"].as_u64().unwrap();
    // lsn 1 is the tenant's creation; each user is one entry after it.
    assert!(
        lsn >= 6 && lsn < written as u64 + 1,
        "lsn {lsn}, written {written}"
    );
    assert_eq!(
        made["manifest"]["partitions"][0]["counts"]["objects"],
        lsn - 1
    );
    let to = c.path("restored");
    c.ok(&[
        "backup",
        "restore",
        "2026-12-01",
        "--to",
        to.to_str().unwrap(),
        "--dest",
        &dest(&c),
    ]);
    let n = at(&to);
    assert_eq!(n.lsn(0, "westeurope"), Some(lsn));
    let users = n.ok(&["user", "list", "--tenant", "contoso"]);
    let mut upns: Vec<String> = users["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_string())
        .collect();
    upns.sort();
    let mut want: Vec<String> = (0..lsn - 1).map(|i| format!("u{i}@contoso.com")).collect();
    want.sort();
    assert_eq!(upns, want, "exactly the writes up to the recorded lsn");
}

#[test]
fn promise_10_health_and_metrics_report_the_backup_age() {
    let c = Cluster::new();
    let r = run_at(&c, DAY1, &["health", "--dest", &dest(&c)]);
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(r.stdout.contains("no good backup"), "{}", r.describe());
    ok_at(&c, DAY1, &["backup", "create", "--dest", &dest(&c)]);
    let r = run_at(&c, "2026-12-02T11:00:00Z", &["health", "--dest", &dest(&c)]);
    assert_eq!(r.code, 0, "{}", r.describe());
    let r = run_at(&c, "2026-12-02T12:00:01Z", &["health", "--dest", &dest(&c)]);
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stdout.contains("26 hours old (over 26)"),
        "{}",
        r.describe()
    );
    let m = run_at(
        &c,
        "2026-12-02T10:00:00Z",
        &["metrics", "--dest", &dest(&c)],
    );
    assert_eq!(m.code, 0, "{}", m.describe());
    assert!(
        m.stdout
            .lines()
            .any(|l| l == "geodir_backup_age_seconds 86400"),
        "{}",
        m.describe()
    );
    // Datacenter health and the terms (failovers) too, and the same as JSON.
    std::fs::rename(c.dc_dir("westeurope"), c.path("away")).unwrap();
    c.ok(&["failover", "--yes", "--partition", "0", "--to", "eastus"]);
    let m = run_at(
        &c,
        "2026-12-02T10:00:00Z",
        &["metrics", "--dest", &dest(&c)],
    );
    for line in [
        "geodir_datacenter_up{datacenter=\"westeurope\"} 0",
        "geodir_datacenter_up{datacenter=\"eastus\"} 1",
        "geodir_partition_term{partition=\"0\"} 2",
    ] {
        assert!(
            m.stdout.lines().any(|l| l == line),
            "{line}: {}",
            m.describe()
        );
    }
    let v = ok_at(
        &c,
        "2026-12-02T10:00:00Z",
        &["metrics", "--dest", &dest(&c)],
    );
    let age = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "geodir_backup_age_seconds")
        .unwrap();
    assert_eq!(age["samples"][0]["value"], 86400.0);
}

/// A damaged tar header is reported by the archive, the entry before it and its byte
/// offset, without echoing the header's raw bytes (control characters, invalid UTF-8).
#[test]
fn promise_8_a_damaged_tar_header_is_named_cleanly_by_archive_and_offset() {
    let c = backed_up();
    let mut tar =
        zstd::decode_all(std::fs::File::open(archive(&c, "2026-12-01")).unwrap()).unwrap();
    // The second entry's header follows the first's data, padded to 512 bytes.
    let size = u64::from_str_radix(
        std::str::from_utf8(&tar[124..135])
            .unwrap()
            .trim_matches(|ch: char| ch == '\0' || ch == ' '),
        8,
    )
    .unwrap();
    let first = std::str::from_utf8(&tar[..100])
        .unwrap()
        .trim_end_matches('\0')
        .to_string();
    let second = 512 + size.div_ceil(512) * 512;
    let at = second as usize;
    // Its checksum field: an escape sequence, a bell and bytes that are not UTF-8.
    tar[at + 148..at + 156].copy_from_slice(b"\x07\x1b[31m\xfe\x01");
    let bad = c.path("header.tar.zst");
    std::fs::write(&bad, zstd::encode_all(tar.as_slice(), 3).unwrap()).unwrap();
    for output in ["table", "json"] {
        let r = c.fails(
            &[
                "backup",
                "verify",
                bad.to_str().unwrap(),
                "--output",
                output,
            ],
            1,
        );
        let clean = !r.stderr.contains("\\u{")
            && !r.stderr.contains("\\u00")
            && !r.stderr.contains('\u{fffd}')
            && !r.stderr.contains("[31m")
            && !r.stderr.chars().any(|ch| ch.is_control() && ch != '\n');
        assert!(
            clean
                && r.stderr.contains("header.tar.zst")
                && r.stderr.contains(&first)
                && r.stderr.contains(&format!("byte {second}")),
            "{}",
            r.describe()
        );
    }
}
