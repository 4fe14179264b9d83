//! The control plane's create race: N processes `put_if_absent` the same record at once, each with different bytes,
//! while the store loses answers (a create lands and its caller hears a timeout) or fails before acting, so that the
//! core's retry policy runs into its own records.
//!
//! Invariant 7, after every step: at most one creator has answered `true`, and the record holds the bytes of the one
//! that did. At the end: every creator answered, exactly one with `true`.

use std::cell::RefCell;
use std::rc::Rc;

use marsh::control::{ControlPlane, ControlRoot};
use marsh::store::StoreError;
use marsh::testing::memory::{Kind, MemoryStore, TestEnv, TokenStyle};
use marsh::testing::sim::{Scenario, Sim};

/// The record every creator races for, and the namespace it lives under.
const KEY: &str = "signals/run-1/approved";
const NAMESPACE: &str = "team-a";
const OBJECT: &str = "team-a/_control/signals/run-1/approved";

/// Which answers the store loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// Every creator's first create lands (if the key is free) and its answer is lost.
    LostAnswers,
    /// Creator 0's first create fails before acting, creator 1's lands with its answer lost, creator 2's first create
    /// fails before acting and so does its first read.
    Mixed,
}

/// A creator's answer, once it has one (`true`: it created the record).
pub type Answer = Rc<RefCell<Option<bool>>>;

pub struct World {
    pub bucket: MemoryStore,
    /// Each creator's bytes, and its answer.
    pub creators: Vec<(Vec<u8>, Answer)>,
}

fn transient() -> StoreError {
    StoreError::Transient { status: None, message: "timed out".into() }
}

pub fn build(style: TokenStyle, creators: usize, faults: Faults) -> Scenario<World> {
    let bucket = MemoryStore::new(style);
    let mut world = World { bucket: bucket.clone(), creators: Vec::new() };
    let mut actors = Vec::new();
    for index in 0..creators {
        let client = bucket.client();
        match (faults, index) {
            (Faults::LostAnswers, _) | (Faults::Mixed, 1) => {
                client.faults().fail_nth_after_effect(Kind::PutBytes, 1, transient());
            }
            (Faults::Mixed, 0) => {
                client.faults().fail_nth(Kind::PutBytes, 1, transient());
            }
            (Faults::Mixed, _) => {
                client.faults().fail_nth(Kind::PutBytes, 1, transient());
                client.faults().fail_nth(Kind::GetBytes, 1, transient());
            }
        }
        let bytes = format!("{{\"by\":\"creator-{index}\"}}").into_bytes();
        let answer = Rc::new(RefCell::new(None));
        world.creators.push((bytes.clone(), answer.clone()));
        let env = TestEnv::new(index as u64 + 1);
        actors.push((format!("creator-{index}"), async move {
            let root = ControlRoot::for_namespace(Some(NAMESPACE)).map_err(|e| e.to_string())?;
            let won = ControlPlane::new(&client, &env, root).put_if_absent(KEY, &bytes).await;
            *answer.borrow_mut() = Some(won.map_err(|e| format!("put_if_absent: {e}"))?);
            Ok::<(), String>(())
        }));
    }
    let mut scenario = Scenario::new(world);
    for (name, actor) in actors {
        scenario = scenario.fallible_actor(name, actor);
    }
    scenario
}

/// Invariant 7 so far: at most one `true`, and the record is that creator's.
pub fn check_step(world: &World) -> Result<(), String> {
    let winners: Vec<usize> =
        (0..world.creators.len()).filter(|&i| *world.creators[i].1.borrow() == Some(true)).collect();
    if winners.len() > 1 {
        return Err(format!("invariant 7 (control plane): creators {winners:?} were all told they created the record"));
    }
    if let Some(&winner) = winners.first() {
        let stored = world.bucket.object(OBJECT).map(|(bytes, _)| bytes);
        if stored.as_deref() != Some(world.creators[winner].0.as_slice()) {
            return Err(format!(
                "invariant 7 (control plane): creator-{winner} was told it created the record, but it holds {:?}",
                stored.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            ));
        }
    }
    Ok(())
}

/// Invariant 7 at the end: exactly one `true`.
pub fn check_end(world: &World) -> Result<(), String> {
    check_step(world)?;
    let answers: Vec<Option<bool>> = world.creators.iter().map(|(_, answer)| *answer.borrow()).collect();
    if answers.iter().filter(|answer| **answer == Some(true)).count() != 1 {
        return Err(format!("invariant 7 (control plane): no creator was told it created the record: {answers:?}"));
    }
    Ok(())
}

pub fn simulator(style: TokenStyle, creators: usize, faults: Faults) -> Sim<'static, World> {
    Sim::new(move || build(style, creators, faults)).check_each_step(check_step).check_at_end(check_end)
}
