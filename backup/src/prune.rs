//! Which backups a prune keeps: a pure decision over (id, date) pairs.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};

#[derive(Clone, Copy, Debug)]
pub struct Keep {
    /// The newest backups of this many distinct days.
    pub daily: usize,
    /// The newest backup of each of this many most recent ISO weeks.
    pub weekly: usize,
}

/// The IDs to keep. The newest backup is always kept, whatever `keep` says.
pub fn plan(backups: &[(String, NaiveDate)], keep: Keep) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, NaiveDate)> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut kept = BTreeSet::new();
    if let Some((id, _)) = newest_first.first() {
        kept.insert(id.clone());
    }
    let mut days = BTreeSet::new();
    let mut weeks = BTreeSet::new();
    for (id, date) in &newest_first {
        if days.len() < keep.daily && days.insert(*date) {
            kept.insert(id.clone());
        }
        let week = (date.iso_week().year(), date.iso_week().week());
        if weeks.len() < keep.weekly && weeks.insert(week) {
            kept.insert(id.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u32) -> Vec<(String, NaiveDate)> {
        (1..=n)
            .map(|d| {
                let date = NaiveDate::from_ymd_opt(2026, 12, d).expect("date");
                (date.to_string(), date)
            })
            .collect()
    }

    #[test]
    fn keeps_n_daily_and_one_per_week() {
        // 2026-12-01..=2026-12-21; ISO weeks: 49 (Dec 1-6), 50 (7-13), 51 (14-20), 52 (21-).
        let kept = plan(
            &days(21),
            Keep {
                daily: 3,
                weekly: 3,
            },
        );
        let want: BTreeSet<String> = ["2026-12-19", "2026-12-20", "2026-12-21", "2026-12-13"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(kept, want);
    }

    #[test]
    fn the_newest_is_kept_even_with_zero() {
        let kept = plan(
            &days(5),
            Keep {
                daily: 0,
                weekly: 0,
            },
        );
        assert_eq!(
            kept.into_iter().collect::<Vec<_>>(),
            vec!["2026-12-05".to_string()]
        );
    }
}
