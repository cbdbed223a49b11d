//! Commit or cut: what becomes of an entry once the primary, the sync standby and the
//! session's secondary answered (write path steps 7 and 8 of docs/design.md), and of the
//! entries a crashed writer left above a reopened primary's commit lsn (step 3).

use crate::log::Position;

/// Which replica of the partition a command acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Primary,
    Standby,
    /// The secondary a session reads from, when the entry was shipped to it.
    Session,
}

/// One thing the I/O layer does to settle an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Cut every entry after `lsn` off that replica (undone with the entries' previous values).
    CutAfter { on: Side, lsn: u64 },
    /// Note the primary's commit lsn in memory (it reaches disk with the primary's next batch).
    NoteCommit { lsn: u64 },
    /// Record the primary's commit lsn, synced.
    RecordCommit { lsn: u64 },
    /// Raise the partition's term from `first_lsn` on (`term_starts`), so that a copy of a cut
    /// entry left anywhere is a fenced tail, never served, shipped or promoted, and no
    /// (term, lsn) ever names two different entries.
    FenceFrom { first_lsn: u64 },
}

/// A command, and whether the settling depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub command: Command,
    /// A required step that fails stops the plan (what comes after it is not done) and
    /// makes the outcome unknown; a step not required is tried and its failure ignored.
    pub required: bool,
}

/// What the answers made of the entry, before the steps ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Durable on the primary and the sync standby: acknowledge it.
    Committed,
    /// The standby failed: cut it off wherever it landed and fence it.
    Refused,
    /// The primary's own write failed: whatever is done, the outcome cannot be known.
    Unknown,
}

/// How the write ends, which the caller turns into `Ok`, `Error::Unavailable` (exit 5) or
/// `Error::OutcomeUnknown` (exit 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Nothing was applied, anywhere, then or later.
    NothingApplied,
    OutcomeUnknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub verdict: Verdict,
    pub steps: Vec<Step>,
}

impl Settlement {
    /// The write's outcome once the steps were carried out with result `carried`.
    pub fn outcome(&self, carried_ok: bool) -> Outcome {
        match (self.verdict, carried_ok) {
            (Verdict::Committed, _) => Outcome::Committed,
            (Verdict::Refused, true) => Outcome::NothingApplied,
            (Verdict::Refused, false) | (Verdict::Unknown, _) => Outcome::OutcomeUnknown,
        }
    }
}

fn required(command: Command) -> Step {
    Step {
        command,
        required: true,
    }
}

fn best_effort(command: Command) -> Step {
    Step {
        command,
        required: false,
    }
}

/// Settles the entry at `commit + 1` from its replicas' answers: whether the primary and the
/// sync standby made it durable, and, when it was shipped to a session's secondary, whether
/// that one took it.
///
/// Standby failed: the session's secondary is cut first, then the primary (a crash in between
/// leaves the entry on the primary, in doubt, where the next writer settles it), then the
/// lsn is fenced, since the standby may hold a copy (its write may have failed after its WAL).
/// Primary failed: the copies elsewhere are cut and fenced as far as possible.
pub fn settle_reply(
    commit: u64,
    primary_ok: bool,
    standby_ok: bool,
    session_took: Option<bool>,
) -> Settlement {
    let lsn = commit + 1;
    let cut = |on| Command::CutAfter { on, lsn: commit };
    match (primary_ok, standby_ok) {
        (true, true) => Settlement {
            verdict: Verdict::Committed,
            // Recording the commit lsn can lag: a reopened primary settles it again.
            steps: vec![best_effort(Command::NoteCommit { lsn })],
        },
        (true, false) => {
            let mut steps = Vec::new();
            if session_took == Some(true) {
                steps.push(required(cut(Side::Session)));
            }
            steps.push(required(cut(Side::Primary)));
            steps.push(required(Command::FenceFrom { first_lsn: lsn }));
            Settlement {
                verdict: Verdict::Refused,
                steps,
            }
        }
        (false, _) => {
            let mut steps = vec![best_effort(cut(Side::Standby))];
            if session_took.is_some() {
                steps.push(best_effort(cut(Side::Session)));
            }
            steps.push(best_effort(Command::FenceFrom { first_lsn: lsn }));
            Settlement {
                verdict: Verdict::Unknown,
                steps,
            }
        }
    }
}

