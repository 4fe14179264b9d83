//! Mutation proof: each deliberately flawed engine variant (a `flaw-*` cargo feature) must be caught by the simulator,
//! which prints a minimal violating schedule. Run one feature at a time, e.g.
//! `cargo test --features flaw-post-walk-head --test mutations -- --nocapture` (scripts/test.sh runs every one).
//! Without a flaw feature this file has nothing to prove and holds no test.
#![cfg(not(target_arch = "wasm32"))]
#![cfg(any(
    feature = "flaw-post-walk-head",
    feature = "flaw-blind-index-put",
    feature = "flaw-pull-clears-dirty",
    feature = "flaw-stale-walk-reuse",
    feature = "flaw-clean-at-current-marker",
    feature = "flaw-ignore-instance-mark",
    feature = "flaw-ignore-lost-lock",
    feature = "flaw-meta-after-shards",
    feature = "flaw-no-commit-journal",
    feature = "flaw-blind-object-put",
    feature = "flaw-delete-without-base-check",
    feature = "flaw-clear-all-marks",
    feature = "flaw-blind-control-create",
    feature = "flaw-control-retry-says-false",
    feature = "flaw-blind-commit"
))]

mod sim_world;

use marsh::testing::memory::TokenStyle;
use marsh::testing::sim::Sim;
// The lost-lock and control-plane flaws are proven on worlds of their own (`sim_world::lost_lock`,
// `sim_world::control_plane`), without the plans below.
#[cfg_attr(
    any(
        feature = "flaw-ignore-lost-lock",
        feature = "flaw-blind-control-create",
        feature = "flaw-control-retry-says-false"
    ),
    allow(unused_imports)
)]
use sim_world::{scenarios, Plan};

/// Explore `plan` exhaustively (or up to `cap` schedules, then `cap` random ones: a depth-first cap can stay in one corner
/// of a large scope), require a violation, and print the shrunk schedule.
#[cfg_attr(
    any(
        feature = "flaw-ignore-lost-lock",
        feature = "flaw-blind-control-create",
        feature = "flaw-control-retry-says-false"
    ),
    allow(dead_code)
)]
fn assert_caught(flaw: &str, plan: &Plan, cap: usize, expected_invariant: &str) {
    use sim_world::{build, check_end, check_step};
    let sim = Sim::new(|| build(plan, 7)).check_each_step(check_step).check_at_end(check_end);
    assert_sim_catches(flaw, sim, cap, expected_invariant);
}

fn assert_sim_catches<W>(flaw: &str, mut sim: Sim<'_, W>, cap: usize, expected_invariant: &str) {
    let mut result = sim.explore_exhaustive(cap);
    if result.failures.is_empty() {
        result = sim.explore_random(0..cap as u64);
    }
    println!("{flaw}: {result}");
    let failure = result.failures.first().unwrap_or_else(|| panic!("{flaw} was not caught: {result}"));
    let shrunk = sim.shrink(&failure.schedule).expect("a violating schedule shrinks to one that still violates");
    println!(
        "{flaw}: minimal violating schedule: {} steps ({} scheduling choices)\n{shrunk}",
        shrunk.schedule.len(),
        shrunk.choices.len()
    );
    assert!(shrunk.message.contains(expected_invariant), "{flaw}: {}", shrunk.message);
    assert!(shrunk.choices.len() <= failure.schedule.len());
}

#[cfg(feature = "flaw-post-walk-head")]
#[test]
fn seed_flaw_post_walk_head_is_caught() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-post-walk-head", &scenarios::seed(style), 10_000, "invariant 2");
    }
}

#[cfg(feature = "flaw-blind-index-put")]
#[test]
fn w1_flaw_blind_index_put_is_caught() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-blind-index-put", &scenarios::two_writers(style), 10_000, "invariant");
    }
}

#[cfg(feature = "flaw-pull-clears-dirty")]
#[test]
fn w2_flaw_pull_clears_dirty_is_caught() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught(
            "flaw-pull-clears-dirty",
            &scenarios::writer_and_syncer_share_a_cache_bare(style),
            2_000,
            "invariant 3",
        );
    }
}

#[cfg(feature = "flaw-stale-walk-reuse")]
#[test]
fn stale_walk_reuse_is_caught() {
    // With A1's bare mark pending, A2 pulls (and keeps its walk), A1 marks dirty again and writes w2, A2 pushes with
    // the pull's walk: w2 is not uploaded, the cache is recorded clean at A1's marker, and the quiescent push takes the
    // fast path. (A pull walks only when a bare mark is pending, so A1 marks before the pull too.)
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-stale-walk-reuse", &scenarios::bare_marks_around_a_sync(style), 2_000, "invariant 3");
    }
}

