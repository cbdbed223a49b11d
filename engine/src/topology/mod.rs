//! The control plane: datacenters, partitions, primaries, terms, sync standbys,
//! tenant placement and operator health overrides, kept in `cluster.json`.
//!
//! Behind the `ControlPlane` trait (`control`) so that a server mode can keep it elsewhere
//! (etcd). The file is replaced atomically: temp file, fsync, rename, fsync the folder,
//! with the generation raised by one on every change, under an exclusive lock.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod control;

pub use control::{
    check_secret_name, decode, encode, write_atomically, write_private, ControlPlane,
    FileControlPlane, DEFAULT_LOCK_TIMEOUT,
};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const TOPOLOGY_FORMAT_VERSION: u32 = 1;
pub const CLUSTER_FILE: &str = "cluster.json";
const LOCK_FILE: &str = "cluster.lock";

/// Most partitions a cluster may have (each is a replica, a RocksDB, per datacenter).
pub const MAX_PARTITIONS: u32 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// Great-circle distance in km (haversine).
    pub fn distance_km(&self, other: &Location) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lon - self.lon).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * 6371.0 * a.sqrt().asin()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Datacenter {
    pub name: String,
    pub location: Location,
    /// Operator health override: reads route around a drained datacenter.
    #[serde(default)]
    pub drained: bool,
    /// The server mode: the gRPC address of the datacenter's `geodird`
    /// (`http://127.0.0.1:7401`), recorded by the server when it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The server mode: the HTTP address of the datacenter's `geodird` (the Graph API,
    /// /healthz; `https://` behind TLS), recorded by the server when it starts. The
    /// gateway sends requests there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub id: u32,
    pub primary: String,
    pub term: u64,
    pub sync_standby: String,
    /// Where each term's entries begin: an entry of term t at an lsn at or past the start
    /// of a later term was never committed (a fenced primary's tail).
    #[serde(default)]
    pub term_starts: Vec<TermStart>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermStart {
    pub term: u64,
    pub first_lsn: u64,
}

impl Partition {
    /// How much of a session's token (its writes up to `lsn`, the last in `term`) this
    /// partition's history still holds: `lsn` when all of it; less when a later term (a
    /// failover that accepted data loss, a restore in place) replaced the rest; 0 when the
    /// history never had `term` (a restore in place brought back an older one).
    pub fn kept_of_token(&self, term: u64, lsn: u64) -> u64 {
        if self.term_starts.is_empty() {
            return lsn;
        }
        if !self.term_starts.iter().any(|s| s.term == term) {
            return 0;
        }
        let replaced_from = self
            .term_starts
            .iter()
            .filter(|s| s.term > term)
            .map(|s| s.first_lsn)
            .min();
        match replaced_from {
            Some(first) if first <= lsn => first.saturating_sub(1),
            _ => lsn,
        }
    }

    /// Raises the term, starting at `first_lsn`: entries of an older term at or past it are
    /// a fenced primary's tail (cut before anything reads them).
    pub fn fence_from(&mut self, first_lsn: u64) {
        self.term += 1;
        self.term_starts.push(TermStart {
            term: self.term,
            first_lsn,
        });
    }

    /// A failover's switch: `new_primary` writes from `first_lsn` on in the next term, with
    /// `sync_standby` as its standby.
    pub fn switch_primary(&mut self, new_primary: &str, sync_standby: &str, first_lsn: u64) {
        self.primary = new_primary.to_string();
        self.sync_standby = sync_standby.to_string();
        self.fence_from(first_lsn);
    }

    pub fn set_sync_standby(&mut self, datacenter: &str) {
        self.sync_standby = datacenter.to_string();
    }

    /// Whether a replica whose last entry is `last` holds entries no primary committed.
    pub fn diverged(&self, last: crate::log::Position) -> bool {
        // Any later term that started at or below this lsn (after a lossy promotion a later
        // term may start lower than an earlier one did).
        self.term_starts
            .iter()
            .filter(|s| s.term > last.term)
            .map(|s| s.first_lsn)
            .min()
            .is_some_and(|first| last.lsn >= first)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantPlacement {
    pub id: String,
    pub partition: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub format: u32,
    pub cluster_id: String,
    pub generation: u64,
    pub datacenters: Vec<Datacenter>,
    pub partitions: Vec<Partition>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantPlacement>,
    /// Each partition's last audit anchor (`dirctl audit anchor`): its chain head, signed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_anchors: BTreeMap<u32, crate::audit::Anchor>,
    /// The cluster's operators (`dirctl operator enroll`), by name; none: an open cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operators: BTreeMap<String, crate::operators::Operator>,
    /// Time-bound grants of privileged roles (`dirctl elevate`); ended ones are pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elevations: Vec<crate::operators::Elevation>,
    /// Requests waiting for a second operator (the two-person rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<crate::operators::Pending>,
}

impl Topology {
    /// A new topology: primaries spread round-robin, each sync standby the nearest other datacenter.
    pub fn new(
        cluster_id: String,
        datacenters: Vec<Datacenter>,
        partitions: u32,
    ) -> Result<Topology> {
        if datacenters.len() < 2 {
            return Err(Error::Invalid(format!(
                "a cluster needs at least 2 datacenters for geo-durable writes, got {}",
                datacenters.len()
            )));
        }
        if partitions == 0 {
            return Err(Error::Invalid(
                "a cluster needs at least 1 partition".into(),
            ));
        }
        if partitions > MAX_PARTITIONS {
            return Err(Error::Invalid(format!(
                "{partitions} partitions is more than {MAX_PARTITIONS}: each is a RocksDB in every datacenter's folder"
            )));
        }
        for (i, dc) in datacenters.iter().enumerate() {
            validate_name(&dc.name)?;
            if datacenters[..i].iter().any(|d| d.name == dc.name) {
                return Err(Error::Invalid(format!(
                    "datacenter {} is named twice",
                    dc.name
                )));
            }
            if !(-90.0..=90.0).contains(&dc.location.lat)
                || !(-180.0..=180.0).contains(&dc.location.lon)
            {
                return Err(Error::Invalid(format!(
                    "datacenter {}: location {},{} is not a latitude,longitude",
                    dc.name, dc.location.lat, dc.location.lon
                )));
            }
        }
        let parts = (0..partitions)
            .map(|id| {
                let primary = &datacenters[id as usize % datacenters.len()];
                let standby = nearest(
                    &primary.location,
                    datacenters.iter().filter(|d| d.name != primary.name),
                )
                .map(|d| d.name.clone())
                .unwrap_or_default();
                Partition {
                    id,
                    primary: primary.name.clone(),
                    term: 1,
                    sync_standby: standby,
                    term_starts: vec![TermStart {
                        term: 1,
                        first_lsn: 1,
                    }],
                }
            })
            .collect();
        Ok(Topology {
            format: TOPOLOGY_FORMAT_VERSION,
            cluster_id,
            generation: 1,
            datacenters,
            partitions: parts,
            tenants: BTreeMap::new(),
            audit_anchors: BTreeMap::new(),
            operators: BTreeMap::new(),
            elevations: Vec::new(),
            pending: Vec::new(),
        })
    }

    /// Changes partition `before.id` with `change` if it is still exactly `before` (what the
    /// caller decided on); otherwise refuses with `Conflict(changed(now))`.
    pub fn change_partition(
        &mut self,
        before: &Partition,
        changed: impl FnOnce(&Partition) -> String,
        change: impl FnOnce(&mut Partition),
    ) -> Result<()> {
        let id = before.id;
        let p = self
            .partitions
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::NotFound(format!("no partition {id}")))?;
        if p != before {
            return Err(Error::Conflict(changed(p)));
        }
        change(p);
        Ok(())
    }

    /// What every stored and loaded topology must hold, so that no decision meets an
    /// impossible one (a hand-edited file): datacenters declared once, with safe names and
    /// real locations; each partition listed once, its primary and sync standby two declared
    /// datacenters, its terms' starts in term order and ending with its current term; each
    /// tenant on a declared partition. The message names the field.
    pub fn check(&self) -> Result<()> {
        let bad = |field: String, why: String| Err(Error::Invalid(format!("{field}: {why}")));
        if self.datacenters.is_empty() {
            return bad("datacenters".into(), "none is declared".into());
        }
        for (i, dc) in self.datacenters.iter().enumerate() {
            if let Err(Error::Invalid(why)) = validate_name(&dc.name) {
                return bad(format!("datacenters[{i}].name"), why);
            }
            if self.datacenters[..i].iter().any(|d| d.name == dc.name) {
                return bad(
                    format!("datacenters[{i}].name"),
                    format!("datacenter {:?} is declared twice", dc.name),
                );
            }
            let Location { lat, lon } = dc.location;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return bad(
                    format!("datacenters[{i}].location"),
                    format!("{lat},{lon} is not a latitude,longitude"),
                );
            }
        }
        let declared = |dc: &str| self.datacenters.iter().any(|d| d.name == dc);
        for (i, p) in self.partitions.iter().enumerate() {
            let field = |name: &str| format!("partitions[{i}].{name}");
            if self.partitions[..i].iter().any(|q| q.id == p.id) {
                return bad(field("id"), format!("partition {} is listed twice", p.id));
            }
            for (name, dc) in [("primary", &p.primary), ("sync_standby", &p.sync_standby)] {
                if !declared(dc) {
                    return bad(field(name), format!("datacenter {dc:?} is not declared"));
                }
            }
            if p.sync_standby == p.primary {
                return bad(
                    field("sync_standby"),
                    format!(
                        "{:?} is the primary's datacenter; a write's second copy must be in another",
                        p.sync_standby
                    ),
                );
            }
            for (j, s) in p.term_starts.iter().enumerate() {
                if s.first_lsn == 0 {
                    return bad(
                        field(&format!("term_starts[{j}]")),
                        "lsns start at 1".into(),
                    );
                }
                if j > 0 && s.term <= p.term_starts[j - 1].term {
                    return bad(
                        field(&format!("term_starts[{j}]")),
                        format!(
                            "term {} does not follow term {}",
                            s.term,
                            p.term_starts[j - 1].term
                        ),
                    );
                }
            }
            if p.term_starts.last().map(|s| s.term) != Some(p.term) {
                return bad(
                    field("term"),
                    format!(
                        "term {} has no entry in term_starts (where each term's entries begin)",
                        p.term
                    ),
                );
            }
        }
        for (name, t) in &self.tenants {
            if !self.partitions.iter().any(|p| p.id == t.partition) {
                return bad(
                    format!("tenants[{name:?}].partition"),
                    format!("partition {} is not declared", t.partition),
                );
            }
        }
        Ok(())
    }

    pub fn datacenter(&self, name: &str) -> Result<&Datacenter> {
        self.datacenters
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no datacenter named {name} (known: {})",
                    self.dc_names().join(", ")
                ))
            })
    }

    /// Drains (reads route around it) or undrains datacenter `dc`. Draining the last
    /// datacenter that serves reads is refused (`Conflict`): no read could be served.
    pub fn set_drained(&mut self, dc: &str, drained: bool) -> Result<()> {
        self.datacenter(dc)?;
        let serving_after = self
            .datacenters
            .iter()
            .filter(|d| if d.name == dc { !drained } else { !d.drained })
            .count();
        if drained && serving_after == 0 {
            return Err(Error::Conflict(format!(
                "draining {dc} would leave no datacenter serving reads; undrain another first (`dirctl dc undrain NAME`)"
            )));
        }
        for d in self.datacenters.iter_mut().filter(|d| d.name == dc) {
            d.drained = drained;
        }
        Ok(())
    }

    pub fn dc_names(&self) -> Vec<String> {
        self.datacenters.iter().map(|d| d.name.clone()).collect()
    }

    pub fn partition(&self, id: u32) -> Result<&Partition> {
        self.partitions.iter().find(|p| p.id == id).ok_or_else(|| {
            Error::NotFound(format!(
                "no partition {id} (the cluster has {})",
                self.partitions.len()
            ))
        })
    }

    pub fn tenant(&self, name: &str) -> Result<&TenantPlacement> {
        self.tenants.get(name).ok_or_else(|| {
            Error::NotFound(format!(
                "no tenant named {name}; create it with `dirctl tenant create {name}`"
            ))
        })
    }

    /// The secondaries of a partition (every datacenter but the primary's).
    pub fn secondaries(&self, partition: u32) -> Result<Vec<&Datacenter>> {
        let p = self.partition(partition)?;
        Ok(self
            .datacenters
            .iter()
            .filter(|d| d.name != p.primary)
            .collect())
    }

    /// Resolves a region: a datacenter name or `LAT,LON`.
    pub fn region(&self, region: &str) -> Result<Location> {
        // A region is where the caller is: a datacenter's name in any letter case.
        if let Some(dc) = self
            .datacenters
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(region))
        {
            return Ok(dc.location);
        }
        parse_location(region).map_err(|_| {
            Error::Invalid(format!(
                "region {region:?} is neither a datacenter ({}) nor LAT,LON (latitude -90..90, longitude -180..180)",
                self.dc_names().join(", ")
            ))
        })
    }
}

