//! The scenarios the simulator explores. Names say which race each one invites.

use marsh::testing::memory::TokenStyle;

use super::{ActorPlan, Op, Plan};

pub fn plan(style: TokenStyle, machines: usize, cache_yields: bool, actors: Vec<ActorPlan>) -> Plan {
    Plan { machines, actors, style, cache_yields, initial: vec!["base.json"], format: 2 }
}

/// The seed: a reader's two pulls against a writer's push (the second pull is where a wrong token would hide data).
pub fn seed(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A pull,pull", 0, &[Op::Pull, Op::Pull]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// The same plan on a format-1 bucket (a monolith index), which stays format 1.
pub fn on_format1(mut plan: Plan) -> Plan {
    plan.format = 1;
    plan
}

/// W1 on format 2, two writers whose files live in different shards: their shard writes do not meet, their commit
/// records do.
pub fn two_writers_on_two_shards(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A write,push", 0, &[Op::Write("a/a1"), Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b/b1"), Op::Push]),
        ],
    )
}

/// W1: two writers push disjoint files at the same time, without a lock (on format 2, into the same shard).
pub fn two_writers(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A write,push", 0, &[Op::Write("a1"), Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// Two machines each doing three operations (the "2 engines × 3 operations" scope).
pub fn two_by_three(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A pull,write,push", 0, &[Op::Pull, Op::Write("a1"), Op::Push]),
            ActorPlan::new("B write,push,pull", 1, &[Op::Write("b1"), Op::Push, Op::Pull]),
        ],
    )
}

