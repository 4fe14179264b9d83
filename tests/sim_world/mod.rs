//! The simulated world: several machines (each a cache directory with its own clock) and their swamp processes
//! (actors running engine operations), sharing one in-memory bucket, plus the invariants checked by the simulator.
//!
//! Invariants (the remote index is what an independent reader of either layout sees: `common::reader`):
//! 1. no index entry that a writer successfully pushed is ever lost from the remote index (checked after every step);
//! 2. a sidecar verified at the current commit token ⇒ every committed file (pushed successfully, or there before the
//!    run) is present in that cache as the remote index describes it (after every step: a fast path never returns
//!    while the index it trusts lists a committed file the cache lacks). Entries a commit in progress has written to a
//!    shard but not yet committed are not owed: the commit record moves on when that commit ends;
//! 3. after a quiescent round (every machine pushes, then every machine pulls, each with a fresh instance) every cache
//!    and the remote index agree, and every indexed object matches its entry.
//!
//! Invariant 5 (a process writes nothing after it found its lock lost) has a world of its own: `lost_lock`.
//!
//! Model assumptions: a swamp write is `markDirty` immediately followed by the file write (the simulator cannot
//! interleave between the marker write and the file write); file names written by different actors are distinct.
#![allow(dead_code)]

pub mod lost_lock;
#[path = "../common/reader.rs"]
pub mod reader;
pub mod scenarios;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use marsh::engine::{Engine, EngineConfig, Instance};
use marsh::index::sha256_hex;
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
    /// The bucket's layout when the actors start: 1 (a monolith, as official extensions before format 2 left it) or 2.
    pub format: u8,
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

/// The key and token of each index object in the bucket.
type IndexVersions = Vec<(String, String)>;

pub struct World {
    pub bucket: MemoryStore,
    /// The last independent read of the remote index, with the tokens of the index objects it was made from: most
    /// steps change no index object, and parsing it again after each one would dominate the run.
    remote: RefCell<Option<(IndexVersions, Rc<reader::Found>)>>,
    pub machines: Vec<Rc<SimMachine>>,
    /// Files whose writer's push returned Ok: they must stay in the remote index forever (invariant 1).
    pub committed: Rc<RefCell<BTreeSet<String>>>,
}

pub fn build(plan: &Plan, seed: u64) -> Scenario<World> {
    let bucket = MemoryStore::new(plan.style);
    populate(&bucket, &plan.initial, plan.format);
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
    let committed = Rc::new(RefCell::new(plan.initial.iter().map(|rel| rel.to_string()).collect::<BTreeSet<_>>()));
    let mut scenario = Scenario::new(World {
        bucket,
        machines: machines.clone(),
        committed: committed.clone(),
        remote: RefCell::new(None),
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

/// Put `files` in the bucket as a machine outside the simulation would have: on format 2 by a marsh push, on format 1
/// as objects and a monolith.
fn populate(bucket: &MemoryStore, files: &[&str], format: u8) {
    if files.is_empty() {
        return;
    }
    if format == 1 {
        let mut entries = serde_json::Map::new();
        for rel in files {
            let bytes = format!("{rel} from before").into_bytes();
            let entry = serde_json::json!({
                "key": rel, "size": bytes.len(), "lastModified": "2026-04-24T10:00:00.000Z",
                "sha256": sha256_hex(&sha256(&bytes)),
            });
            entries.insert(rel.to_string(), entry);
            bucket.put_raw(rel, bytes);
        }
        let monolith = serde_json::json!({ "version": 1, "entries": entries });
        bucket.put_raw(INDEX_KEY, serde_json::to_vec_pretty(&monolith).unwrap());
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

impl World {
    /// What an independent reader sees in the bucket now.
    pub fn remote(&self) -> Rc<reader::Found> {
        let versions: IndexVersions = self
            .bucket
            .keys()
            .into_iter()
            .filter(|key| key == INDEX_KEY || key.starts_with("_index/"))
            .filter_map(|key| Some((key.clone(), self.bucket.token(&key)?.as_str().to_string())))
            .collect();
        let mut cached = self.remote.borrow_mut();
        match &*cached {
            Some((seen, found)) if *seen == versions => found.clone(),
            _ => {
                let found = Rc::new(reader::read(&self.bucket));
                *cached = Some((versions, found.clone()));
                found
            }
        }
    }
}

/// Invariants 1 and 2, after every step.
pub fn check_step(world: &World) -> Result<(), String> {
    let remote = world.remote();
    let committed = world.committed.borrow();
    for rel in committed.iter() {
        if !remote.entries.contains_key(rel) {
            return Err(format!("invariant 1: {rel} was pushed successfully but is missing from the remote index"));
        }
    }
    let Some(current) = &remote.commit_token else { return Ok(()) };
    for (m, machine) in world.machines.iter().enumerate() {
        let state = SyncState::parse(machine.cache.file(SIDECAR_NAME).as_deref());
        if state.verified_token.as_ref().map(|token| token.as_str()) != Some(current.as_str()) {
            continue;
        }
        if let Some(missing) = first_missing(&remote, committed.iter(), &machine.cache) {
            return Err(format!("invariant 2: machine {m} verified the current token {current} but lacks {missing}"));
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
    let remote = world.remote();
    let described: BTreeMap<String, (u64, Option<String>)> =
        remote.entries.iter().map(|(rel, entry)| (rel.clone(), reader::size_and_hash(entry))).collect();
    for (rel, (size, sha)) in &described {
        let (bytes, _) = world.bucket.object(rel).ok_or_else(|| format!("invariant 3: {rel} indexed, no object"))?;
        if bytes.len() as u64 != *size || sha.as_ref().is_some_and(|sha| *sha != sha256_hex(&sha256(&bytes))) {
            return Err(format!("invariant 3: object {rel} does not match its index entry"));
        }
    }
    for (m, machine) in world.machines.iter().enumerate() {
        let local: BTreeMap<String, (u64, Option<String>)> = machine
            .cache
            .files()
            .into_iter()
            .filter(|(rel, _)| !is_internal(rel))
            .map(|(rel, bytes)| (rel, (bytes.len() as u64, Some(sha256_hex(&sha256(&bytes))))))
            .collect();
        let names = |map: &BTreeMap<String, _>| map.keys().cloned().collect::<Vec<_>>();
        if names(&local) != names(&described) {
            return Err(format!(
                "invariant 3: after a quiescent round machine {m} has {:?} but the remote index has {:?}",
                names(&local),
                names(&described)
            ));
        }
        for (rel, (size, sha)) in &described {
            let (local_size, local_sha) = &local[rel];
            if local_size != size || sha.as_ref().is_some_and(|sha| Some(sha) != local_sha.as_ref()) {
                return Err(format!("invariant 3: machine {m} has a different {rel} than the remote index"));
            }
        }
    }
    Ok(())
}

/// The first of `files` that the remote index describes but `cache` does not hold as described.
fn first_missing<'a>(
    remote: &reader::Found,
    files: impl Iterator<Item = &'a String>,
    cache: &MemoryCache,
) -> Option<String> {
    files.filter(|rel| !is_internal(rel)).find_map(|rel| {
        let (size, sha) = reader::size_and_hash(remote.entries.get(rel)?);
        let matches = cache.file(rel).is_some_and(|bytes| {
            bytes.len() as u64 == size && sha.as_ref().is_none_or(|sha| *sha == sha256_hex(&sha256(&bytes)))
        });
        (!matches).then(|| rel.to_string())
    })
}
