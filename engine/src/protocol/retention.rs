//! Log retention: how far every replica's log may be pruned after a `sync`.

/// The lsn through which log entries may be pruned: what every reachable replica holds
/// (the lowest of their last lsns `lasts`), capped at the primary's `commit` lsn, minus
/// `retain_log_entries` (at least 1: never the last entry, so that a replica can always find
/// where it agrees with the primary). `None`: nothing may be pruned.
pub fn retention_point(lasts: &[u64], commit: u64, retain_log_entries: u64) -> Option<u64> {
    let through = lasts
        .iter()
        .copied()
        .min()
        .unwrap_or(0)
        .min(commit)
        .saturating_sub(retain_log_entries.max(1));
    (through > 0).then_some(through)
}

/// Whether a replica whose log starts at `first_log_lsn` has entries to prune through `through`.
pub fn must_prune(first_log_lsn: Option<u64>, through: u64) -> bool {
    first_log_lsn.is_some_and(|first| first <= through)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_point_keeps_what_the_slowest_replica_and_the_margin_need() {
        // (lasts, commit, retain) -> through
        let table: &[(&[u64], u64, u64, Option<u64>)] = &[
            (&[100, 90, 80], 100, 10, Some(70)),
            (&[100, 90, 80], 75, 10, Some(65)),
            (&[100, 90, 80], 100, 80, None),
            (&[100, 90, 80], 100, 79, Some(1)),
            (&[100], 100, 0, Some(99)),
            (&[100, 100], 100, 1, Some(99)),
            (&[5, 0], 5, 1, None),
            (&[], 100, 10, None),
            (&[3], 3, 100_000, None),
        ];
        for (lasts, commit, retain, want) in table {
            assert_eq!(
                retention_point(lasts, *commit, *retain),
                *want,
                "{lasts:?} commit {commit} retain {retain}"
            );
        }
    }

    #[test]
    fn a_replica_is_pruned_only_when_its_log_reaches_the_point() {
        assert!(!must_prune(None, 10));
        assert!(must_prune(Some(1), 10));
        assert!(must_prune(Some(10), 10));
        assert!(!must_prune(Some(11), 10));
    }
}
