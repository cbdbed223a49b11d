//! Backup figures: create and restore throughput beside tar and zstd. (Named `backups`, not
//! `backup`, so that it does not shadow the `backup` crate it measures.)

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use engine::directory::{self, ObjectType, Txn};
use serde_json::Value;

use super::{cluster, report, user, Figure};

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn sh(script: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(st.success(), "{script}");
    t.elapsed().as_secs_f64()
}

/// Writes 4,000 users with 2,000 characters of text each (data that compresses like real
/// attributes do, not like zeros), numbered from `from`, in 8 entries; returns the next number.
pub(super) fn write_text_users(c: &mut engine::cluster::Cluster, tid: &str, from: usize) -> usize {
    let now = "2026-11-29T00:00:00Z";
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ from as u64;
    let mut text = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                b"abcdefghijklmnopqrstuvwxyz  eeeaaoo"[(seed >> 33) as usize % 35] as char
            })
            .collect()
    };
    let mut i = from;
    for _ in 0..8 {
        let objs: Vec<_> = (i..i + 500)
            .map(|k| {
                // 2,000 characters of text, in two fields of at most 1,024.
                let mut u = user(k);
                u.insert("jobTitle".into(), Value::from(text(1000)));
                u.insert("department".into(), Value::from(text(1000)));
                u
            })
            .collect();
        i += 500;
        c.write(0, None, |r| {
            let mut x = Txn::new(r);
            for o in objs {
                directory::create(&mut x, tid, ObjectType::User, o, now)?;
            }
            Ok((x.into_ops(), ()))
        })
        .unwrap();
    }
    i
}

/// Backup create and restore MB/s on `mb` MB of directory data (checkpoint bytes), beside
/// `tar -c | zstd -3` and `zstd -d | tar -x` of the same checkpoint files.
pub(super) fn backup_throughput(dir: &Path, mb: u64) -> Vec<Value> {
    let (mut c, tid) = cluster(&dir.join("b"));
    let mut i = 0;
    let cp = dir.join("b-checkpoint");
    loop {
        i = write_text_users(&mut c, &tid, i);
        let _ = std::fs::remove_dir_all(&cp);
        c.checkpoint_partition(0, &cp).unwrap();
        if dir_bytes(&cp) >= mb << 20 {
            break;
        }
    }
    let bytes = dir_bytes(&cp) as f64 / (1 << 20) as f64;
    let dest = dir.join("b-backups");
    let t = Instant::now();
    let opts = backup::CreateOptions {
        dest: dest.clone(),
        force: true,
        now: chrono::Utc::now(),
        sign: None,
    };
    let made = backup::create(&mut c, &opts, &mut |_, _| {}).unwrap();
    let ours = bytes / t.elapsed().as_secs_f64();
    let backup::Created::New(_, archive) = made else {
        panic!("no backup made")
    };
    let base_tar = dir.join("b-base.tar.zst");
    let base = bytes
        / sh(&format!(
            "tar -c -C {} . | zstd -3 -q -f -o {}",
            cp.display(),
            base_tar.display()
        ));
    let t = Instant::now();
    backup::restore_to(&archive, &dir.join("b-restored"), backup::Limits::default()).unwrap();
    let ours_r = bytes / t.elapsed().as_secs_f64();
    let out = dir.join("b-base-out");
    std::fs::create_dir_all(&out).unwrap();
    let base_r = bytes
        / sh(&format!(
            "zstd -d -q -c {} | tar -x -C {}",
            base_tar.display(),
            out.display()
        ));
    println!("backup data: {bytes:.0} MB of checkpoint files ({i} users)");
    vec![
        report(&Figure {
            name: "backup create",
            unit: "MB/s",
            value: ours,
            baseline_name: "tar -c | zstd -3, same files",
            baseline: base,
            goal: "ratio >= 0.8",
        }),
        report(&Figure {
            name: "backup restore (verify + 3 DCs)",
            unit: "MB/s",
            value: ours_r,
            baseline_name: "zstd -d | tar -x, same files",
            baseline: base_r,
            goal: "ratio >= 0.8",
        }),
    ]
}
