//! The simulated world: several machines (each a cache directory with its own clock) and their swamp processes
//! (actors running engine operations), sharing one in-memory bucket, plus the invariants checked by the simulator.
//!
//! Actors write the same files as each other and delete files. Every write puts bytes no other write puts, and
//! records what the writing cache held at that path before (its base): the lineage of a path's versions. The remote
//! index is what an independent reader of either layout sees (`common::reader`), and a *commit* is any change of its
//! commit token (the monolith's, or `_index/_meta.json`'s).
//!
//! Invariants, after every step:
//! 1. no lost update, no zombie: from one commit to the next, a path's entry changes only to a version made on top of
//!    it (its lineage reaches the old one), disappears only by a deletion of such a version, and appears only as a
//!    version whose lineage holds no deleted version;
//! 2. a sidecar verified at the current commit token ⇒ every committed entry is in that cache as that version, or as a
//!    local edit on top of it, or deleted here with a mark pending (a fast path never hides a committed file). A
//!    version whose writer's format-2 commit is still in flight is not owed yet: it can sit in a shard that another
//!    writer's commit record moved over first, and the commit token moves on when that commit ends;
//! 4. no deletion of a local edit: every file a pull removes holds bytes that were in the remote index at some point.
//!
//! At quiescence (every machine pushes, then every machine pulls, each with a fresh instance; a push may end in
//! conflicts, which are then open on that machine):
//! 3. every cache and the remote index agree on every path no machine holds in conflict, and every indexed object
//!    matches its entry (the index never describes other bytes than the object's, W19);
//! 5. no silent lost edit: every version written was committed, or is in some cache, or its path is in conflict on
//!    the machine that wrote it, or a later version or deletion was made on top of it before it was pushed.
//!
//! Invariant 6 (a process writes nothing after it found its lock lost) has a world of its own: `lost_lock`; so has
//! invariant 7 (of concurrent creates of one control-plane record exactly one is told it won): `control_plane`.
//!
//! Model assumption: a swamp write is `markDirty` immediately followed by the file write (`WriteLate` puts a scheduling
//! point between them, for actors that push afterwards).
#![allow(dead_code)]

pub mod control_plane;
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

