//! The gateway's decisions: where a read goes, and whether the replica chosen must pull
//! from the primary before it answers.

use crate::error::{Error, Result};
use crate::log::Position;
use crate::session::Token;
use crate::topology::{nearest, Datacenter, Partition, Topology};

/// Where reads of `partition` go, best first: the preferred datacenter (a session's), then
/// the undrained secondaries by great-circle distance from the caller's `region` (in the
/// topology's order without one), then the primary as the last resort unless its datacenter
/// is drained (it serves only what is committed: `read_check`).
pub fn read_order(
    topology: &Topology,
    partition: u32,
    prefer: Option<&str>,
    region: Option<&str>,
) -> Result<Vec<String>> {
    let origin = match prefer.or(region) {
        Some(place) => Some(topology.region(place)?),
        None => None,
    };
    let mut secondaries: Vec<&Datacenter> = topology
        .secondaries(partition)?
        .into_iter()
        .filter(|d| !d.drained)
        .collect();
    if let Some(o) = origin {
        secondaries.sort_by(|a, b| {
            a.location
                .distance_km(&o)
                .total_cmp(&b.location.distance_km(&o))
        });
    }
    let primary = &topology.partition(partition)?.primary;
    let last_resort = topology
        .datacenters
        .iter()
        .filter(|d| d.name == *primary && !d.drained);
    Ok(secondaries
        .into_iter()
        .chain(last_resort)
        .map(|d| d.name.clone())
        .collect())
}

/// The datacenter nearest the caller's `region` (a session's affinity when it starts): the
/// nearest undrained one, else the first datacenter; without a region, as seen from the
/// first datacenter. A topology without datacenters is refused, never a panic.
pub fn nearest_datacenter(topology: &Topology, region: Option<&str>) -> Result<String> {
    let origin = match region {
        Some(r) => topology.region(r)?,
        None => match topology.datacenters.first() {
            Some(d) => d.location,
            None => return Err(Error::Unavailable("the cluster has no datacenter".into())),
        },
    };
    nearest(&origin, topology.datacenters.iter().filter(|d| !d.drained))
        .or_else(|| topology.datacenters.first())
        .map(|d| d.name.clone())
        .ok_or_else(|| Error::Unavailable("the cluster has no datacenter".into()))
}

/// The lsn a read must reach for a session's `token`: what of it the partition's history
/// still holds (`Partition::kept_of_token`); 0 without a token.
pub fn token_need(p: &Partition, token: Option<&Token>) -> u64 {
    token.map_or(0, |t| p.kept_of_token(t.term, t.lsn))
}

/// How much of a session token's history its partition still holds (`Partition::kept_of_token`),
/// after the token is checked (`check_token`): what any client, embedded or remote, waits for.
pub fn kept_of_token(topology: &Topology, token: &Token) -> Result<u64> {
    let p = topology.partition(token.partition)?;
    check_token(p, token, None)?;
    Ok(p.kept_of_token(token.term, token.lsn))
}

/// Refuses a session's `token` that is beyond anything partition `p` ever held: of a term
/// after the partition's, or needing an lsn (`token_need`) past the primary's `last` entry,
/// when the primary could be read. No replica could ever reach such a token (a hand-edited
/// session file, one of another cluster): it is refused, never waited for.
pub fn check_token(p: &Partition, token: &Token, primary_last: Option<Position>) -> Result<()> {
    let why = if token.term > p.term {
        format!(
            "its term {} is after the partition's term {}",
            token.term, p.term
        )
    } else {
        let need = token_need(p, Some(token));
        match primary_last {
            Some(last) if need > last.lsn => format!(
                "its lsn {need} is past the last entry of the primary {} (term {}, lsn {})",
                p.primary, last.term, last.lsn
            ),
            _ => return Ok(()),
        }
    };
    Err(Error::ImpossibleToken(format!(
        "replica token {token} is beyond anything partition {} ever held: {why}",
        p.id
    )))
}

/// Why a replica must pull from the primary before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pull {
    /// Behind the session's token.
    BehindToken,
    /// Holds a fenced primary's uncommitted tail, to be cut first.
    FencedTail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadCheck {
    /// Answer from this replica as it is.
    Serve,
    /// Pull (and cut) from the primary first.
    Pull(Pull),
    /// The primary holding entries above its commit lsn (a crashed writer's, durable on it
    /// alone): they are not facts until settled, so it answers nothing.
    Unsettled,
}