/// The datacenter nearest to `from` among `candidates`.
pub fn nearest<'a>(
    from: &Location,
    candidates: impl Iterator<Item = &'a Datacenter>,
) -> Option<&'a Datacenter> {
    candidates.min_by(|a, b| {
        a.location
            .distance_km(from)
            .total_cmp(&b.location.distance_km(from))
    })
}

pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Invalid(format!(
            "name {name:?} must be 1-64 characters of letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

pub fn parse_location(s: &str) -> Result<Location> {
    let bad = || {
        Error::Invalid(format!(
            "location {s:?} is not LAT,LON (latitude -90..90, longitude -180..180)"
        ))
    };
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let lat: f64 = a.trim().parse().map_err(|_| bad())?;
    let lon: f64 = b.trim().parse().map_err(|_| bad())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok(Location { lat, lon })
}

/// Parses `name@lat,lon`.
pub fn parse_datacenter(s: &str) -> Result<Datacenter> {
    let (name, loc) = s
        .split_once('@')
        .ok_or_else(|| Error::Invalid(format!("datacenter {s:?} is not NAME@LAT,LON")))?;
    Ok(Datacenter {
        name: name.to_string(),
        location: parse_location(loc)?,
        drained: false,
        endpoint: None,
        http_endpoint: None,
    })
}

#[cfg(test)]
pub(crate) mod tests;
