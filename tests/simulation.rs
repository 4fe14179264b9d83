//! The deterministic simulator against the real engine: exhaustive exploration of small scopes, and many random
//! schedules of larger ones. `MARSH_SIM_SCHEDULES` sets the random budget (default 100,000 in total); the release
//! run uses 1,000,000: `MARSH_SIM_SCHEDULES=1000000 cargo test --release --test simulation -- --nocapture`.
#![cfg(not(target_arch = "wasm32"))]

mod sim_world;

use std::time::Instant;

use marsh::testing::memory::TokenStyle;
use marsh::testing::sim::{Exploration, Sim};
use sim_world::scenarios;
use sim_world::{build, check_end, check_step, Plan};

fn simulator(plan: &Plan) -> Sim<'_, sim_world::World> {
    Sim::new(move || build(plan, 7)).check_each_step(check_step).check_at_end(check_end)
}

fn report(name: &str, result: &Exploration, started: Instant) {
    println!("{name}: {result} ({:.1} s)", started.elapsed().as_secs_f64());
}

fn assert_clean(name: &str, plan: &Plan, result: &Exploration) {
    if let Some(failure) = result.failures.first() {
        let shrunk = simulator(plan).shrink(&failure.schedule);
        panic!(
            "{name}: {} violations; first: {failure:?}\n{}",
            result.violations,
            shrunk.map(|s| s.to_string()).unwrap_or_default()
        );
    }
}

#[test]
fn exhaustive_small_scopes_find_no_violation() {
    let mut total = 0;
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        for (name, plan) in [
            ("seed", scenarios::seed(style)),
            ("two writers, one shard", scenarios::two_writers(style)),
            ("two writers, two shards", scenarios::two_writers_on_two_shards(style)),
            ("seed, format 1", scenarios::on_format1(scenarios::seed(style))),
            ("two writers, format 1", scenarios::on_format1(scenarios::two_writers(style))),
            ("2 machines x 3 operations, format 1", scenarios::on_format1(scenarios::two_by_three(style))),
            ("same file edited on two machines", scenarios::same_file_edits(style)),
            ("same new file on two machines", scenarios::same_new_file(style)),
            ("same file edited, format 1", scenarios::on_format1(scenarios::same_file_edits(style))),
            ("a mark during a push", scenarios::mark_during_a_push(style)),
        ] {
            let started = Instant::now();
            let result = simulator(&plan).explore_exhaustive(200_000);
            report(&format!("exhaustive {name} ({style:?})"), &result, started);
            assert_clean(name, &plan, &result);
            assert!(result.complete, "{name}: exploration cut short at {} schedules", result.schedules);
            total += result.schedules;
        }
    }
    println!("exhaustive: {total} schedules explored in all, 0 violations");
}