/// Carries `steps` out in order with `exec`: the first required step that fails stops the
/// plan and is returned; a failed step that is not required is passed over.
pub fn carry_out<E>(
    steps: &[Step],
    mut exec: impl FnMut(Command) -> Result<(), E>,
) -> Result<(), E> {
    for step in steps {
        match exec(step.command) {
            Err(e) if step.required => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// What a reopened primary holds above its commit lsn, and what settles it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InDoubt {
    /// Nothing above the commit lsn.
    Settled,
    /// The primary's last entry has a term above the control plane's: this view of the
    /// control plane is stale, or the replica was written by a newer primary (`Error::Fenced`).
    AboveTerm,
    /// Entries above the commit lsn, and no sync standby to compare them with (`Error::Unavailable`).
    NeedsStandby,
    /// Commit through `through`: the standby holds those entries with the same terms; cut
    /// the rest and fence them. Every one of `commands` is required (`carry_out` stops at
    /// the first that fails).
    Settle {
        through: u64,
        commands: Vec<Command>,
    },
}

/// Settles the entries above a reopened primary's `commit` lsn (a crashed writer's). `terms`
/// holds, for each lsn from `commit + 1` up to `last.lsn`, the term of the primary's entry
/// and of the standby's (`None` where it holds none), or is `None` when the sync standby is
/// unreachable. An entry the standby holds with the same term may have been acknowledged:
/// it is committed, as is everything before it; the first that differs and all after it
/// were never acknowledged: they are cut and fenced.
pub fn settle_in_doubt(
    partition_term: u64,
    last: Position,
    commit: u64,
    terms: Option<&[(Option<u64>, Option<u64>)]>,
) -> InDoubt {
    if last.term > partition_term {
        return InDoubt::AboveTerm;
    }
    if last.lsn <= commit {
        return InDoubt::Settled;
    }
    let Some(terms) = terms else {
        return InDoubt::NeedsStandby;
    };
    let agreeing = terms
        .iter()
        .take_while(|(primary, standby)| primary.is_some() && primary == standby)
        .count() as u64;
    let through = (commit + agreeing).min(last.lsn);
    let mut commands = vec![
        Command::CutAfter {
            on: Side::Primary,
            lsn: through,
        },
        Command::RecordCommit { lsn: through },
    ];
    if through < last.lsn {
        commands.push(Command::FenceFrom {
            first_lsn: through + 1,
        });
    }
    InDoubt::Settle { through, commands }
}

impl InDoubt {
    /// The steps that carry a settlement out: each required.
    pub fn steps(commands: &[Command]) -> Vec<Step> {
        commands.iter().map(|&command| required(command)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(on: Side, lsn: u64) -> Command {
        Command::CutAfter { on, lsn }
    }

    /// Every combination of answers: which replicas are cut, and how the write ends.
    #[test]
    fn answers_decide_commit_or_cut() {
        use Outcome::*;
        for primary in [true, false] {
            for standby in [true, false] {
                for session in [None, Some(false), Some(true)] {
                    let s = settle_reply(9, primary, standby, session);
                    let commands: Vec<Command> = s.steps.iter().map(|s| s.command).collect();
                    let case = format!("primary {primary} standby {standby} session {session:?}");
                    match (primary, standby) {
                        (true, true) => {
                            assert_eq!(commands, [Command::NoteCommit { lsn: 10 }], "{case}");
                            assert_eq!(s.outcome(true), Committed, "{case}");
                            assert_eq!(s.outcome(false), Committed, "{case}");
                        }
                        (true, false) => {
                            let mut want = Vec::new();
                            if session == Some(true) {
                                want.push(cut(Side::Session, 9));
                            }
                            want.push(cut(Side::Primary, 9));
                            want.push(Command::FenceFrom { first_lsn: 10 });
                            assert_eq!(commands, want, "{case}");
                            assert!(s.steps.iter().all(|s| s.required), "{case}");
                            assert_eq!(s.outcome(true), NothingApplied, "{case}");
                            assert_eq!(s.outcome(false), OutcomeUnknown, "{case}");
                        }
                        (false, _) => {
                            let mut want = vec![cut(Side::Standby, 9)];
                            if session.is_some() {
                                want.push(cut(Side::Session, 9));
                            }
                            want.push(Command::FenceFrom { first_lsn: 10 });
                            assert_eq!(commands, want, "{case}");
                            assert!(s.steps.iter().all(|s| !s.required), "{case}");
                            assert_eq!(s.outcome(true), OutcomeUnknown, "{case}");
                        }
                    }
                }
            }
        }
    }

    /// A failing required step stops the plan; a failing best-effort one does not.
    #[test]
    fn carry_out_stops_at_the_first_failed_required_step() {
        let refused = settle_reply(4, true, false, Some(true));
        for failing in 0..refused.steps.len() {
            let mut ran = Vec::new();
            let got = carry_out(&refused.steps, |c| {
                ran.push(c);
                if ran.len() == failing + 1 {
                    Err(c)
                } else {
                    Ok(())
                }
            });
            assert_eq!(got, Err(refused.steps[failing].command));
            assert_eq!(ran.len(), failing + 1, "nothing after the failed step runs");
        }
        let unknown = settle_reply(4, false, true, Some(false));
        let mut ran = 0;
        let got: Result<(), ()> = carry_out(&unknown.steps, |_| {
            ran += 1;
            Err(())
        });
        assert_eq!(got, Ok(()));
        assert_eq!(ran, unknown.steps.len(), "every best-effort step is tried");
    }

    fn at(term: u64, lsn: u64) -> Position {
        Position { term, lsn }
    }

    #[test]
    fn nothing_in_doubt_or_a_stale_view_decides_before_the_standby_is_asked() {
        assert_eq!(settle_in_doubt(2, at(2, 5), 5, None), InDoubt::Settled);
        assert_eq!(settle_in_doubt(2, at(1, 3), 5, None), InDoubt::Settled);
        assert_eq!(settle_in_doubt(2, at(3, 5), 5, None), InDoubt::AboveTerm);
        assert_eq!(
            settle_in_doubt(2, at(3, 7), 5, Some(&[])),
            InDoubt::AboveTerm
        );
        assert_eq!(settle_in_doubt(2, at(2, 6), 5, None), InDoubt::NeedsStandby);
    }

    /// Three entries in doubt (lsn 6 to 8), every pattern of what the standby holds: the
    /// primary commits the longest prefix the standby holds with the same term.
    #[test]
    fn entries_in_doubt_commit_exactly_the_prefix_the_standby_holds() {
        let primary = [Some(2), Some(2), Some(2)];
        let choices = [None, Some(1), Some(2)];
        for a in choices {
            for b in choices {
                for c in choices {
                    let standby = [a, b, c];
                    let terms: Vec<_> = primary.iter().copied().zip(standby).collect();
                    let prefix = standby.iter().take_while(|t| **t == Some(2)).count() as u64;
                    let through = 5 + prefix;
                    let mut want = vec![
                        cut(Side::Primary, through),
                        Command::RecordCommit { lsn: through },
                    ];
                    if through < 8 {
                        want.push(Command::FenceFrom {
                            first_lsn: through + 1,
                        });
                    }
                    assert_eq!(
                        settle_in_doubt(2, at(2, 8), 5, Some(&terms)),
                        InDoubt::Settle {
                            through,
                            commands: want
                        },
                        "standby {standby:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_entry_missing_on_the_primary_is_never_committed() {
        let terms = [(Some(1), Some(1)), (None, None)];
        assert!(matches!(
            settle_in_doubt(1, at(1, 7), 5, Some(&terms)),
            InDoubt::Settle { through: 6, .. }
        ));
    }
}
