//! Shipping: long-lived threads that append a writer's entries to other replicas, so that
//! the primary's own synced write runs at the same time (a thread spawned per write cost
//! about 60 µs). Ships to any `ReplicaLog`; the replica's term check fences a stale writer.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use crate::error::Result;
use crate::log::Entry;
use crate::replica_log::ReplicaLog;

/// One shipping thread, fed jobs in order.
pub struct Shipper {
    jobs: Sender<Box<dyn FnOnce() + Send>>,
}

impl Shipper {
    pub fn start() -> Shipper {
        let (jobs, rx) = channel::<Box<dyn FnOnce() + Send>>();
        std::thread::spawn(move || {
            for job in rx {
                job();
            }
        });
        Shipper { jobs }
    }

    /// Appends `entries` (synced, `encoded[i]` being `entries[i].encode()`) to `replica` as
    /// the writer of `term`, on the shipper's thread; the answer comes on the receiver.
    pub fn ship(
        &self,
        replica: Arc<dyn ReplicaLog + Send + Sync>,
        entries: Arc<[Entry]>,
        encoded: Arc<[Vec<u8>]>,
        term: u64,
    ) -> Receiver<Result<()>> {
        let (tx, rx) = channel();
        let job = Box::new(move || {
            let r = replica.append_encoded(&entries, &encoded, term);
            // Let go of the replica before answering: the caller may release and reopen it.
            drop(replica);
            let _ = tx.send(r);
        });
        // A dead shipper drops the job, and with it the sender: the receiver then reports it.
        let _ = self.jobs.send(job);
        rx
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::log::Position;
    use crate::memlog::MemLog;

    fn shipped(term: u64, lsn: u64) -> (Arc<[Entry]>, Arc<[Vec<u8>]>) {
        let e = crate::log::put_entry(term, lsn, b"k", &[lsn as u8], None);
        let encoded: Arc<[Vec<u8>]> = Arc::from(vec![e.encode()]);
        (Arc::from(vec![e]), encoded)
    }

    #[test]
    fn a_shipped_entry_of_a_stale_writer_is_refused() {
        let replica = Arc::new(MemLog::new("s"));
        let shipper = Shipper::start();
        let (entries, encoded) = shipped(1, 1);
        shipper
            .ship(replica.clone(), entries, encoded, 1)
            .recv()
            .unwrap()
            .unwrap();
        replica.observe_term(2).unwrap();
        let (entries, encoded) = shipped(1, 2);
        let answer = shipper
            .ship(replica.clone(), entries, encoded, 1)
            .recv()
            .unwrap();
        assert!(matches!(answer, Err(Error::Fenced(_))));
        assert_eq!(replica.last().unwrap(), Position { term: 1, lsn: 1 });
        assert_eq!(replica.get(b"k").unwrap(), Some(vec![1]));
    }
}
