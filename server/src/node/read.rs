//! The read without a session token that the Graph API answers in place:
//! `Node::read_if_free`.

use std::time::Instant;

use engine::client::Directory as _;
use engine::request::{Envelope, Note, Request, Response};
use engine::Result;

use super::{outcome, Node};

/// How stale a control plane `read_if_free` may route by, in ms (a read carries no token).
const READ_RECHECK_MS: u64 = 10;
/// How often `read_if_free` tries the cluster handle before leaving the read to the pool.
const READ_TRIES: u32 = 32;

impl Node {
    /// A read without a session token, carried out at once on the calling thread when the
    /// cluster handle is free; None when it is not (or the request is not such a read):
    /// then `execute` it on the blocking pool. Such a read waits for nothing (no token to
    /// catch up to), and routes by a control plane looked at within `READ_RECHECK_MS`. The
    /// Graph API answers its reads this way, without a hop to another thread.
    pub fn read_if_free(
        &self,
        envelope: &Envelope,
        request: &Request,
    ) -> Option<Result<(Response, Vec<Note>)>> {
        if !request.is_read()
            || envelope.token.is_some()
            || matches!(request, Request::ListAudit { .. })
        {
            return None;
        }
        let started = Instant::now();
        let recheck = self.read_recheck_due();
        if recheck {
            if let Err(e) = self.routing_topology() {
                return Some(Err(e));
            }
        }
        // Another read holds the handle for microseconds: ask again a few times before
        // giving up (a batch of writes holds it for a commit's fsyncs and round trips).
        let mut dir = (0..READ_TRIES).find_map(|i| match self.dir.try_lock() {
            Ok(d) => Some(d),
            Err(_) if i + 1 < READ_TRIES => {
                std::thread::yield_now();
                None
            }
            Err(_) => None,
        })?;
        if recheck {
            if let Err(e) = self.refresh(dir.cluster_mut()) {
                return Some(Err(e));
            }
        }
        let got = dir.execute_with(envelope, request.clone(), &mut |_| {});
        let notes = dir.take_notes();
        drop(dir);
        let out = got.map(|r| (r, notes));
        self.metrics
            .note_request(request.name(), outcome(&out), started.elapsed());
        Some(out)
    }

    /// Whether `read_if_free` should look for a changed control plane now (claims the look).
    fn read_recheck_due(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.read_checked_ms.load(Relaxed);
        now.saturating_sub(last) >= READ_RECHECK_MS
            && self
                .read_checked_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}