/// W2/W3 on one machine: a swamp process writes and exits without pushing while another process on the same cache
/// pulls and pushes, and a second machine pushes (so the pull takes the full path). Cache calls interleave too.
pub fn writer_and_syncer_share_a_cache(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new("A1 write", 0, &[Op::Write("w1")]),
            ActorPlan::new("A2 pull,push", 0, &[Op::Pull, Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// The same with a writer that marks in bulk (swamp before per-path marks): the dirty marker and the clean record
/// carry the whole protocol.
pub fn writer_and_syncer_share_a_cache_bare(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new("A1 write (bare mark)", 0, &[Op::WriteBare("w1")]),
            ActorPlan::new("A2 pull,push", 0, &[Op::Pull, Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// W3 in bulk: a bare markDirty and its write landing while another instance of the cache pushes (its first push, so
/// it walks). The push listed the cache before the write; it must not record the cache clean at the writer's marker.
/// The pushing actor comes first so that a depth-first search moves the write through the push early on.
pub fn bare_write_during_a_push(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new("A2 push", 0, &[Op::Push]),
            ActorPlan::new("A1 write (bare mark)", 0, &[Op::WriteBare("w1")]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// A push racing another instance's pull on one cache: A1 writes and pushes, then writes twice more under bare marks,
/// while A2 pulls (downloading base files into the shared cache) and pushes. A push that walked before that pull's
/// download but read the view after it took the downloaded file for one deleted here, and removed it from the bucket.
pub fn push_racing_a_pull_on_one_cache(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new(
                "A1 write,push,write,write (bare marks)",
                0,
                &[Op::WriteBare("w0"), Op::Push, Op::WriteBare("w1"), Op::WriteBare("w2")],
            ),
            ActorPlan::new("A2 pull,push", 0, &[Op::Pull, Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// Bare marks around a sync on one cache: A1 writes under a bare mark, pulls, and writes again under another, while A2
/// pulls and pushes and B pushes (so the pulls take the full path). With a bare mark pending A2's pull walks for its
/// push; a write under a later mark must make the push walk again.
pub fn bare_marks_around_a_sync(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new(
                "A1 write,pull,write (bare marks)",
                0,
                &[Op::WriteBare("w1"), Op::Pull, Op::WriteBare("w2")],
            ),
            ActorPlan::new("A2 pull,push", 0, &[Op::Pull, Op::Push]),
            ActorPlan::new("B write,push", 1, &[Op::Write("b1"), Op::Push]),
        ],
    )
}

/// Three machines and a shared cache, several operations each: the broad random scenario.
pub fn busy(style: TokenStyle) -> Plan {
    plan(
        style,
        3,
        true,
        vec![
            ActorPlan::new("A pull,write,push,pull", 0, &[Op::Pull, Op::Write("a1"), Op::Push, Op::Pull]),
            ActorPlan::new("A' write,write,push", 0, &[Op::Write("a2"), Op::Write("d/a3"), Op::Push]),
            ActorPlan::new("B write,push,pull", 1, &[Op::Write("b1"), Op::Push, Op::Pull]),
            ActorPlan::new("C pull,pull,write,push", 2, &[Op::Pull, Op::Pull, Op::Write("c1"), Op::Push]),
        ],
    )
}

/// A process killed after `polls` polls in the middle of a push, while another machine writes and pulls.
pub fn crash_during_push(style: TokenStyle, polls: usize) -> Plan {
    let mut crashing = ActorPlan::new("A write,push (killed)", 0, &[Op::Write("a1"), Op::Write("a2"), Op::Push]);
    crashing.crash_after = Some(polls);
    plan(style, 2, true, vec![crashing, ActorPlan::new("B write,push,pull", 1, &[Op::Write("b1"), Op::Push, Op::Pull])])
}

/// A process marks the cache dirty, another process on the same cache pushes before the write lands, then the first
/// process writes and pushes: its own push must walk although the sidecar says clean.
pub fn late_write_and_its_own_push(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new("A1 write late (bare mark),push", 0, &[Op::WriteLateBare("w1"), Op::Push]),
            ActorPlan::new("A2 push", 0, &[Op::Push]),
        ],
    )
}

/// W19/W20: two machines edit the same file at once and push; one of them pulls afterwards.
pub fn same_file_edits(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A pull,write,push", 0, &[Op::Pull, Op::Write("base.json"), Op::Push]),
            ActorPlan::new("B pull,write,push,pull", 1, &[Op::Pull, Op::Write("base.json"), Op::Push, Op::Pull]),
        ],
    )
}

/// W19: two machines create the same new file at once (no common base).
pub fn same_new_file(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A write,push", 0, &[Op::Write("new.json"), Op::Push]),
            ActorPlan::new("B write,push,pull", 1, &[Op::Write("new.json"), Op::Push, Op::Pull]),
        ],
    )
}

/// W21: one machine deletes a file while another edits it; a third only pulls.
pub fn delete_and_edit(style: TokenStyle) -> Plan {
    plan(
        style,
        3,
        false,
        vec![
            ActorPlan::new("A pull,delete,push", 0, &[Op::Pull, Op::Delete("base.json"), Op::Push]),
            ActorPlan::new("B pull,write,push", 1, &[Op::Pull, Op::Write("base.json"), Op::Push]),
            ActorPlan::new("C pull,pull", 2, &[Op::Pull, Op::Pull]),
        ],
    )
}

/// W21/W23: a deletion announced by a bare markDirty, while another machine pulls and pushes a file of its own.
pub fn bare_deletion(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new("A pull,delete(bare),push", 0, &[Op::Pull, Op::DeleteBare("base.json"), Op::Push]),
            ActorPlan::new("B pull,write,push,pull", 1, &[Op::Pull, Op::Write("b1"), Op::Push, Op::Pull]),
        ],
    )
}

/// Everything at once on one file: edits and a deletion on three machines, a shared cache, re-creation after a delete.
pub fn one_file_busy(style: TokenStyle) -> Plan {
    plan(
        style,
        3,
        true,
        vec![
            ActorPlan::new("A pull,write,push,pull", 0, &[Op::Pull, Op::Write("base.json"), Op::Push, Op::Pull]),
            ActorPlan::new("A' write,push", 0, &[Op::Write("base.json"), Op::Push]),
            ActorPlan::new(
                "B pull,delete,push,write,push",
                1,
                &[Op::Pull, Op::Delete("base.json"), Op::Push, Op::Write("base.json"), Op::Push],
            ),
            ActorPlan::new("C pull,write,push,pull", 2, &[Op::Pull, Op::Write("base.json"), Op::Push, Op::Pull]),
        ],
    )
}

/// A process killed while it pushes a deletion and an edit, while another machine edits the same file.
pub fn crash_during_deletion(style: TokenStyle, polls: usize) -> Plan {
    let mut crashing = ActorPlan::new(
        "A pull,delete,write,push (killed)",
        0,
        &[Op::Pull, Op::Delete("base.json"), Op::Write("a1"), Op::Push],
    );
    crashing.crash_after = Some(polls);
    plan(
        style,
        2,
        true,
        vec![
            crashing,
            ActorPlan::new("B pull,write,push,pull", 1, &[Op::Pull, Op::Write("base.json"), Op::Push, Op::Pull]),
        ],
    )
}

/// W22: a process marks and writes a file while another process on the same cache pushes, then exits without pushing.
pub fn mark_during_a_push(style: TokenStyle) -> Plan {
    plan(
        style,
        1,
        true,
        vec![
            ActorPlan::new("A1 write", 0, &[Op::Write("w1")]),
            ActorPlan::new("A2 write,push", 0, &[Op::Write("a2"), Op::Push]),
        ],
    )
}

/// Two-phase pushes: two machines edit one file and push it in two phases, interleaved with each other.
pub fn two_phase_same_file(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new(
                "A pull,write,prepare,commit",
                0,
                &[Op::Pull, Op::Write("base.json"), Op::Prepare, Op::Commit],
            ),
            ActorPlan::new(
                "B pull,write,prepare,commit,pull",
                1,
                &[Op::Pull, Op::Write("base.json"), Op::Prepare, Op::Commit, Op::Pull],
            ),
        ],
    )
}

