//! geodir's backups (DESIGN.md promise 8): a daily snapshot of every partition, consistent
//! at a known (term, lsn), packed as one zstd-compressed tar with a manifest of SHA-256
//! checksums; list, verify, prune, restore a whole cluster, restore one object.
//!
//! **Invariant:** this crate never imports `rocksdb`: checkpoints are taken, opened and
//! adopted through `engine` APIs. **Invariant:** an archive is never trusted: it is fully
//! read and checked into a temporary folder beside the target before anything is renamed
//! into place, so a refused restore leaves its target as it was.

pub mod archive;
pub mod error;
pub mod manifest;
pub mod prune;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use engine::cluster::{replica_path, Checkpoints, Cluster, ReplicaId};
use engine::replica::{sync_dir, CheckpointView, Identity, Replica};
use engine::topology::{FileControlPlane, Topology};

pub use archive::Limits;
use error::io;
pub use error::{Error, Result};
pub use manifest::{Manifest, PartitionEntry, Sidecar, ARCHIVE_FORMAT_VERSION};

const PREFIX: &str = "geodir-";
const SUFFIX: &str = ".tar.zst";

/// The archive of backup `id` in `dest`; an ID that is a path (holds `/` or ends in
/// `.tar.zst`) names the archive itself.
pub fn archive_path(dest: &Path, id: &str) -> PathBuf {
    if id.contains('/') || id.ends_with(SUFFIX) {
        PathBuf::from(id)
    } else {
        dest.join(format!("{PREFIX}{id}{SUFFIX}"))
    }
}

fn sidecar_path(archive: &Path) -> PathBuf {
    let s = archive.to_string_lossy();
    PathBuf::from(format!("{}.json", s.strip_suffix(SUFFIX).unwrap_or(&s)))
}

pub fn id_for(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d").to_string()
}

#[derive(Debug)]
pub enum Created {
    New(Box<Sidecar>, PathBuf),
    /// Today's backup exists; nothing was done.
    AlreadyToday(String, PathBuf),
}

pub struct CreateOptions {
    pub dest: PathBuf,
    pub force: bool,
    pub now: DateTime<Utc>,
    /// Signs with the cluster's key: each partition's audit chain head is then anchored in
    /// the manifest (`Manifest::audit_anchors`).
    pub sign: Option<Box<dyn Fn(&[u8]) -> engine::Result<String>>>,
}

