//! The simulated world: several machines (each a cache directory with its own clock) and their swamp processes
//! (actors running engine operations), sharing one in-memory bucket, plus the invariants checked by the simulator.
//!
//! Invariants (issue "core"):
//! 1. no index entry that a writer successfully pushed is ever lost from the remote index (checked after every step);
//! 2. a sidecar verified at token T ⇒ every entry of the index at T is present in that cache with matching size and
//!    hash (after every step; this also covers 4: a fast path never returns while the index it trusts lists a file
//!    the cache lacks);
//! 3. after a quiescent round (every machine pushes, then every machine pulls, each with a fresh instance) every cache
//!    and the remote index agree.
//!
//! Invariant 5 (a process writes nothing after it found its lock lost) has a world of its own: `lost_lock`.
//!
//! Model assumptions: a swamp write is `markDirty` immediately followed by the file write (the simulator cannot
//! interleave between the marker write and the file write); file names written by different actors are distinct.
#![allow(dead_code)]

pub mod lost_lock;
pub mod scenarios;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use marsh::engine::{Engine, EngineConfig, Instance};
use marsh::index::RemoteIndex;
use marsh::local::sidecar::SyncState;
use marsh::path::{is_internal, INDEX_KEY, SIDECAR_NAME};
use marsh::testing::memory::{sha256, Faults, MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::{block_on, yield_now, Scenario};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Pull,
    Push,
    /// markDirty, then write this (new) file.
    Write(&'static str),
    /// markDirty, then (after a scheduling point, so another process may push in between) write this file. Only for
    /// actors that push afterwards: a process that marks, writes late and never pushes may have its write recorded
    /// clean by another process's push (the marker cannot know when the write lands).
    WriteLate(&'static str),
}

#[derive(Clone, Debug)]
pub struct ActorPlan {
    pub name: &'static str,
    pub machine: usize,
    pub ops: Vec<Op>,
    /// Stop (drop the operation in flight) after this many polls: a process killed between two calls.
    pub crash_after: Option<usize>,
}

impl ActorPlan {
    pub fn new(name: &'static str, machine: usize, ops: &[Op]) -> ActorPlan {
        ActorPlan { name, machine, ops: ops.to_vec(), crash_after: None }
    }
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub machines: usize,
    pub actors: Vec<ActorPlan>,
    pub style: TokenStyle,
    /// Cache calls are scheduling points too (needed when two actors share a cache directory).
    pub cache_yields: bool,
    /// Files already in the bucket (pushed by a machine outside the simulation) when the actors start.
    pub initial: Vec<&'static str>,
}

pub struct SimMachine {
    pub store: MemoryStore,
    pub cache: MemoryCache,
    pub env: TestEnv,
    pub config: EngineConfig,
}

impl SimMachine {
    fn engine<'a>(&'a self, instance: &'a Instance) -> Engine<'a, MemoryStore, MemoryCache, TestEnv> {
        Engine::new(&self.store, &self.cache, &self.env, &self.config, instance)
    }
}

pub struct World {
    pub bucket: MemoryStore,
    pub machines: Vec<Rc<SimMachine>>,
    /// Files whose writer's push returned Ok: they must stay in the remote index forever (invariant 1).
    pub committed: Rc<RefCell<BTreeSet<String>>>,
    /// Every index version seen, by token (so invariant 2 can look up "the index at T").
    pub history: RefCell<BTreeMap<String, RemoteIndex>>,
}

pub fn build(plan: &Plan, seed: u64) -> Scenario<World> {
    let bucket = MemoryStore::new(plan.style);
    populate(&bucket, &plan.initial);
    let machines: Vec<Rc<SimMachine>> = (0..plan.machines)
        .map(|m| {
            let clock = VirtualClock::new(1_780_000_000_000 + m as i64 * 7_000_000);
            let faults = if plan.cache_yields { Faults::new() } else { Faults::without_yields() };
            Rc::new(SimMachine {
                store: bucket.client(),
                cache: MemoryCache::with_clock(clock.clone()).with_faults(faults),
                env: TestEnv::with_clock(clock, seed.wrapping_mul(31).wrapping_add(m as u64)),
                config: EngineConfig { transfers: 2, ..EngineConfig::default() },
            })
        })
        .collect();
    let committed = Rc::new(RefCell::new(BTreeSet::new()));
    let mut scenario = Scenario::new(World {
        bucket,
        machines: machines.clone(),
        committed: committed.clone(),
        history: RefCell::new(BTreeMap::new()),
    });
    for actor in &plan.actors {
        let machine = machines[actor.machine].clone();
        let ops = actor.ops.clone();
        let committed = committed.clone();
        let body = run_actor(machine, ops, committed);
        scenario = match actor.crash_after {
            Some(polls) => scenario.fallible_actor(actor.name, Crashable { inner: Some(Box::pin(body)), polls }),
            None => scenario.fallible_actor(actor.name, body),
        };
    }
    scenario
}

/// Push `files` from a machine that takes no part in the simulation.
fn populate(bucket: &MemoryStore, files: &[&str]) {
    if files.is_empty() {
        return;
    }
    let machine = SimMachine {
        store: bucket.client(),
        cache: MemoryCache::new().with_faults(Faults::without_yields()),
        env: TestEnv::new(0),
        config: EngineConfig::default(),
    };
    for rel in files {
        machine.cache.write_file(rel, format!("{rel} from before").into_bytes());
    }
    let instance = Instance::new();
    block_on(machine.engine(&instance).push_changed()).expect("initial push");
}

/// One swamp process: one service instance running `ops` in order.
async fn run_actor(
    machine: Rc<SimMachine>,
    ops: Vec<Op>,
    committed: Rc<RefCell<BTreeSet<String>>>,
) -> Result<(), String> {
    let instance = Instance::new();
    let engine = machine.engine(&instance);
    let mut written = Vec::new();
    for op in ops {
        match op {
            Op::Pull => {
                engine.pull_changed().await.map_err(|e| format!("pull: {e}"))?;
            }
            Op::Push => {
                engine.push_changed().await.map_err(|e| format!("push: {e}"))?;
                committed.borrow_mut().extend(written.iter().cloned());
            }
            Op::Write(rel) | Op::WriteLate(rel) => {
                engine.mark_dirty().await.map_err(|e| format!("markDirty: {e}"))?;
                if matches!(op, Op::WriteLate(_)) {
                    yield_now().await;
                }
                machine.cache.write_file(rel, format!("{rel} written by its actor").into_bytes());
                written.push(rel.to_string());
            }
        }
    }
    Ok(())
}

type ActorFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// A process killed after `polls` polls: the operation in flight is dropped between two calls.
struct Crashable {
    inner: Option<ActorFuture>,
    polls: usize,
}

impl Future for Crashable {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            self.inner = None;
            return Poll::Ready(Ok(()));
        }
        self.polls -= 1;
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Invariants 1 and 2, after every step.
pub fn check_step(world: &World) -> Result<(), String> {
    let current = record_index(world)?;
    let history = world.history.borrow();
    let current = current.and_then(|token| history.get(&token));
    for rel in world.committed.borrow().iter() {
        if current.is_none_or(|index| index.get(rel).is_none()) {
            return Err(format!("invariant 1: {rel} was pushed successfully but is missing from the remote index"));
        }
    }
    for (m, machine) in world.machines.iter().enumerate() {
        let state = SyncState::parse(machine.cache.file(SIDECAR_NAME).as_deref());
        let Some(token) = state.verified_token else { continue };
        let Some(index) = history.get(token.as_str()) else {
            return Err(format!("invariant 2: machine {m} verified token {token} of an index that never existed"));
        };
        if let Some(missing) = first_missing(index, &machine.cache) {
            return Err(format!("invariant 2: machine {m} verified token {token} but lacks {missing}"));
        }
    }
    Ok(())
}

/// Invariant 3, at quiescence: a push round then a pull round on fresh instances; then everything agrees.
pub fn check_end(world: &World) -> Result<(), String> {
    for (m, machine) in world.machines.iter().enumerate() {
        let instance = Instance::new();
        block_on(machine.engine(&instance).push_changed()).map_err(|e| format!("quiescent push on {m}: {e}"))?;
        check_step(world)?;
    }
    for (m, machine) in world.machines.iter().enumerate() {
        let instance = Instance::new();
        block_on(machine.engine(&instance).pull_changed()).map_err(|e| format!("quiescent pull on {m}: {e}"))?;
        check_step(world)?;
    }
    let token = record_index(world)?;
    let history = world.history.borrow();
    let empty = RemoteIndex::empty();
    let index = token.and_then(|token| history.get(&token)).unwrap_or(&empty);
    let remote: BTreeMap<String, (u64, Option<[u8; 32]>)> =
        index.entries().map(|(rel, e)| (rel.to_string(), (e.size, e.sha256))).collect();
    for (rel, (size, sha)) in &remote {
        let (bytes, _) = world.bucket.object(rel).ok_or_else(|| format!("invariant 3: {rel} indexed, no object"))?;
        if bytes.len() as u64 != *size || sha.is_some_and(|sha| sha != sha256(&bytes)) {
            return Err(format!("invariant 3: object {rel} does not match its index entry"));
        }
    }
    for (m, machine) in world.machines.iter().enumerate() {
        let local: BTreeMap<String, (u64, Option<[u8; 32]>)> = machine
            .cache
            .files()
            .into_iter()
            .filter(|(rel, _)| !is_internal(rel))
            .map(|(rel, bytes)| (rel, (bytes.len() as u64, Some(sha256(&bytes)))))
            .collect();
        let names = |map: &BTreeMap<String, _>| map.keys().cloned().collect::<Vec<_>>();
        if names(&local) != names(&remote) {
            return Err(format!(
                "invariant 3: after a quiescent round machine {m} has {:?} but the remote index has {:?}",
                names(&local),
                names(&remote)
            ));
        }
        for (rel, (size, sha)) in &remote {
            let (local_size, local_sha) = local[rel];
            if local_size != *size || sha.is_some_and(|sha| Some(sha) != local_sha) {
                return Err(format!("invariant 3: machine {m} has a different {rel} than the remote index"));
            }
        }
    }
    Ok(())
}

/// Remember the current remote index by token (parsed once per version); returns the current token.
fn record_index(world: &World) -> Result<Option<String>, String> {
    let Some(token) = world.bucket.token(INDEX_KEY) else { return Ok(None) };
    let token = token.as_str().to_string();
    if !world.history.borrow().contains_key(&token) {
        let (bytes, _) = world.bucket.object(INDEX_KEY).expect("index present");
        let index = RemoteIndex::parse(&bytes).map_err(|e| format!("remote index unreadable: {e}"))?;
        world.history.borrow_mut().insert(token.clone(), index);
    }
    Ok(Some(token))
}

fn first_missing(index: &RemoteIndex, cache: &MemoryCache) -> Option<String> {
    index.entries().filter(|(rel, _)| !is_internal(rel)).find_map(|(rel, entry)| {
        let matches = cache.file(rel).is_some_and(|bytes| {
            bytes.len() as u64 == entry.size && entry.sha256.is_none_or(|sha| sha == sha256(&bytes))
        });
        (!matches).then(|| rel.to_string())
    })
}