/// A two-phase edit of a file another machine deletes between the prepare and the commit: the commit must not put
/// the entry back (a zombie of a deleted version).
pub fn two_phase_edit_and_delete(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new(
                "A pull,write,prepare,commit",
                0,
                &[Op::Pull, Op::Write("base.json"), Op::Prepare, Op::Commit],
            ),
            ActorPlan::new("B pull,delete,push,pull", 1, &[Op::Pull, Op::Delete("base.json"), Op::Push, Op::Pull]),
        ],
    )
}

/// A two-phase push with a write and a deletion, a write marked between its phases on the same cache, and a plain
/// push of the same files on another machine.
pub fn two_phase_and_a_push(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        true,
        vec![
            ActorPlan::new(
                "A pull,write,delete,prepare,commit",
                0,
                &[Op::Pull, Op::Write("a1"), Op::Delete("base.json"), Op::Prepare, Op::Commit],
            ),
            ActorPlan::new("A' write", 0, &[Op::Write("a2")]),
            ActorPlan::new(
                "B pull,write,write,push,pull",
                1,
                &[Op::Pull, Op::Write("base.json"), Op::Write("a1"), Op::Push, Op::Pull],
            ),
        ],
    )
}

/// A process that prepared and never committed (stopped between the phases), while another machine edits the files.
pub fn prepare_without_commit(style: TokenStyle) -> Plan {
    plan(
        style,
        2,
        false,
        vec![
            ActorPlan::new(
                "A pull,write,delete,prepare (stops)",
                0,
                &[Op::Pull, Op::Write("a1"), Op::Delete("base.json"), Op::Prepare],
            ),
            ActorPlan::new("B pull,write,push,pull", 1, &[Op::Pull, Op::Write("a1"), Op::Push, Op::Pull]),
        ],
    )
}