/// Takes a backup: a checkpoint of every partition (each replica held only while its
/// checkpoint is made), packed into `geodir-<UTC date>.tar.zst` with its manifest, written
/// to a temp file, fsynced, renamed into place; then the sidecar. `progress(done, total)`
/// counts bytes packed.
pub fn create(
    cluster: &mut dyn Checkpoints,
    opts: &CreateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Created> {
    let id = id_for(opts.now);
    let out = archive_path(&opts.dest, &id);
    if out.exists() && !opts.force {
        return Ok(Created::AlreadyToday(id, out));
    }
    std::fs::create_dir_all(&opts.dest).map_err(io(format!("create {}", opts.dest.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{id}-"))
        .tempdir_in(&opts.dest)
        .map_err(io(format!(
            "create a staging folder in {}",
            opts.dest.display()
        )))?;
    let topology = cluster.topology();
    let mut manifest = Manifest {
        format: ARCHIVE_FORMAT_VERSION,
        id: id.clone(),
        cluster_id: topology.cluster_id.clone(),
        created_at: opts.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        partitions: Vec::new(),
        files: BTreeMap::new(),
        audit_anchors: BTreeMap::new(),
    };
    let mut files = Vec::new();
    for p in &topology.partitions {
        let dir = staging.path().join(format!("p{}", p.id));
        let (pos, source) = cluster.checkpoint_partition(p.id, &dir)?;
        let view = CheckpointView::open(&dir)?;
        let counts = engine::directory::key_counts(&view)?;
        // An intact chain's head is anchored; a broken one is not (`audit verify` says so).
        if let (Some(sign), Ok(_)) = (&opts.sign, engine::audit::chain(&view)) {
            let (seq, hash) = engine::audit::head_hex(&view)?;
            let mut a = engine::audit::Anchor {
                seq,
                hash,
                time: manifest.created_at.clone(),
                signature: String::new(),
            };
            a.signature = sign(a.message(&topology.cluster_id, p.id).as_bytes())?;
            manifest.audit_anchors.insert(p.id, a);
        }
        drop(view);
        manifest.partitions.push(PartitionEntry {
            id: p.id,
            term: pos.term,
            lsn: pos.lsn,
            source,
            counts,
        });
        files.extend(archive::checkpoint_files(p.id, &dir)?);
    }
    let mut total = 0;
    for (_, path) in &files {
        total += std::fs::metadata(path)
            .map_err(io(format!("stat {}", path.display())))?
            .len();
    }
    let topology_json = serde_json::to_vec_pretty(&topology)
        .map_err(|e| Error::Engine(engine::Error::Invalid(format!("encode topology: {e}"))))?;
    let tmp = staging.path().join("archive.tmp");
    let mut done = 0;
    let (manifest, whole) = archive::pack(&tmp, &files, &topology_json, manifest, &mut |n| {
        done += n;
        progress(done, total)
    })?;
    std::fs::rename(&tmp, &out).map_err(io(format!("rename into {}", out.display())))?;
    sync_dir(&opts.dest)?;
    let sidecar = Sidecar {
        manifest,
        archive_bytes: whole.bytes,
        archive_sha256: whole.sha256,
    };
    let raw = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| Error::Engine(engine::Error::Invalid(format!("encode sidecar: {e}"))))?;
    engine::topology::write_atomically(&sidecar_path(&out), &raw)?;
    Ok(Created::New(Box::new(sidecar), out))
}

/// One backup found in a backups folder.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub created_at: Option<String>,
    /// Sidecar present and the archive's size matches it (`verify` checks every byte).
    pub good: bool,
    pub problem: Option<String>,
    pub partitions: Vec<PartitionEntry>,
    /// The archive's SHA-256 recorded in its sidecar when it was written.
    pub archive_sha256: Option<String>,
    /// The audit chain heads its manifest anchors, by partition.
    #[serde(skip)]
    pub audit_anchors: BTreeMap<u32, engine::audit::Anchor>,
}

impl Listed {
    pub fn created(&self) -> Option<DateTime<Utc>> {
        self.created_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    }
    pub fn date(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(&self.id, "%Y-%m-%d").ok()
    }
}

/// The backups in `dest`, oldest first. A missing folder holds none.
pub fn list(dest: &Path) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dest) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(format!("read {}", dest.display()))(e)),
    };
    for e in rd {
        let e = e.map_err(io(format!("read {}", dest.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
        else {
            continue;
        };
        let path = e.path();
        let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
        let side: std::result::Result<Sidecar, String> = std::fs::read(sidecar_path(&path))
            .map_err(|e| format!("sidecar unreadable: {e}"))
            .and_then(|raw| serde_json::from_slice(&raw).map_err(|e| format!("sidecar: {e}")));
        let anchors = match &side {
            Ok(s) => s.manifest.audit_anchors.clone(),
            Err(_) => BTreeMap::new(),
        };
        let (good, problem, created_at, partitions, archive_sha256) = match side {
            Ok(s) if s.archive_bytes == bytes && s.manifest.id == id => (
                true,
                None,
                Some(s.manifest.created_at),
                s.manifest.partitions,
                Some(s.archive_sha256),
            ),
            Ok(s) => (
                false,
                Some(if s.manifest.id != id {
                    format!(
                        "its sidecar describes backup {}, not {id} (a renamed file?)",
                        s.manifest.id
                    )
                } else {
                    format!(
                        "archive is {bytes} bytes, its sidecar says {}",
                        s.archive_bytes
                    )
                }),
                Some(s.manifest.created_at),
                s.manifest.partitions,
                Some(s.archive_sha256),
            ),
            Err(p) => (false, Some(p), None, Vec::new(), None),
        };
        out.push(Listed {
            id: id.to_string(),
            path,
            bytes,
            created_at,
            good,
            problem,
            partitions,
            archive_sha256,
            audit_anchors: anchors,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Reads the whole archive and compares its SHA-256 with the one its sidecar recorded
/// (a byte changed on disk since it was written); `Err` says why it does not match.
pub fn check_hash(b: &Listed) -> Result<std::result::Result<(), String>> {
    let Some(want) = &b.archive_sha256 else {
        return Ok(Err("no sidecar".into()));
    };
    let f = std::fs::File::open(&b.path).map_err(io(format!("open {}", b.path.display())))?;
    let mut h = archive::Hashing::new(f);
    std::io::copy(&mut h, &mut std::io::sink())
        .map_err(io(format!("read {}", b.path.display())))?;
    let (_, got) = h.finish();
    Ok(if got.sha256 == *want {
        Ok(())
    } else {
        Err(format!(
            "its SHA-256 is {}, its sidecar recorded {want}: the archive changed on disk",
            got.sha256
        ))
    })
}

/// Backups whose bytes changed on disk since they were written: (id, why).
pub type Corrupt = Vec<(String, String)>;

/// The newest good backup, if any, and the newer ones found corrupt. With `hash`, each is
/// read whole and must still match its recorded SHA-256 (one that cannot be read is corrupt
/// too); without, a good size is enough (cheap, for frequent scrapes).
pub fn newest_good(dest: &Path, hash: bool) -> Result<(Option<Listed>, Corrupt)> {
    let mut corrupt = Vec::new();
    for b in list(dest)?.into_iter().rev().filter(|b| b.good) {
        if !hash {
            return Ok((Some(b), corrupt));
        }
        match check_hash(&b) {
            Ok(Ok(())) => return Ok((Some(b), corrupt)),
            Ok(Err(why)) => corrupt.push((b.id, why)),
            Err(e) => corrupt.push((b.id, e.to_string())),
        }
    }
    Ok((None, corrupt))
}

/// Reads every entry of the archive and checks every checksum; writes nothing.
pub fn verify(archive: &Path) -> Result<Manifest> {
    Ok(archive::read(archive, None, Limits::default())?.manifest)
}

/// What `prune` did: the backups it removed, and those it found changed on disk (kept for an
/// operator to look at, and not counted as kept).
#[derive(Debug, Default, serde::Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub corrupt: Corrupt,
}

/// Removes the backups `prune::plan` does not keep. Every backup it keeps is first read and
/// checked against its recorded SHA-256: one that changed on disk does not count, so the
/// plan keeps an older intact one in its place and never removes the last intact backups
/// for a corrupt one. Backups that are not good are left alone (an operator looks at them).
pub fn prune(dest: &Path, keep: prune::Keep) -> Result<Pruned> {
    let all = list(dest)?;
    let mut corrupt: Corrupt = Vec::new();
    let mut intact = BTreeSet::new();
    let kept = loop {
        let dated: Vec<(String, NaiveDate)> = all
            .iter()
            .filter(|b| b.good && !corrupt.iter().any(|(id, _)| *id == b.id))
            .filter_map(|b| b.date().map(|d| (b.id.clone(), d)))
            .collect();
        let kept = prune::plan(&dated, keep);
        let mut found = false;
        for b in all.iter().filter(|b| kept.contains(&b.id)) {
            if intact.contains(&b.id) {
                continue;
            }
            match check_hash(b)? {
                Ok(()) => {
                    intact.insert(b.id.clone());
                }
                Err(why) => {
                    corrupt.push((b.id.clone(), why));
                    found = true;
                }
            }
        }
        if !found {
            break kept;
        }
    };
    let mut removed = Vec::new();
    for b in all
        .iter()
        .filter(|b| b.good && !kept.contains(&b.id) && !corrupt.iter().any(|(id, _)| *id == b.id))
    {
        std::fs::remove_file(&b.path).map_err(io(format!("remove {}", b.path.display())))?;
        let side = sidecar_path(&b.path);
        std::fs::remove_file(&side).map_err(io(format!("remove {}", side.display())))?;
        removed.push(b.id.clone());
    }
    sync_dir(dest)?;
    Ok(Pruned { removed, corrupt })
}

/// A verified archive extracted into a temporary folder (removed on drop).
pub struct Extracted {
    pub dir: tempfile::TempDir,
    pub manifest: Manifest,
    pub topology: Topology,
}

impl Extracted {
    pub fn partition_dir(&self, partition: u32) -> PathBuf {
        self.dir.path().join(format!("p{partition}"))
    }

    /// The lsn the backup holds `partition` at (0 if its manifest does not list it).
    pub fn lsn_of(&self, partition: u32) -> u64 {
        self.manifest
            .partitions
            .iter()
            .find(|m| m.id == partition)
            .map_or(0, |m| m.lsn)
    }
}

/// Extracts `archive` into a new temporary folder inside `parent` and checks it entirely.
pub fn extract(archive: &Path, parent: &Path, limits: Limits) -> Result<Extracted> {
    let dir = tempfile::Builder::new()
        .prefix(".geodir-restore-")
        .tempdir_in(parent)
        .map_err(io(format!(
            "create a temporary folder in {}",
            parent.display()
        )))?;
    let checked = archive::read(archive, Some(dir.path()), limits)?;
    let topology: Topology =
        serde_json::from_slice(&checked.topology_json).map_err(|e| Error::Corrupt {
            archive: archive.to_path_buf(),
            file: manifest::TOPOLOGY_FILE.into(),
            why: format!("does not decode: {e}"),
        })?;
    let mut ids: Vec<u32> = topology.partitions.iter().map(|p| p.id).collect();
    let mut listed: Vec<u32> = checked.manifest.partitions.iter().map(|p| p.id).collect();
    ids.sort();
    listed.sort();
    if ids != listed {
        return Err(Error::Corrupt {
            archive: archive.to_path_buf(),
            file: manifest::MANIFEST_FILE.into(),
            why: format!("partitions {listed:?} do not match cluster.json's {ids:?}"),
        });
    }
    Ok(Extracted {
        dir,
        manifest: checked.manifest,
        topology,
    })
}

/// Builds a cluster root at `root` (a new folder) from an extracted backup: every replica of
/// a partition starts from that partition's checkpoint (immutable `.sst` files hard-linked,
/// the rest copied) and is adopted with `topology`'s cluster identity.
fn build_root(x: &Extracted, root: &Path, topology: &Topology) -> Result<()> {
    std::fs::create_dir(root).map_err(io(format!("create {}", root.display())))?;
    for dc in &topology.datacenters {
        for p in &topology.partitions {
            let id = ReplicaId::new(&dc.name, p.id);
            let to = replica_path(root, &id);
            std::fs::create_dir_all(&to).map_err(io(format!("create {}", to.display())))?;
            let from = x.partition_dir(p.id);
            for e in std::fs::read_dir(&from).map_err(io(format!("read {}", from.display())))? {
                let e = e.map_err(io(format!("read {}", from.display())))?;
                let dest = to.join(e.file_name());
                if e.file_name().to_string_lossy().ends_with(".sst") {
                    std::fs::hard_link(e.path(), &dest)
                        .map_err(io(format!("link {}", dest.display())))?;
                } else {
                    std::fs::copy(e.path(), &dest)
                        .map_err(io(format!("copy {}", dest.display())))?;
                }
            }
            // Every replica starts at the backup's position, which was committed.
            let committed = x.lsn_of(p.id);
            Replica::adopt(
                &to,
                &Identity {
                    cluster_id: topology.cluster_id.clone(),
                    datacenter: dc.name.clone(),
                    partition: p.id,
                },
                committed,
            )?;
        }
        sync_dir(&engine::layout::datacenter_path(root, &dc.name))?;
    }
    FileControlPlane::create(root, topology)?;
    Ok(sync_dir(root)?)
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub root: PathBuf,
    pub cluster_id: String,
    pub backup: String,
    pub partitions: Vec<PartitionEntry>,
}

/// Restores a whole cluster into `to` (which must not exist) with a new cluster identity.
pub fn restore_to(archive: &Path, to: &Path, limits: Limits) -> Result<Restored> {
    if to.exists() {
        return Err(Error::Engine(engine::Error::Conflict(format!(
            "{} exists; restore into a new folder (or use --in-place)",
            to.display()
        ))));
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::Engine(engine::Error::NotFound(format!(
            "{} does not exist; create the parent folder first",
            parent.display()
        ))));
    }
    let x = extract(archive, &parent, limits)?;
    let mut topology = x.topology.clone();
    topology.cluster_id = uuid::Uuid::new_v4().to_string();
    topology.generation = 1;
    // A new cluster: its operators' secrets were sealed for the old one (whose keys a
    // backup does not hold), and anchors and grants were the old one's. It starts open;
    // `dirctl operator enroll NAME --role security-admin` closes it.
    topology.operators.clear();
    topology.elevations.clear();
    topology.pending.clear();
    topology.audit_anchors.clear();
    let built = x.dir.path().join("root");
    build_root(&x, &built, &topology)?;
    std::fs::rename(&built, to).map_err(io(format!("rename into {}", to.display())))?;
    sync_dir(&parent)?;
    Ok(Restored {
        root: to.to_path_buf(),
        cluster_id: topology.cluster_id,
        backup: x.manifest.id.clone(),
        partitions: x.manifest.partitions.clone(),
    })
}

/// Replaces the cluster's replicas with the backup's, keeping the cluster identity. Every
/// replica is held first (so no other dirctl uses them); the archive is checked entirely
/// and the new replicas built inside the cluster root before any replica is swapped.
pub fn restore_in_place(cluster: &mut Cluster, archive: &Path, limits: Limits) -> Result<Restored> {
    let root = cluster.root().to_path_buf();
    for (id, e) in cluster.hold_every_replica() {
        if replica_path(&root, &id).exists() {
            cluster.release_all();
            return Err(engine::Error::Unavailable(format!(
                "replica {id} cannot be held for the restore, nothing was changed: {e}"
            ))
            .into());
        }
    }
    // RocksDB names files by path: an open replica whose folder is swapped would write into
    // and delete from the new one. Close them, and keep only their lock files held.
    cluster.release_all();
    let mut locks = Vec::new();
    for dc in &cluster.topology().datacenters {
        for p in &cluster.topology().partitions {
            let id = ReplicaId::new(&dc.name, p.id);
            let lock = replica_path(&root, &id).join("geodir.lock");
            let Ok(f) = std::fs::File::options().read(true).write(true).open(&lock) else {
                continue;
            };
            f.try_lock().map_err(|e| {
                engine::Error::Unavailable(format!(
                    "replica {id} was taken by another dirctl process, nothing was changed: {e:?}"
                ))
            })?;
            locks.push(f);
        }
    }
    let x = extract(archive, &root, limits)?;
    let current = cluster.topology().clone();
    let mut topology = x.topology.clone();
    topology.cluster_id = current.cluster_id.clone();
    // Terms only go up: each partition's restored history goes on in a term above any it
    // had, starting after the restored lsn, so that a session token of the history the
    // restore undid reads as such (and is not waited for).
    for p in &mut topology.partitions {
        let before = current
            .partitions
            .iter()
            .find(|q| q.id == p.id)
            .map_or(0, |q| q.term);
        let restored = x.lsn_of(p.id);
        p.term = p.term.max(before) + 1;
        p.term_starts.push(engine::topology::TermStart {
            term: p.term,
            first_lsn: restored + 1,
        });
    }
    let built = x.dir.path().join("root");
    build_root(&x, &built, &topology)?;
    let old = x.dir.path().join("old");
    std::fs::create_dir(&old).map_err(io(format!("create {}", old.display())))?;
    for dc in &topology.datacenters {
        let name = engine::layout::datacenter_dir(&dc.name);
        let live = root.join(&name);
        if live.exists() {
            std::fs::rename(&live, old.join(&name))
                .map_err(io(format!("move {} aside", live.display())))?;
        }
        std::fs::rename(built.join(&name), &live)
            .map_err(io(format!("rename into {}", live.display())))?;
    }
    sync_dir(&root)?;
    let new = topology.clone();
    cluster.update_topology(|t| {
        let generation = t.generation;
        // Who may operate the cluster stays today's, not the backup's: operators (their
        // roles, last used codes, lock-outs), elevations and two-person requests are kept
        // as they are now. (The audit anchors are the backup's: they match its chains.)
        let operators = std::mem::take(&mut t.operators);
        let elevations = std::mem::take(&mut t.elevations);
        let pending = std::mem::take(&mut t.pending);
        *t = new.clone();
        t.generation = generation;
        t.operators = operators;
        t.elevations = elevations;
        t.pending = pending;
        Ok(())
    })?;
    drop(locks);
    Ok(Restored {
        root,
        cluster_id: topology.cluster_id,
        backup: x.manifest.id.clone(),
        partitions: x.manifest.partitions.clone(),
    })
}