#[test]
fn random_schedules_find_no_violation() {
    let budget: u64 = std::env::var("MARSH_SIM_SCHEDULES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut plans: Vec<(String, Plan)> = Vec::new();
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        plans.push((format!("busy ({style:?})"), scenarios::busy(style)));
        plans.push((format!("shared cache ({style:?})"), scenarios::writer_and_syncer_share_a_cache(style)));
        plans.push((
            format!("shared cache, bare marks ({style:?})"),
            scenarios::writer_and_syncer_share_a_cache_bare(style),
        ));
        plans.push((format!("bare marks around a sync ({style:?})"), scenarios::bare_marks_around_a_sync(style)));
        plans.push((format!("bare write during a push ({style:?})"), scenarios::bare_write_during_a_push(style)));
        plans.push((format!("push racing a pull ({style:?})"), scenarios::push_racing_a_pull_on_one_cache(style)));
        plans.push((format!("2x3 ({style:?})"), scenarios::two_by_three(style)));
        plans.push((format!("late write ({style:?})"), scenarios::late_write_and_its_own_push(style)));
        plans.push((format!("busy, format 1 ({style:?})"), scenarios::on_format1(scenarios::busy(style))));
        plans.push((format!("two shards ({style:?})"), scenarios::two_writers_on_two_shards(style)));
        plans.push((format!("delete and edit ({style:?})"), scenarios::delete_and_edit(style)));
        plans.push((
            format!("delete and edit, format 1 ({style:?})"),
            scenarios::on_format1(scenarios::delete_and_edit(style)),
        ));
        plans.push((format!("bare deletion ({style:?})"), scenarios::bare_deletion(style)));
        plans.push((format!("one file, busy ({style:?})"), scenarios::one_file_busy(style)));
        for polls in [6, 12, 18, 24] {
            plans.push((
                format!("deletion killed after {polls} polls ({style:?})"),
                scenarios::crash_during_deletion(style, polls),
            ));
        }
        // Killed at each stage of a push, up to between its shard writes and its commit record (16 to 21 polls).
        for polls in [2, 4, 6, 9, 13, 16, 19, 21] {
            plans.push((format!("killed after {polls} polls ({style:?})"), scenarios::crash_during_push(style, polls)));
        }
    }
    let per_plan = budget.div_ceil(plans.len() as u64);
    let (mut schedules, mut violations) = (0, 0);
    let started = Instant::now();
    for (index, (name, plan)) in plans.iter().enumerate() {
        let first_seed = index as u64 * 1_000_000_007;
        let result = simulator(plan).explore_random(first_seed..first_seed + per_plan);
        assert_clean(name, plan, &result);
        schedules += result.schedules;
        violations += result.violations;
    }
    println!(
        "random: schedules explored: {schedules}, violations: {violations} ({} scenarios, {:.1} s)",
        plans.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(schedules as u64 >= budget);
}

/// Two-phase pushes (`preparePush` / `commitPush`): two-phase writers of one file, a two-phase edit of a file another
/// machine deletes between the phases, a prepare whose commit never comes, and a two-phase push beside a plain one
/// with a write marked between the phases. Random schedules (`MARSH_SIM_SCHEDULES` scales them).
#[test]
fn two_phase_pushes_lose_nothing() {
    let budget: u64 = std::env::var("MARSH_SIM_SCHEDULES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let per_plan = (budget / 50).max(200);
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        for (index, (name, plan)) in [
            ("two-phase pushes of one file", scenarios::two_phase_same_file(style)),
            ("a two-phase edit of a file deleted meanwhile", scenarios::two_phase_edit_and_delete(style)),
            ("a prepare without its commit", scenarios::prepare_without_commit(style)),
            ("two-phase and a push", scenarios::two_phase_and_a_push(style)),
        ]
        .into_iter()
        .enumerate()
        {
            let started = Instant::now();
            let first_seed = 7_000_000_000 + index as u64 * 1_000_003;
            let result = simulator(&plan).explore_random(first_seed..first_seed + per_plan);
            report(&format!("random {name} ({style:?})"), &result, started);
            assert_clean(name, &plan, &result);
        }
    }
}

/// W13: a holder whose heartbeat found its lock taken over writes nothing more, in every schedule explored; and the
/// schedules do reach the refusal (A's heartbeat after B's take-over), not only the harmless order.
#[test]
fn a_holder_that_lost_its_lock_writes_nothing_more() {
    use sim_world::lost_lock;
    use std::cell::Cell;

    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let refusals = Cell::new(0);
        let mut sim =
            Sim::new(|| lost_lock::build(style)).check_each_step(lost_lock::check_step).check_at_end(|world| {
                refusals.set(refusals.get() + usize::from(world.refused.get()));
                lost_lock::check_end(world)
            });
        let started = Instant::now();
        let random = sim.explore_random(0..10_000);
        report(&format!("lost lock, random ({style:?})"), &random, started);
        let exhaustive = sim.explore_exhaustive(5_000);
        report(&format!("lost lock, exhaustive prefix ({style:?})"), &exhaustive, started);
        for result in [&random, &exhaustive] {
            if let Some(failure) = result.failures.first() {
                panic!(
                    "lost lock ({style:?}): {failure}\n{}",
                    lost_lock::simulator(style).shrink(&failure.schedule).unwrap()
                );
            }
        }
        drop(sim);
        println!("lost lock ({style:?}): {} runs refused the lost holder's push", refusals.get());
        assert!(refusals.get() > 100, "{style:?}: only {} runs reached a refused push", refusals.get());
    }
}

/// Invariant 7: N processes create one control-plane record at once while the store loses answers; exactly one is told
/// it created it, and the record holds its bytes, in every schedule explored.
#[test]
fn exactly_one_concurrent_create_of_a_control_record_wins() {
    use sim_world::control_plane::{self, Faults};

    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        for (creators, faults) in [(2, Faults::LostAnswers), (3, Faults::LostAnswers), (3, Faults::Mixed)] {
            let name = format!("control plane, {creators} creators, {faults:?} ({style:?})");
            let mut sim = control_plane::simulator(style, creators, faults);
            let started = Instant::now();
            let exhaustive = sim.explore_exhaustive(20_000);
            report(&format!("{name}, exhaustive"), &exhaustive, started);
            let random = sim.explore_random(0..5_000);
            report(&format!("{name}, random"), &random, started);
            for result in [&exhaustive, &random] {
                if let Some(failure) = result.failures.first() {
                    panic!("{name}: {failure}\n{}", sim.shrink(&failure.schedule).unwrap());
                }
            }
            assert!(creators > 2 || exhaustive.complete, "{name}: two creators are explored exhaustively");
        }
    }
}
