//! What every cluster command shares: the opened cluster, the session, the output format.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use engine::clock::Clock;
use engine::cluster::{Cluster, ClusterOptions, ServedBy};
use engine::log::Op;
use engine::replica::Replica;
use engine::session::{Session, Token};

use crate::opt::{Global, Output};

pub struct Ctx {
    pub cluster: Cluster,
    pub output: Output,
    session: Option<(PathBuf, Session)>,
}

pub fn clock() -> Result<Clock> {
    match std::env::var("DIRCTL_NOW") {
        Ok(t) => Ok(Clock::fixed(&t).context("DIRCTL_NOW")?),
        Err(_) => Ok(Clock::system()),
    }
}

pub fn cluster_root(g: &Global) -> Result<PathBuf> {
    g.cluster.clone().ok_or_else(|| {
        engine::Error::Invalid("no cluster given: pass --cluster DIR or set DIRCTL_CLUSTER".into())
            .into()
    })
}

impl Ctx {
    pub fn open(g: &Global) -> Result<Ctx> {
        let root = cluster_root(g)?;
        let options = ClusterOptions {
            lock_timeout: Duration::from_millis(g.lock_timeout_ms),
            clock: clock()?,
            region: g.region.clone(),
            failpoint: std::env::var("DIRCTL_FAILPOINT").ok(),
            retain_log_entries: g.retain_log_entries,
        };
        let cluster = Cluster::open(&root, options)
            .with_context(|| format!("open cluster {}", root.display()))?;
        if let Some(r) = &g.region {
            cluster.topology().region(r)?;
        }
        let session = match &g.session {
            Some(p) => Some((p.clone(), Session::load(p)?)),
            None => None,
        };
        Ok(Ctx {
            cluster,
            output: g.output,
            session,
        })
    }

    /// The session's datacenter affinity, chosen on first use: the datacenter nearest the region.
    fn session_dc(&mut self) -> Result<Option<String>> {
        let nearest = self.cluster.nearest_datacenter()?;
        Ok(self
            .session
            .as_mut()
            .map(|(_, s)| s.datacenter.get_or_insert(nearest).clone()))
    }

    pub fn tenant_partition(&self, tenant: &str) -> Result<(String, u32)> {
        let t = self.cluster.topology().tenant(tenant)?;
        Ok((t.id.clone(), t.partition))
    }

    pub fn write<T>(
        &mut self,
        partition: u32,
        build: impl FnOnce(&Replica) -> engine::Result<(Vec<Op>, T)>,
    ) -> Result<(T, Token)> {
        let dc = self.session_dc()?;
        let (out, token) = self.cluster.write(partition, dc.as_deref(), build)?;
        if let Some((path, s)) = &mut self.session {
            s.observe(&token);
            s.save(path)?;
        }
        Ok((out, token))
    }

    pub fn read<T>(
        &mut self,
        partition: u32,
        answer: impl Fn(&Replica) -> engine::Result<T>,
    ) -> Result<(T, ServedBy)> {
        let dc = self.session_dc()?;
        let token = self
            .session
            .as_ref()
            .and_then(|(_, s)| s.tokens.get(&partition).cloned());
        let (out, served) = self
            .cluster
            .read(partition, dc.as_deref(), token.as_ref(), answer)?;
        if let Some((path, s)) = &mut self.session {
            s.save(path)?;
        }
        Ok((out, served))
    }
}