#[cfg(feature = "flaw-ignore-lost-lock")]
#[test]
fn w13_flaw_ignore_lost_lock_is_caught() {
    // A's heartbeat finds the lock B took over, and A's push uploads a1 and writes the index all the same.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_sim_catches("flaw-ignore-lost-lock", sim_world::lost_lock::simulator(style), 2_000, "invariant 5");
    }
}

#[cfg(feature = "flaw-clean-at-current-marker")]
#[test]
fn w3_flaw_clean_at_current_marker_is_caught() {
    // A1's markDirty and write land while A2 pushes; A2 records clean at A1's marker; the quiescent push skips w1.
    // (In `writer_and_syncer_share_a_cache_bare` the pull's extra steps push this schedule past a 2,000 cap.)
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught(
            "flaw-clean-at-current-marker",
            &scenarios::bare_write_during_a_push(style),
            2_000,
            "invariant 3",
        );
    }
}

#[cfg(feature = "flaw-ignore-instance-mark")]
#[test]
fn ignored_instance_mark_is_caught() {
    // A1 marks; A2's whole push runs before A1's write lands. Cache calls do not yield here: with them, A2's push is
    // so many steps that this schedule lies beyond a 2,000-schedule search.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let mut plan = scenarios::late_write_and_its_own_push(style);
        plan.cache_yields = false;
        assert_caught("flaw-ignore-instance-mark", &plan, 2_000, "invariant 3");
    }
}

#[cfg(feature = "flaw-meta-after-shards")]
#[test]
fn meta_read_after_the_shards_is_caught() {
    // A reads the shards, B commits (shard, then _meta.json), A reads _meta.json and records B's commit as verified
    // against shards without B's file: A's next pull takes the fast path and never sees it.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-meta-after-shards", &scenarios::seed(style), 10_000, "invariant");
    }
}

#[cfg(feature = "flaw-no-commit-journal")]
#[test]
fn a_commit_stopped_before_its_record_is_finished() {
    // A is killed between its shard write and its commit record; B verified the record before and keeps taking the
    // fast path; A's next push finds its files in the shard and, without the journal, commits nothing.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-no-commit-journal", &scenarios::crash_during_push(style, 16), 2_000, "invariant 3");
    }
}

#[cfg(feature = "flaw-blind-object-put")]
#[test]
fn w19_flaw_blind_object_put_is_caught() {
    // A and B edit base.json at once; B's blind PUT replaces A's object after A's conditional one, A's entry wins the
    // index: the index describes A's bytes while the object holds B's.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-blind-object-put", &scenarios::same_file_edits(style), 20_000, "invariant");
    }
}

#[cfg(feature = "flaw-delete-without-base-check")]
#[test]
fn w21_flaw_delete_without_base_check_is_caught() {
    // B commits an edit of base.json; A, who deleted the older version, deletes B's edit with it.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-delete-without-base-check", &scenarios::delete_and_edit(style), 10_000, "invariant 1");
    }
}

#[cfg(feature = "flaw-clear-all-marks")]
#[test]
fn w22_flaw_clear_all_marks_is_caught() {
    // A1 marks and writes w1 while A2's push runs on the same cache; A2 removes A1's mark too; w1 is never pushed.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-clear-all-marks", &scenarios::mark_during_a_push(style), 5_000, "invariant 3");
    }
}

#[cfg(feature = "flaw-blind-commit")]
#[test]
fn two_phase_flaw_blind_commit_is_caught() {
    // B deletes base.json between A's prepare and A's commit; a commit that ignores what the entry became puts A's
    // edit back on top of the deletion.
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_caught("flaw-blind-commit", &scenarios::two_phase_edit_and_delete(style), 5_000, "invariant 1");
    }
}

#[cfg(feature = "flaw-blind-control-create")]
#[test]
fn control_plane_flaw_blind_create_is_caught() {
    // Without the create-only condition every creator's write lands and each is told it won.
    use sim_world::control_plane::{simulator, Faults};
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_sim_catches("flaw-blind-control-create", simulator(style, 2, Faults::LostAnswers), 2_000, "invariant 7");
    }
}

#[cfg(feature = "flaw-control-retry-says-false")]
#[test]
fn control_plane_flaw_retry_says_false_is_caught() {
    // The winner's create lands, its answer is lost, its retry meets its own record and answers false: nobody won.
    use sim_world::control_plane::{simulator, Faults};
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        assert_sim_catches(
            "flaw-control-retry-says-false",
            simulator(style, 2, Faults::LostAnswers),
            2_000,
            "invariant 7",
        );
    }
}
