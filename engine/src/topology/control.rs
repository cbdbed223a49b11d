//! Where the topology lives: the `ControlPlane` trait, and its file implementation
//! (`cluster.json`, replaced atomically under `cluster.lock`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Topology, CLUSTER_FILE, LOCK_FILE, TOPOLOGY_FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::replica::sync_dir;

/// Where the topology lives. The embedded mode keeps it in a file (`FileControlPlane`); a
/// server mode keeps it in etcd. Every stored topology has a revision, its `generation`,
/// raised by one on every change: the compare-and-swap of `replace` is what an etcd
/// transaction comparing the key's revision gives.
///
/// Watching: `reload_if_changed` is the cheap poll a caller makes after taking its
/// replicas (the file implementation compares an inode); an etcd implementation answers it
/// from a watch on the key, so no method blocks waiting for a change.
pub trait ControlPlane: Send {
    /// Stores the first topology of a new cluster; `Conflict` if one is stored already.
    fn create(&self, topology: &Topology) -> Result<()>;
    /// The stored topology, checked (`Topology::check`); its `generation` is the revision.
    fn load(&self) -> Result<Topology>;
    /// The topology if it changed since this handle last loaded or stored it (cheap when not).
    fn reload_if_changed(&self) -> Result<Option<Topology>>;
    /// Stores `topology` with generation `expected + 1` only if the stored one is still at
    /// generation `expected` (the one the caller read); otherwise `Conflict`, nothing stored.
    fn replace(&self, expected: u64, topology: &Topology) -> Result<Topology>;
    /// Applies `change` to the current topology under an exclusive hold and stores it with
    /// generation + 1 (for etcd: load, change, `replace`, again on a conflict).
    fn update(&self, change: &mut dyn FnMut(&mut Topology) -> Result<()>) -> Result<Topology>;
    /// A secret of the cluster (the token signing key), stored beside the topology and never
    /// in it, so that nothing that shows a topology shows it; None while nobody made it.
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `value` as secret `name` unless one is stored already, and returns the stored
    /// one: of two racing, the first wins and both get its value.
    fn create_secret(&self, name: &str, value: &[u8]) -> Result<Vec<u8>>;
    /// Secret `name`, made with `make` and stored first if nobody made it yet (of two
    /// racing, the first stored wins and both get its value).
    fn secret_or_create(&self, name: &str, make: &mut dyn FnMut() -> Vec<u8>) -> Result<Vec<u8>> {
        match self.secret(name)? {
            Some(v) => Ok(v),
            None => self.create_secret(name, &make()),
        }
    }
}

/// A secret's name: lowercase letters, digits and dashes (it is a file name and a key).
pub fn check_secret_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match ok {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "secret name {name:?}: lowercase letters, digits and dashes only"
        ))),
    }
}

/// The folder of the file control plane's secrets, readable by its owner only.
const SECRETS_DIR: &str = "secrets";

pub struct FileControlPlane {
    root: PathBuf,
    /// The inode of cluster.json as last loaded: every change replaces the file (new inode).
    seen_inode: std::sync::atomic::AtomicU64,
    lock_timeout: Duration,
}

/// The `--lock-timeout-ms` default: how long a process waits for another's hold.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The identity of the file at `path`: its inode mixed with its change time. Every change
/// replaces the file; an inode alone can be reused by a later replacement (a long-running
/// server then took a changed control plane for the one it had read), its change time not.
fn inode(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| {
            m.ino().wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (m.ctime() as u64).wrapping_mul(1_000_000_007)
                ^ m.ctime_nsec() as u64
        })
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))
}

impl FileControlPlane {
    /// A control plane in an existing cluster root.
    pub fn open(root: &Path) -> Result<FileControlPlane> {
        if !root.is_dir() {
            return Err(Error::NotFound(format!(
                "cluster root {} does not exist; create one with `dirctl init`",
                root.display()
            )));
        }
        if !root.join(CLUSTER_FILE).is_file() {
            return Err(Error::NotFound(format!(
                "{} holds no cluster ({CLUSTER_FILE} missing); create one with `dirctl init`",
                root.display()
            )));
        }
        Ok(FileControlPlane::at(root))
    }