/// Whether a replica whose last entry is `last` may answer a read that must reach lsn
/// `need`. `primary_commit` is the replica's commit lsn when it is the primary.
pub fn read_check(
    p: &Partition,
    last: Position,
    primary_commit: Option<u64>,
    need: u64,
) -> ReadCheck {
    if primary_commit.is_some_and(|commit| last.lsn > commit) {
        ReadCheck::Unsettled
    } else if last.lsn < need {
        ReadCheck::Pull(Pull::BehindToken)
    } else if p.diverged(last) {
        ReadCheck::Pull(Pull::FencedTail)
    } else {
        ReadCheck::Serve
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::parse_datacenter;

    fn topology(drained: &[&str]) -> Topology {
        let dcs = [
            "westus@37.4,-122.1",
            "eastus@37.4,-79.4",
            "westeurope@52.4,4.9",
        ]
        .iter()
        .map(|s| {
            let mut d = parse_datacenter(s).expect("dc");
            d.drained = drained.contains(&d.name.as_str());
            d
        })
        .collect();
        // Partition 0: primary westus, standby eastus.
        Topology::new("c".into(), dcs, 1).expect("topology")
    }

    #[test]
    fn reads_go_to_the_nearest_undrained_secondary_then_the_primary() {
        // (drained, prefer, region) -> the order
        type Row<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
        );
        let table: &[Row] = &[
            (&[], None, None, &["eastus", "westeurope", "westus"]),
            (
                &[],
                None,
                Some("westeurope"),
                &["westeurope", "eastus", "westus"],
            ),
            (
                &[],
                None,
                Some("48.8,2.3"),
                &["westeurope", "eastus", "westus"],
            ),
            (
                &[],
                Some("westeurope"),
                Some("eastus"),
                &["westeurope", "eastus", "westus"],
            ),
            (
                &[],
                None,
                Some("WESTUS"),
                &["eastus", "westeurope", "westus"],
            ),
            (&["eastus"], None, None, &["westeurope", "westus"]),
            (&["westus"], None, None, &["eastus", "westeurope"]),
            (&["eastus", "westeurope", "westus"], None, None, &[]),
        ];
        for (drained, prefer, region, want) in table {
            let got = read_order(&topology(drained), 0, *prefer, *region).expect("order");
            assert_eq!(
                got, *want,
                "drained {drained:?} prefer {prefer:?} region {region:?}"
            );
        }
    }

    #[test]
    fn an_unknown_region_or_partition_is_refused() {
        let t = topology(&[]);
        assert!(matches!(
            read_order(&t, 0, None, Some("mars")),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            read_order(&t, 7, None, None),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            nearest_datacenter(&t, Some("mars")),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn nearest_datacenter_skips_drained_ones_and_never_panics() {
        let table: &[(&[&str], Option<&str>, &str)] = &[
            (&[], None, "westus"),
            (&[], Some("48.8,2.3"), "westeurope"),
            (&["westeurope"], Some("48.8,2.3"), "eastus"),
            (&["westus"], None, "eastus"),
            // Everything drained: the first datacenter.
            (
                &["eastus", "westeurope", "westus"],
                Some("eastus"),
                "westus",
            ),
        ];
        for (drained, region, want) in table {
            assert_eq!(
                nearest_datacenter(&topology(drained), *region).expect("dc"),
                *want,
                "drained {drained:?} region {region:?}"
            );
        }
        let mut empty = topology(&[]);
        empty.datacenters.clear();
        assert!(matches!(
            nearest_datacenter(&empty, None),
            Err(Error::Unavailable(_))
        ));
    }

    fn with_starts(starts: &[(u64, u64)]) -> Partition {
        crate::topology::tests::partition("westus", "eastus", starts)
    }

    #[test]
    fn a_token_needs_what_the_history_still_holds() {
        let p = with_starts(&[(1, 1), (2, 5), (3, 8)]);
        let token = |term, lsn| Token {
            partition: 0,
            term,
            lsn,
            datacenter: "eastus".into(),
        };
        assert_eq!(token_need(&p, None), 0);
        assert_eq!(token_need(&p, Some(&token(3, 12))), 12);
        assert_eq!(token_need(&p, Some(&token(2, 12))), 7);
        assert_eq!(token_need(&p, Some(&token(9, 12))), 0);
    }

    #[test]
    fn a_token_beyond_the_partitions_term_or_its_primarys_last_entry_is_refused() {
        // Term 1 from lsn 1, term 2 from lsn 8; the partition is at term 2.
        let p = with_starts(&[(1, 1), (2, 8)]);
        let token = |term, lsn| Token {
            partition: 0,
            term,
            lsn,
            datacenter: "b".into(),
        };
        let at = |term, lsn| Some(Position { term, lsn });
        // (token, the primary's last entry if it could be read) -> refused
        let table = [
            (token(2, 12), at(2, 12), false),
            (token(2, 12), None, false),
            (token(2, 13), at(2, 12), true),
            (token(2, 13), None, false),
            // Term 1's writes from lsn 8 on were replaced: it needs only lsn 7.
            (token(1, 50), at(2, 9), false),
            (token(1, 7), at(1, 6), true),
            (token(3, 1), None, true),
            (token(3, 1), at(2, 12), true),
        ];
        for (t, last, refused) in table {
            let got = check_token(&p, &t, last);
            assert_eq!(
                matches!(got, Err(Error::ImpossibleToken(_))),
                refused,
                "token {t}, primary at {last:?}: {got:?}"
            );
        }
    }

    /// Every (last lsn, term, primary or not) against a token and a fenced tail.
    #[test]
    fn read_check_serves_pulls_or_refuses() {
        // Term 2 started at lsn 5: an entry of term 1 at lsn 5 or later is a fenced tail.
        let p = with_starts(&[(1, 1), (2, 5)]);
        for term in 1..=2 {
            for lsn in 0..=8 {
                for commit in [None, Some(3), Some(8)] {
                    for need in [0, 4, 6] {
                        let last = Position { term, lsn };
                        let got = read_check(&p, last, commit, need);
                        let want = if commit.is_some_and(|c| lsn > c) {
                            ReadCheck::Unsettled
                        } else if lsn < need {
                            ReadCheck::Pull(Pull::BehindToken)
                        } else if term == 1 && lsn >= 5 {
                            ReadCheck::Pull(Pull::FencedTail)
                        } else {
                            ReadCheck::Serve
                        };
                        assert_eq!(got, want, "{last:?} commit {commit:?} need {need}");
                    }
                }
            }
        }
    }
}