use marsh::engine::{Engine, EngineConfig, Instance, PushManifest, SyncError};
use marsh::index::sha256_hex;
use marsh::local::conflicts::{Conflicts, CONFLICTS_NAME};
use marsh::local::journal::{Journal, COMMIT_JOURNAL_NAME};
use marsh::local::sidecar::SyncState;
use marsh::path::{is_internal, INDEX_KEY, SIDECAR_NAME};
use marsh::testing::memory::{sha256, Faults, Kind, MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::{block_on, yield_now, Scenario};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Pull,
    Push,
    /// markDirty with the path, then write new bytes to it (a new file, or a new version of one).
    Write(&'static str),
    /// The same, with a scheduling point between the mark and the write (another process may push in between). Only
    /// for actors that push afterwards: a process that marks, writes late and never pushes may have its mark handled
    /// by another process's push before the bytes land.
    WriteLate(&'static str),
    /// A bare markDirty, then the write (swamp before per-path marks).
    WriteBare(&'static str),
    /// `WriteLate` with a bare markDirty.
    WriteLateBare(&'static str),
    /// markDirty with the path, then remove the file.
    Delete(&'static str),
    /// A bare markDirty, then remove the file (the push infers the deletion from the base).
    DeleteBare(&'static str),
    /// Phase one of a two-phase push (`preparePush`): the manifest is kept for this actor's next `Commit`. A prepare
    /// with no commit after it is a process that stopped between the phases.
    Prepare,
    /// Phase two (`commitPush`) of this actor's last prepare.
    Commit,
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

/// Every version ever written, with what it was written on top of, and every deletion.
#[derive(Default)]
pub struct History {
    /// Version bytes → the bytes the writing cache held at that path before (`None`: no file there).
    base_of: BTreeMap<String, Option<String>>,
    /// Versions written, by path, in order, with the machine that wrote them.
    writes: Vec<(String, String, usize)>,
    /// (path, bytes removed) for every deletion by an actor.
    deletions: Vec<(String, Option<String>)>,
    /// Versions that stand in some commit, by path.
    committed: BTreeSet<(String, String)>,
    /// Versions ever in the remote index, committed or written to a shard by a commit in flight.
    seen: BTreeSet<(String, String)>,
    /// The entries of the last commit seen (path → version bytes), and its token.
    last_commit: Option<(String, BTreeMap<String, String>)>,
    /// The shard objects of the last commit seen, with their tokens then (format 2): a shard rewritten since holds the
    /// changes of a commit in flight.
    commit_shards: BTreeMap<String, String>,
    /// Files a pull removed: (machine, path, the bytes removed).
    removed: Vec<(usize, String, Vec<u8>)>,
    /// A violation found while recording (reported by the next check).
    violation: Option<String>,
    next_version: usize,
}

impl History {
    /// For debugging a failing schedule.
    pub fn dump(&self) {
        println!("writes {:?}", self.writes);
        println!("bases {:?}", self.base_of);
        println!("deletions {:?}", self.deletions);
    }

    /// `later` was made on top of `earlier` (or is it).
    fn descends(&self, later: &str, earlier: &str) -> bool {
        let mut at = Some(later.to_string());
        while let Some(version) = at {
            if version == earlier {
                return true;
            }
            at = self.base_of.get(&version).cloned().flatten();
        }
        false
    }

    fn deleted_on_top_of(&self, rel: &str, version: &str) -> bool {
        self.deletions.iter().any(|(path, removed)| {
            path == rel && removed.as_deref().is_some_and(|removed| self.descends(removed, version))
        })
    }

    /// A version written later on top of `version` at the same path (so it was not lost, but built on).
    fn superseded(&self, rel: &str, version: &str) -> bool {
        self.writes.iter().any(|(path, written, _)| {
            path == rel
                && written != version
                && self.base_of.get(written).cloned().flatten().as_deref() == Some(version)
        }) || self.deleted_on_top_of(rel, version)
    }
}

pub struct World {
    pub bucket: MemoryStore,
    pub machines: Vec<Rc<SimMachine>>,
    pub history: Rc<RefCell<History>>,
    /// The last independent read of the remote index, with the tokens of the index objects it was made from: most
    /// steps change no index object, and parsing it again after each one would dominate the run.
    remote: RefCell<Option<(IndexVersions, Rc<reader::Found>)>>,
}

/// The key and token of each index object in the bucket.
type IndexVersions = Vec<(String, String)>;

pub fn build(plan: &Plan, seed: u64) -> Scenario<World> {
    let bucket = MemoryStore::new(plan.style);
    let history = Rc::new(RefCell::new(History::default()));
    populate(&bucket, &plan.initial, plan.format, &mut history.borrow_mut());
    let machines: Vec<Rc<SimMachine>> = (0..plan.machines)
        .map(|m| {
            let clock = VirtualClock::new(1_780_000_000_000 + m as i64 * 7_000_000);
            let faults = if plan.cache_yields { Faults::new() } else { Faults::without_yields() };
            let machine = Rc::new(SimMachine {
                store: bucket.client(),
                cache: MemoryCache::with_clock(clock.clone()).with_faults(faults),
                env: TestEnv::with_clock(clock, seed.wrapping_mul(31).wrapping_add(m as u64)),
                config: EngineConfig { transfers: 2, ..EngineConfig::default() },
            });
            // Every removal the engine makes in this cache, with the bytes it removed (invariant 4).
            let (watched, log) = (machine.cache.instance(), history.clone());
            machine.cache.faults().on_call(
                Kind::Remove,
                |_| true,
                move |rel| {
                    if let Some(bytes) = watched.file(rel) {
                        log.borrow_mut().removed.push((m, rel.to_string(), bytes));
                    }
                },
            );
            machine
        })
        .collect();
    let mut scenario = Scenario::new(World {
        bucket,
        machines: machines.clone(),
        history: history.clone(),
        remote: RefCell::new(None),
    });
    for actor in &plan.actors {
        let body = run_actor(machines[actor.machine].clone(), actor.machine, actor.ops.clone(), history.clone());
        scenario = match actor.crash_after {
            Some(polls) => scenario.fallible_actor(actor.name, Crashable { inner: Some(Box::pin(body)), polls }),
            None => scenario.fallible_actor(actor.name, body),
        };
    }
    scenario
}

/// Put `files` in the bucket as a machine outside the simulation would have: on format 2 by a marsh push, on format 1
/// as objects and a monolith.
fn populate(bucket: &MemoryStore, files: &[&str], format: u8, history: &mut History) {
    for rel in files {
        history.base_of.insert(format!("{rel} from before"), None);
    }
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
    index: usize,
    ops: Vec<Op>,
    history: Rc<RefCell<History>>,
) -> Result<(), String> {
    let instance = Instance::new();
    let engine = machine.engine(&instance);
    let text = |bytes: Option<Vec<u8>>| bytes.map(|bytes| String::from_utf8(bytes).expect("text"));
    let mut manifest: Option<PushManifest> = None;
    for op in ops {
        match op {
            Op::Prepare => {
                manifest = Some(engine.prepare_push().await.map_err(|e| format!("prepare: {e}"))?);
            }
            Op::Commit => {
                let prepared = manifest.take().ok_or("a commit without a prepare")?;
                match engine.commit_push(&prepared).await {
                    Ok(_) | Err(SyncError::Conflicts { .. }) => {}
                    Err(error) => return Err(format!("commit: {error}")),
                }
            }
            Op::Pull => {
                engine.pull_changed().await.map_err(|e| format!("pull: {e}"))?;
            }
            // Conflicts are an outcome these scenarios invite: the paths stay open on this machine.
            Op::Push => match engine.push_changed().await {
                Ok(_) | Err(SyncError::Conflicts { .. }) => {}
                Err(error) => return Err(format!("push: {error}")),
            },
            Op::Write(rel) | Op::WriteLate(rel) | Op::WriteBare(rel) | Op::WriteLateBare(rel) => {
                let path = (!matches!(op, Op::WriteBare(_) | Op::WriteLateBare(_))).then_some(rel);
                engine.mark_dirty(path).await.map_err(|e| format!("markDirty: {e}"))?;
                if matches!(op, Op::WriteLate(_) | Op::WriteLateBare(_)) {
                    yield_now().await;
                }
                let mut history = history.borrow_mut();
                history.next_version += 1;
                let version = format!("{rel} #{} by machine {index}", history.next_version);
                let base = text(machine.cache.file(rel));
                history.base_of.insert(version.clone(), base);
                history.writes.push((rel.to_string(), version.clone(), index));
                machine.cache.write_file(rel, version.into_bytes());
            }
            Op::Delete(rel) | Op::DeleteBare(rel) => {
                let path = matches!(op, Op::Delete(_)).then_some(rel);
                engine.mark_dirty(path).await.map_err(|e| format!("markDirty: {e}"))?;
                history.borrow_mut().deletions.push((rel.to_string(), text(machine.cache.file(rel))));
                machine.cache.remove_file(rel);
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

    /// The version bytes an entry describes, found by its hash among the versions written (an entry without a hash,
    /// or of unknown bytes, is described by its size).
    fn version_of(&self, history: &History, entry: &serde_json::Value) -> String {
        let (size, sha) = reader::size_and_hash(entry);
        let found = history.base_of.keys().find(|version| {
            version.len() as u64 == size
                && sha.as_ref().is_none_or(|sha| *sha == sha256_hex(&sha256(version.as_bytes())))
        });
        found.cloned().unwrap_or_else(|| format!("<unknown bytes of size {size}>"))
    }

    /// Record a new commit, checking invariant 1 against the previous one.
    fn observe_commit(&self) -> Result<(), String> {
        let remote = self.remote();
        let mut history = self.history.borrow_mut();
        for (rel, entry) in &remote.entries {
            let version = self.version_of(&history, entry);
            history.seen.insert((rel.clone(), version));
        }
        let Some(token) = remote.commit_token.clone() else { return Ok(()) };
        if history.last_commit.as_ref().is_some_and(|(seen, _)| *seen == token) {
            return Ok(());
        }
        let now: BTreeMap<String, String> =
            remote.entries.iter().map(|(rel, entry)| (rel.clone(), self.version_of(&history, entry))).collect();
        if let Some((_, before)) = &history.last_commit {
            for (rel, old) in before {
                match now.get(rel) {
                    Some(new) if history.descends(new, old) => {}
                    Some(new) => {
                        return Err(format!(
                            "invariant 1 (lost update): {rel} went from {old:?} to {new:?}, which was not made on top of it"
                        ))
                    }
                    None if history.deleted_on_top_of(rel, old) => {}
                    None => {
                        return Err(format!("invariant 1 (lost entry): {rel} ({old:?}) left the index, deleted by no one"))
                    }
                }
            }
            // A path may appear with a version created from nothing (or built on versions never deleted), never with one
            // built on a version that someone deleted: that deletion would be undone.
            for (rel, new) in &now {
                let undoes = history.deletions.iter().any(|(path, removed)| {
                    path == rel && removed.as_deref().is_some_and(|removed| history.descends(new, removed))
                });
                if !before.contains_key(rel) && undoes {
                    return Err(format!("invariant 1 (zombie): {rel} came back as {new:?} after it was deleted"));
                }
            }
        }
        for (rel, version) in &now {
            history.committed.insert((rel.clone(), version.clone()));
        }
        history.last_commit = Some((token, now));
        history.commit_shards = self.shard_tokens();
        Ok(())
    }

    /// The tokens of the shard objects now.
    fn shard_tokens(&self) -> BTreeMap<String, String> {
        self.bucket
            .keys()
            .into_iter()
            .filter(|key| key.starts_with("_index/"))
            .filter_map(|key| Some((key.clone(), self.bucket.token(&key)?.as_str().to_string())))
            .collect()
    }
}

/// Invariants 1, 2 and 4, after every step.
pub fn check_step(world: &World) -> Result<(), String> {
    world.observe_commit()?;
    let history = world.history.borrow();
    if let Some(violation) = &history.violation {
        return Err(violation.clone());
    }
    for (m, rel, bytes) in &history.removed {
        let version = String::from_utf8_lossy(bytes).into_owned();
        if !history.seen.contains(&(rel.clone(), version.clone())) {
            return Err(format!("invariant 4: a pull on machine {m} removed {rel} holding {version:?}, never pushed"));
        }
    }
    let remote = world.remote();
    let (Some(current), Some((token, committed))) = (&remote.commit_token, &history.last_commit) else { return Ok(()) };
    if current != token {
        return Ok(());
    }
    // An entry of a shard rewritten since the commit (by a format-2 commit in flight, whose record has not moved yet)
    // is not owed: a reader may have read the shard as that commit left it, and the commit token moves on when that
    // commit ends (or when the journal of its cache finishes it).
    // Likewise a version written by a machine whose format-2 commit is in flight (a note in its journal): it may sit
    // in a shard that another writer's commit record moved over before its own record did.
    let shards_now = world.shard_tokens();
    let in_flight: BTreeSet<usize> = world
        .machines
        .iter()
        .enumerate()
        .filter(|(_, machine)| !Journal::parse(machine.cache.file(COMMIT_JOURNAL_NAME).as_deref()).is_empty())
        .map(|(m, _)| m)
        .collect();
    let owed = |rel: &String, version: &String| {
        let staged = history
            .writes
            .iter()
            .any(|(path, written, by)| path == rel && written == version && in_flight.contains(by));
        let shard_unchanged = match remote.shard_of.get(rel) {
            Some(shard) => {
                let key = format!("_index/{shard}.json");
                shards_now.get(&key) == history.commit_shards.get(&key)
            }
            None => {
                remote.format == 1 || history.commit_shards.is_empty() || !stale_shard_for(rel, &history, &shards_now)
            }
        };
        shard_unchanged && !staged
    };
    for (m, machine) in world.machines.iter().enumerate() {
        let state = SyncState::parse(machine.cache.file(SIDECAR_NAME).as_deref());
        if state.verified_token.as_ref().map(|token| token.as_str()) != Some(current.as_str()) {
            continue;
        }
        let marked: Vec<String> = machine
            .cache
            .files()
            .into_keys()
            .filter_map(|name| name.strip_prefix(".marsh-marks/").map(marsh::local::marks::parse_mark))
            .filter_map(|mark| mark.path)
            .collect();
        let marker = marsh::local::marker::Marker::parse(machine.cache.file(marsh::path::DIRTY_NAME).as_deref());
        let bare_mark = state.bare_mark_since_clean(&marker);
        for (rel, version) in committed.iter().filter(|(rel, version)| owed(rel, version)) {
            let local = machine.cache.file(rel).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
            let held = match &local {
                Some(local) => history.descends(local, version),
                None => bare_mark || marked.iter().any(|path| marsh::local::marks::covers(path, rel)),
            };
            if !held {
                return Err(format!(
                    "invariant 2: machine {m} verified the current token {current} but holds {local:?} for {rel} \
                     ({version:?} committed)"
                ));
            }
        }
    }
    Ok(())
}

/// A committed entry no longer in the index read now (its shard was rewritten by a commit in flight that removes it):
/// owed only if its shard object is unchanged since the commit.
fn stale_shard_for(rel: &str, history: &History, shards_now: &BTreeMap<String, String>) -> bool {
    let key = format!("_index/{}.json", marsh::index::shard::home_shard(rel));
    shards_now.get(&key) != history.commit_shards.get(&key)
}

/// Open conflicts on machine `m`, by path.
fn conflicts_of(machine: &SimMachine) -> BTreeSet<String> {
    Conflicts::parse(machine.cache.file(CONFLICTS_NAME).as_deref()).conflicts.into_keys().collect()
}

/// Invariants 3 and 5, at quiescence: a push round then a pull round on fresh instances.
pub fn check_end(world: &World) -> Result<(), String> {
    for (m, machine) in world.machines.iter().enumerate() {
        let instance = Instance::new();
        match block_on(machine.engine(&instance).push_changed()) {
            Ok(_) | Err(SyncError::Conflicts { .. }) => {}
            Err(error) => return Err(format!("quiescent push on {m}: {error}")),
        }
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
    let in_conflict: BTreeSet<String> = world.machines.iter().flat_map(|machine| conflicts_of(machine)).collect();
    let open = |rel: &String| !in_conflict.contains(rel);
    for (m, machine) in world.machines.iter().enumerate() {
        let local: BTreeMap<String, (u64, Option<String>)> = machine
            .cache
            .files()
            .into_iter()
            .filter(|(rel, _)| !is_internal(rel) && open(rel))
            .map(|(rel, bytes)| (rel, (bytes.len() as u64, Some(sha256_hex(&sha256(&bytes))))))
            .collect();
        let names = |map: &BTreeMap<String, _>| map.keys().filter(|rel| open(rel)).cloned().collect::<Vec<_>>();
        if names(&local) != names(&described) {
            return Err(format!(
                "invariant 3: after a quiescent round machine {m} has {:?} but the remote index has {:?} \
                 (paths in conflict: {in_conflict:?})",
                names(&local),
                names(&described)
            ));
        }
        for (rel, (size, sha)) in described.iter().filter(|(rel, _)| open(rel)) {
            let (local_size, local_sha) = &local[rel];
            if local_size != size || sha.as_ref().is_some_and(|sha| Some(sha) != local_sha.as_ref()) {
                return Err(format!("invariant 3: machine {m} has a different {rel} than the remote index"));
            }
        }
    }
    let history = world.history.borrow();
    for (rel, version, writer) in &history.writes {
        let committed = history.committed.contains(&(rel.clone(), version.clone()));
        let cached =
            world.machines.iter().any(|machine| machine.cache.file(rel).as_deref() == Some(version.as_bytes()));
        let reported = conflicts_of(&world.machines[*writer]).contains(rel);
        if !(committed || cached || reported || history.superseded(rel, version)) {
            return Err(format!(
                "invariant 5 (silent lost edit): {version:?} of {rel} is nowhere: not committed, in no cache, not \
                 reported as a conflict, not built on"
            ));
        }
    }
    Ok(())
}