    /// A control plane in `root`, whether or not it holds a cluster yet (see `create`).
    pub fn at(root: &Path) -> FileControlPlane {
        FileControlPlane {
            root: root.to_path_buf(),
            seen_inode: std::sync::atomic::AtomicU64::new(0),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// How long `update` waits for another process's hold on `cluster.lock` before it fails.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> FileControlPlane {
        self.lock_timeout = timeout;
        self
    }

    /// Writes the first topology of a new cluster root (`ControlPlane::create`).
    pub fn create(root: &Path, topology: &Topology) -> Result<FileControlPlane> {
        let cp = FileControlPlane::at(root);
        ControlPlane::create(&cp, topology)?;
        Ok(cp)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Holds `cluster.lock` (waiting up to the lock timeout) while `f` runs.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock_path = self.root.join(LOCK_FILE);
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        // Another process's change takes milliseconds; one stopped while it holds the lock
        // must not hang every writer: the wait is bounded like a replica's.
        crate::replica::wait_for_lock(
            &lock,
            std::time::Instant::now() + self.lock_timeout,
            &format!("the control plane ({})", lock_path.display()),
            self.lock_timeout,
        )?;
        f()
    }

    /// Reads and checks `cluster.json`: the topology, the inode read, and whether the file was
    /// still that inode after reading.
    fn read(&self) -> Result<(Topology, u64, bool)> {
        let path = self.root.join(CLUSTER_FILE);
        let ino = inode(&path)?;
        let raw =
            std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let t = decode(&raw, &path.display().to_string())?;
        Ok((t, ino, inode(&path)? == ino))
    }

    /// Writes `t` (under the lock) and remembers the new file as seen.
    fn store(&self, t: &Topology) -> Result<()> {
        write_atomically(&self.root.join(CLUSTER_FILE), &encode(t)?)?;
        // Still under the lock: nobody replaced it since.
        self.seen_inode.store(
            inode(&self.root.join(CLUSTER_FILE))?,
            std::sync::atomic::Ordering::SeqCst,
        );
        Ok(())
    }
}

/// A stored topology as every control plane keeps it: `cluster.json`'s pretty JSON.
pub fn encode(t: &Topology) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(t)
        .map_err(|e| Error::Storage(format!("encode topology: {e}")))?;
    v.push(b'\n');
    Ok(v)
}

/// A stored topology read back and checked; `source` names where it was read in errors.
pub fn decode(raw: &[u8], source: &str) -> Result<Topology> {
    let t: Topology =
        serde_json::from_slice(raw).map_err(|e| Error::Corrupt(format!("{source}: {e}")))?;
    if t.format != TOPOLOGY_FORMAT_VERSION {
        return Err(Error::Corrupt(format!(
            "{source}: unknown format {}",
            t.format
        )));
    }
    t.check()
        .map_err(|e| Error::Corrupt(format!("{source}: {e}")))?;
    Ok(t)
}

impl ControlPlane for FileControlPlane {
    fn create(&self, topology: &Topology) -> Result<()> {
        topology.check()?;
        let path = self.root.join(CLUSTER_FILE);
        File::create(self.root.join(LOCK_FILE))
            .map_err(|e| Error::io(format!("create {}", self.root.join(LOCK_FILE).display()), e))?;
        self.locked(|| {
            if path.exists() {
                return Err(Error::Conflict(format!(
                    "{} already holds a cluster ({CLUSTER_FILE})",
                    self.root.display()
                )));
            }
            self.store(topology)
        })
    }

    fn reload_if_changed(&self) -> Result<Option<Topology>> {
        let now = inode(&self.root.join(CLUSTER_FILE))?;
        if now == self.seen_inode.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        self.load().map(Some)
    }

    fn load(&self) -> Result<Topology> {
        let (t, ino, unchanged) = self.read()?;
        // Recorded only when the inode did not change while reading: a racing replace reloads next time.
        if unchanged {
            self.seen_inode
                .store(ino, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(t)
    }

    fn replace(&self, expected: u64, topology: &Topology) -> Result<Topology> {
        topology.check()?;
        self.locked(|| {
            // Read without noting it as seen: a caller refused here has not seen the change.
            let (now, ..) = self.read()?;
            if now.generation != expected {
                return Err(Error::Conflict(format!(
                    "the control plane changed (generation {} is now {}); read it again",
                    expected, now.generation
                )));
            }
            let mut t = topology.clone();
            t.generation = expected + 1;
            self.store(&t)?;
            Ok(t)
        })
    }

    fn update(&self, change: &mut dyn FnMut(&mut Topology) -> Result<()>) -> Result<Topology> {
        self.locked(|| {
            let mut t = self.load()?;
            change(&mut t)?;
            t.check()?;
            t.generation += 1;
            self.store(&t)?;
            Ok(t)
        })
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.secret_path(name)?;
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    fn create_secret(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        let path = self.secret_path(name)?;
        create_private_file(&path, value)?;
        self.secret(name)?
            .ok_or_else(|| Error::Storage(format!("{} vanished once written", path.display())))
    }
}

impl FileControlPlane {
    fn secret_path(&self, name: &str) -> Result<PathBuf> {
        check_secret_name(name)?;
        Ok(self.root.join(SECRETS_DIR).join(name))
    }
}

/// A file of the owner's only (0600), written and synced, then linked in as `path` unless
/// `path` exists: false when it did (nothing changed).
fn create_private_file(path: &Path, bytes: &[u8]) -> Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    drop(f);
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(dir).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io(format!("write {}", path.display()), e)),
    }
}

/// Replaces `path` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, false)
}

/// `write_atomically` for a file of its owner's only (0600), in a folder made 0700 if it
/// is missing: a login, a credential.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, true)
}

fn write_replacing(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if private {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    let tmp = path.with_extension("tmp");
    if private {
        // A leftover keeps its own mode: never write a secret into one.
        let _ = std::fs::remove_file(&tmp);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o666 })
        .open(&tmp)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::tests::dcs;

    #[test]
    fn update_raises_the_generation_and_survives_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp =
            FileControlPlane::create(dir.path(), &Topology::new("c".into(), dcs(), 2).expect("t"))
                .expect("create");
        cp.update(&mut |t| {
            t.datacenters[1].drained = true;
            Ok(())
        })
        .expect("update");
        let t = cp.load().expect("load");
        assert_eq!(t.generation, 2);
        assert!(t.datacenters[1].drained);
    }

    /// Two handles on one file: the second's compare-and-swap, made on what it read before
    /// the first changed it, is refused and stores nothing.
    #[test]
    fn a_stale_replace_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Topology::new("c".into(), dcs(), 2).expect("t");
        let a = FileControlPlane::create(dir.path(), &t).expect("create");
        let b = FileControlPlane::open(dir.path()).expect("open");
        let read_by_a = a.load().expect("load");
        let read_by_b = b.load().expect("load");
        assert_eq!(read_by_a.generation, 1);
        let mut drained = read_by_a.clone();
        drained.datacenters[1].drained = true;
        let stored = a.replace(read_by_a.generation, &drained).expect("replace");
        assert_eq!(stored.generation, 2);
        let mut other = read_by_b.clone();
        other.datacenters[2].drained = true;
        assert!(matches!(
            b.replace(read_by_b.generation, &other),
            Err(Error::Conflict(_))
        ));
        let now = b.reload_if_changed().expect("reload").expect("changed");
        assert_eq!(now, stored);
        assert!(
            !now.datacenters[2].drained,
            "the refused replace stored nothing"
        );
        // Read again, the same change goes through.
        let mut again = now.clone();
        again.datacenters[2].drained = true;
        assert_eq!(
            b.replace(now.generation, &again)
                .expect("replace")
                .generation,
            3
        );
        assert_eq!(
            a.reload_if_changed().expect("reload").map(|t| t.generation),
            Some(3)
        );
        assert_eq!(a.reload_if_changed().expect("reload"), None);
    }

    #[test]
    fn a_secret_is_a_file_of_the_owner_only_and_never_in_cluster_json() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cp =
            FileControlPlane::create(dir.path(), &Topology::new("c".into(), dcs(), 2).expect("t"))
                .expect("create");
        cp.create_secret("token-signing-key", b"k3y")
            .expect("secret");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let secrets = dir.path().join(SECRETS_DIR);
        assert_eq!(mode(&secrets), 0o700);
        assert_eq!(mode(&secrets.join("token-signing-key")), 0o600);
        let json = std::fs::read_to_string(dir.path().join(CLUSTER_FILE)).expect("read");
        assert!(!json.contains("k3y"), "{json}");
        let left: Vec<_> = std::fs::read_dir(&secrets).expect("ls").collect();
        assert_eq!(left.len(), 1, "a temporary file was left: {left:?}");
    }

    #[test]
    fn create_refuses_a_root_that_holds_a_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Topology::new("c".into(), dcs(), 2).expect("t");
        let cp = FileControlPlane::at(dir.path());
        ControlPlane::create(&cp, &t).expect("create");
        assert!(matches!(
            ControlPlane::create(&cp, &t),
            Err(Error::Conflict(_))
        ));
    }

    /// A hand-edited cluster.json with no datacenter (or a primary that is not one) is
    /// refused at load, naming the file, before any decision could index into it.
    #[test]
    fn a_topology_without_datacenters_is_refused_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp =
            FileControlPlane::create(dir.path(), &Topology::new("c".into(), dcs(), 2).expect("t"))
                .expect("create");
        let path = dir.path().join(CLUSTER_FILE);
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let mut no_dc = good.clone();
        no_dc["datacenters"] = serde_json::json!([]);
        let mut bad_primary = good.clone();
        bad_primary["partitions"][1]["primary"] = serde_json::json!("mars");
        for edited in [no_dc, bad_primary] {
            std::fs::write(&path, serde_json::to_vec(&edited).expect("encode")).expect("write");
            match cp.load() {
                Err(Error::Corrupt(m)) => assert!(m.contains(CLUSTER_FILE), "{m}"),
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
    }
}
