//! `SyncService`: the engine's operations as a JS class, one per swamp `createSyncService` call.
//!
//! The store and cache objects are given once; each call gets a fresh `MarshEnv` carrying that operation's abort
//! signal, which is forwarded to every host call. The instance state (`engine::Instance`) lives as long as the object;
//! given a `scope`, it watches the locks this process holds on that scope (see `LockClient`).

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::host::{get, js_error, object, set, store_error_kind, JsCache, JsEnv, JsStore};
use super::lock::{held_locks, lock_error_to_js};
use crate::engine::{
    check_path, Engine, EngineConfig, Instance, Keep, PullOptions, PullReport, PushManifest, PushReport, Status,
    SyncError,
};
use crate::index::Migrated;
use crate::local::conflicts::ConflictKind;
use crate::local::sidecar::SidecarOrigin;
use crate::namespace::{Namespace, ScopedCache, ScopedStore};

struct Service {
    store: JsStore,
    cache: JsCache,
    config: EngineConfig,
    instance: Instance,
    /// The namespace this service is bound to (`Some(None)`: bound to none), from its options or its first pull,
    /// push or prepare: one service is one repository's for its whole life.
    namespace: RefCell<Option<Option<Namespace>>>,
}

type ScopedEngine<'a> = Engine<'a, ScopedStore<'a, JsStore>, ScopedCache<'a, JsCache>, JsEnv>;

/// Whether an operation binds the service to its namespace (the sync operations) or only uses it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    Yes,
    No,
}

impl Service {
    /// The namespace an operation runs in: the one it names (`env.namespace`), which must be the bound one if the
    /// service is bound, else the bound one.
    fn namespace_for(&self, asked: Option<String>, bind: Bind) -> Result<Option<Namespace>, SyncError> {
        let asked = match asked.filter(|name| !name.is_empty()) {
            Some(name) => Some(Namespace::parse(&name).map_err(|e| SyncError::InvalidArgument(e.to_string()))?),
            None => None,
        };
        let mut bound = self.namespace.borrow_mut();
        match (&*bound, asked) {
            (Some(current), Some(asked)) if current.as_ref() != Some(&asked) => {
                Err(SyncError::InvalidArgument(format!(
                    "this sync service belongs to {}; an operation for namespace {:?} needs a service of its own",
                    current.as_ref().map_or("no namespace".to_string(), |ns| format!("namespace {:?}", ns.as_str())),
                    asked.as_str()
                )))
            }
            (Some(current), _) => Ok(current.clone()),
            (None, asked) => {
                if bind == Bind::Yes {
                    *bound = Some(asked.clone());
                }
                Ok(asked)
            }
        }
    }
}

/// A cache-relative path of an operation in `namespace` as the namespace's engine sees it (`{ns}/a` → `a`); one
/// outside the namespace is refused, naming both.
fn in_namespace(namespace: Option<&Namespace>, rel: &str) -> Result<String, SyncError> {
    match namespace {
        None => Ok(rel.to_string()),
        Some(ns) => ns.strip(rel).map(str::to_string).ok_or_else(|| {
            SyncError::InvalidArgument(format!("{rel:?} is not inside namespace {:?} ({}/…)", ns.as_str(), ns.as_str()))
        }),
    }
}

#[wasm_bindgen]
pub struct SyncService {
    inner: Rc<Service>,
}

/// Run one engine operation as a promise: wrap the env, bind its signal to the store and cache, scope both to the
/// operation's namespace (`env.namespace`), map the outcome.
fn operation<F>(service: &Rc<Service>, env: JsValue, bind: Bind, answer: F) -> Result<Promise, JsValue>
where
    F: for<'a> FnOnce(&'a ScopedEngine<'a>, Option<&'a Namespace>) -> LocalBoxFuture<'a, Result<JsValue, SyncError>>
        + 'static,
{
    let service = service.clone();
    let asked = get(&env, "namespace").as_string();
    let env = JsEnv::from_js(env)?;
    Ok(future_to_promise(async move {
        let namespace = service.namespace_for(asked, bind).map_err(|error| sync_error_to_js(&error))?;
        let signal = env.signal();
        let store = service.store.with_signal(signal.clone());
        let cache = service.cache.with_signal(signal);
        let store = ScopedStore::new(&store, namespace.as_ref());
        let cache = ScopedCache::new(&cache, namespace.as_ref());
        let engine = Engine::new(&store, &cache, &env, &service.config, &service.instance);
        answer(&engine, namespace.as_ref()).await.map_err(|error| sync_error_to_js(&error))
    }))
}

#[wasm_bindgen]
impl SyncService {
    /// `options`: `{ concurrency?: number (default 16), casAttempts?: number, dryRun?: boolean, scope?: string,
    /// maxInferredDeletions?: number (default 25), restoreDeleted?: boolean, namespace?: string }`. Each operation's
    /// env may name a namespace (`env.namespace`): the first pull, push or prepare binds the service to it (or to none).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "MarshStore")] store: JsValue,
        #[wasm_bindgen(unchecked_param_type = "MarshCache")] cache: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SyncOptions | undefined")] options: JsValue,
    ) -> Result<SyncService, JsValue> {
        let mut config = EngineConfig::default();
        if let Some(concurrency) = get(&options, "concurrency").as_f64() {
            config.transfers = concurrency.clamp(1.0, 256.0) as usize;
        }
        config.dry_run = get(&options, "dryRun").as_bool() == Some(true);
        if let Some(attempts) = get(&options, "casAttempts").as_f64() {
            config.index_cas_attempts = attempts.clamp(1.0, 100.0) as u32;
        }
        if let Some(limit) = get(&options, "maxInferredDeletions").as_f64() {
            config.max_inferred_deletions = limit.clamp(0.0, 1e9) as usize;
        }
        config.restore_deleted = get(&options, "restoreDeleted").as_bool() == Some(true);
        let instance = match get(&options, "scope").as_string() {
            Some(scope) => Instance::under_locks(held_locks().watch(scope)),
            None => Instance::new(),
        };
        let namespace = match get(&options, "namespace").as_string().filter(|name| !name.is_empty()) {
            Some(name) => Some(Some(Namespace::parse(&name).map_err(|e| js_error("InvalidArgument", &e.to_string()))?)),
            None => None,
        };
        let service = Service {
            store: JsStore::from_js(store)?,
            cache: JsCache::from_js(cache)?,
            config,
            instance,
            namespace: RefCell::new(namespace),
        };
        Ok(SyncService { inner: Rc::new(service) })
    }

    /// Bring the cache up to the remote index; resolves to a `PullReport`. `options` (swamp's sync options):
    /// `{ metadataOnly?: boolean, subdirs?: string[], context?: { models?: { modelType, modelId }[] } }`.
    #[wasm_bindgen(js_name = pullChanged, unchecked_return_type = "Promise<PullReport>")]
    pub fn pull_changed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PullOptions")] options: JsValue,
    ) -> Result<Promise, JsValue> {
        let options = pull_options(&options)?;
        operation(&self.inner, env, Bind::Yes, move |engine, _| {
            Box::pin(async move { engine.pull_with(&options).await.map(pull_report) })
        })
    }

    /// Bring one file of the index into the cache (lazy hydration); resolves to true when it is then in place.
    #[wasm_bindgen(js_name = hydrateFile, unchecked_return_type = "Promise<boolean>")]
    pub fn hydrate_file(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(js_name = relPath)] rel_path: String,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, move |engine, namespace| {
            Box::pin(async move {
                // Checked as given first: an error names the path the caller passed.
                check_path("hydrateFile", &rel_path)?;
                let rel = in_namespace(namespace, &rel_path)?;
                engine.hydrate_file(&rel).await.map(JsValue::from)
            })
        })
    }

    /// One file's bytes from the bucket, the cache untouched; resolves to a `Uint8Array`, or null when absent.
    #[wasm_bindgen(js_name = fetchContent, unchecked_return_type = "Promise<Uint8Array | null>")]
    pub fn fetch_content(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(js_name = relPath)] rel_path: String,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, move |engine, namespace| {
            Box::pin(async move {
                // The remote bytes of the key as given: `{ns}/a` is `a` of the namespace, anything else is outside it.
                check_path("fetchContent", &rel_path)?;
                let rel = in_namespace(namespace, &rel_path)?;
                let bytes = engine.fetch_content(&rel).await?;
                Ok(bytes.map_or(JsValue::NULL, |bytes| Uint8Array::from(bytes.as_slice()).into()))
            })
        })
    }

    /// Upload local changes and merge them into the remote index; resolves to a `PushReport`.
    #[wasm_bindgen(js_name = pushChanged, unchecked_return_type = "Promise<PushReport>")]
    pub fn push_changed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::Yes, |engine, _| {
            Box::pin(async move { engine.push_changed().await.map(push_report) })
        })
    }

    /// What the next push would send: resolves to `{ total, new, changed, deleted }`; nothing is written.
    #[wasm_bindgen(js_name = previewPush, unchecked_return_type = "Promise<PushPreview>")]
    pub fn preview_push(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, |engine, _| {
            Box::pin(async move {
                let preview = engine.preview_push().await?;
                Ok(object(&[
                    ("total", JsValue::from_f64(preview.total() as f64)),
                    ("new", JsValue::from_f64(preview.new as f64)),
                    ("changed", JsValue::from_f64(preview.changed as f64)),
                    ("deleted", JsValue::from_f64(preview.deleted as f64)),
                ]))
            })
        })
    }

    /// Phase one of a two-phase push: upload and remove objects without touching the index; resolves to the manifest
    /// `{ marsh: 1, namespace, uploaded, deleted, conflicts, body }` that `commitPush` takes.
    #[wasm_bindgen(js_name = preparePush, unchecked_return_type = "Promise<PushManifest>")]
    pub fn prepare_push(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::Yes, |engine, namespace| {
            Box::pin(async move {
                let manifest = engine.prepare_push().await?;
                Ok(object(&[
                    ("marsh", JsValue::from_f64(1.0)),
                    ("namespace", optional(namespace.map(|ns| ns.as_str().to_string()))),
                    ("uploaded", JsValue::from_f64(manifest.uploaded() as f64)),
                    ("deleted", JsValue::from_f64(manifest.deleted() as f64)),
                    ("conflicts", conflicts(manifest.conflicts())),
                    ("body", manifest.to_json().into()),
                ]))
            })
        })
    }

    /// Phase two: commit exactly what `manifest`'s prepare did; resolves to a `PushReport`.
    #[wasm_bindgen(js_name = commitPush, unchecked_return_type = "Promise<PushReport>")]
    pub fn commit_push(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PushManifest")] manifest: JsValue,
    ) -> Result<Promise, JsValue> {
        let body = get(&manifest, "body").as_string().ok_or_else(|| {
            js_error("InvalidArgument", "commitPush: the manifest is not one preparePush returned (no body)")
        })?;
        let manifest = PushManifest::parse(&body).map_err(|error| sync_error_to_js(&error))?;
        operation(&self.inner, env, Bind::Yes, move |engine, _| {
            Box::pin(async move { engine.commit_push(&manifest).await.map(push_report) })
        })
    }

    /// "The cache is about to change": `relPath` (cache-relative, `/`-separated) about to be written or removed, or
    /// anything when it is absent (swamp's `markDirty({ relPath })`).
    #[wasm_bindgen(js_name = markDirty, unchecked_return_type = "Promise<void>")]
    pub fn mark_dirty(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(js_name = relPath)] rel_path: Option<String>,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, move |engine, namespace| {
            Box::pin(async move {
                // In a namespace, a path outside it says nothing the namespace's push could look at: anything may
                // change (a bare mark), never a lost write.
                let rel = match (namespace, rel_path) {
                    (Some(ns), Some(rel)) => ns.strip(&rel).map(str::to_string),
                    (_, rel) => rel,
                };
                engine.mark_dirty(rel.as_deref()).await.map(|()| JsValue::UNDEFINED)
            })
        })
    }

    /// Settle one open conflict: `keep` "local" (the next push makes the local file the bucket's) or "remote" (the
    /// bucket's version replaces the local file now). Resolves to a `ResolveReport`; kind `NoConflict` when none is open.
    #[wasm_bindgen(js_name = resolveConflict, unchecked_return_type = "Promise<ResolveReport>")]
    pub fn resolve_conflict(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
        #[wasm_bindgen(js_name = relPath)] rel_path: String,
        #[wasm_bindgen(unchecked_param_type = "\"local\" | \"remote\"")] keep: String,
    ) -> Result<Promise, JsValue> {
        let keep = match keep.as_str() {
            "local" => Keep::Local,
            "remote" => Keep::Remote,
            other => {
                return Err(js_error(
                    "InvalidArgument",
                    &format!("resolveConflict: keep must be \"local\" or \"remote\", not {other:?}"),
                ))
            }
        };
        operation(&self.inner, env, Bind::No, move |engine, namespace| {
            Box::pin(async move {
                let resolved = engine.resolve(&in_namespace(namespace, &rel_path)?, keep).await?;
                let kept = if keep == Keep::Local { "local" } else { "remote" };
                Ok(object(&[
                    ("rel", rel_path.as_str().into()),
                    ("kept", kept.into()),
                    ("downloaded", resolved.downloaded.into()),
                    ("removedLocal", resolved.removed_local.into()),
                    ("markedForPush", resolved.marked_for_push.into()),
                ]))
            })
        })
    }

    /// Convert a format-1 bucket to format 2 (swamp's `migrateMonolithToShards`); resolves to the commit record.
    #[wasm_bindgen(js_name = migrateMonolithToShards, unchecked_return_type = "Promise<MigrateIndexResult>")]
    pub fn migrate_monolith_to_shards(
        &self,
        #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue,
    ) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, |engine, _| {
            Box::pin(async move { engine.migrate_index().await.map(migrated) })
        })
    }

    /// The sidecar, the dirty marker, and whether a pull would take the fast path (one HEAD).
    #[wasm_bindgen(unchecked_return_type = "Promise<SyncStatus>")]
    pub fn status(&self, #[wasm_bindgen(unchecked_param_type = "MarshEnv")] env: JsValue) -> Result<Promise, JsValue> {
        operation(&self.inner, env, Bind::No, |engine, _| {
            Box::pin(async move { engine.status().await.map(status_report) })
        })
    }
}

/// swamp's pull options; a field of the wrong shape is an error naming it (never silently a full pull).
fn pull_options(options: &JsValue) -> Result<PullOptions, JsValue> {
    let invalid = |what: &str| js_error("InvalidArgument", &format!("pullChanged: {what}"));
    let mut parsed =
        PullOptions { metadata_only: get(options, "metadataOnly").as_bool() == Some(true), ..PullOptions::default() };
    let subdirs = get(options, "subdirs");
    if !subdirs.is_undefined() && !subdirs.is_null() {
        let list = subdirs.dyn_ref::<Array>().ok_or_else(|| invalid("subdirs must be an array of folder names"))?;
        let names = list.iter().map(|item| item.as_string().ok_or_else(|| invalid("subdirs must hold strings")));
        parsed.subdirs = Some(names.collect::<Result<_, _>>()?);
    }
    let models = get(&get(options, "context"), "models");
    if !models.is_undefined() && !models.is_null() {
        let list = models.dyn_ref::<Array>().ok_or_else(|| invalid("context.models must be an array"))?;
        for model in list.iter() {
            match (get(&model, "modelType").as_string(), get(&model, "modelId").as_string()) {
                (Some(model_type), Some(model_id)) if !model_type.is_empty() && !model_id.is_empty() => {
                    parsed.models.push((model_type, model_id))
                }
                _ => return Err(invalid("each of context.models needs a modelType and a modelId (non-empty strings)")),
            }
        }
    }
    Ok(parsed)
}

fn strings(items: &[String]) -> JsValue {
    items.iter().map(|s| JsValue::from_str(s)).collect::<Array>().into()
}

/// `[{ rel, kind }]`, kinds as `ConflictKind` names them in `.marsh-conflicts.json` (`both-changed`, …).
fn conflicts(items: &[(String, ConflictKind)]) -> JsValue {
    items
        .iter()
        .map(|(rel, kind)| object(&[("rel", rel.as_str().into()), ("kind", conflict_kind(*kind).into())]))
        .collect::<Array>()
        .into()
}

fn conflict_kind(kind: ConflictKind) -> String {
    serde_json::to_value(kind).ok().and_then(|value| value.as_str().map(str::to_string)).unwrap_or_default()
}

fn pull_report(report: PullReport) -> JsValue {
    object(&[
        ("downloaded", JsValue::from_f64(report.downloaded as f64)),
        ("removed", strings(&report.removed)),
        ("fastPath", report.fast_path.into()),
        ("verified", report.verified.into()),
        ("keptLocal", strings(&report.kept_local)),
        ("pendingDeletions", strings(&report.pending_deletions)),
        ("inFlux", strings(&report.in_flux)),
        ("conflicts", conflicts(&report.conflicts)),
        ("indexEntries", JsValue::from_f64(report.index_entries as f64)),
        ("planned", strings(&report.planned)),
        ("skipped", strings(&report.skipped)),
    ])
}

fn migrated(migrated: Migrated) -> JsValue {
    object(&[
        ("version", JsValue::from_f64(2.0)),
        ("partitions", strings(&migrated.partitions)),
        ("commitSeq", JsValue::from_f64(migrated.commit_seq as f64)),
        ("converted", migrated.converted.into()),
    ])
}

fn push_report(report: PushReport) -> JsValue {
    object(&[
        ("uploaded", JsValue::from_f64(report.uploaded as f64)),
        ("deleted", strings(&report.deleted)),
        ("fastPath", report.fast_path.into()),
        ("indexWritten", report.index_written.into()),
        ("scrubbed", strings(&report.scrubbed)),
        ("symlinks", strings(&report.symlinks)),
        ("vanished", strings(&report.vanished)),
        ("conflicts", conflicts(&report.conflicts)),
        ("remoteNewer", strings(&report.remote_newer)),
        ("verified", report.verified.into()),
        ("clean", report.clean.into()),
        ("walkReused", report.walk_reused.into()),
        ("markedOnly", report.marked_only.into()),
        ("marksCleared", JsValue::from_f64(report.marks_cleared as f64)),
        ("planned", strings(&report.planned)),
    ])
}

fn optional(value: Option<impl Into<JsValue>>) -> JsValue {
    value.map(Into::into).unwrap_or(JsValue::NULL)
}

fn status_report(status: Status) -> JsValue {
    let sidecar = match &status.state.origin {
        SidecarOrigin::Missing => "missing".to_string(),
        SidecarOrigin::Unusable(why) => format!("unusable ({why})"),
        SidecarOrigin::OfficialV1 { .. } => "official v1 (not trusted: next sync takes the full path)".to_string(),
        SidecarOrigin::Marsh => "marsh v2".to_string(),
    };
    object(&[
        ("sidecar", sidecar.into()),
        ("verifiedToken", optional(status.state.verified_token.as_ref().map(|t| t.as_str().to_string()))),
        ("verifiedAt", optional(status.state.verified_at.clone())),
        ("dirtyGeneration", JsValue::from_f64(status.marker.generation() as f64)),
        ("locallyDirty", status.locally_dirty.into()),
        ("markedPaths", JsValue::from_f64(status.marked_paths as f64)),
        ("pullFastPath", optional(status.pull_fast_path)),
        ("remoteFormat", optional(status.remote_format.map(f64::from))),
        ("remoteIndexSize", optional(status.remote_index_size.map(|n| n as f64))),
        (
            "conflicts",
            conflicts(&status.conflicts.iter().map(|(rel, open)| (rel.clone(), open.kind)).collect::<Vec<_>>()),
        ),
    ])
}

/// A `SyncError` as a JS `Error`: `name` "AbortError" for aborts (what `AbortSignal` users expect), "LockLostError"
/// for a lost lock (as `LockClient` reports it), else "MarshError"; `kind` names the variant; per-file failures are
/// listed with their own kinds.
pub(super) fn sync_error_to_js(error: &SyncError) -> JsValue {
    let (kind, cause) = match error {
        SyncError::LockLost(lost) => return lock_error_to_js(lost.clone()),
        SyncError::Aborted => ("Aborted", None),
        SyncError::IndexUnreadable(cause) => ("IndexUnreadable", Some(cause)),
        SyncError::IndexCorrupt(_) => ("IndexCorrupt", None),
        SyncError::FormatUnsupported(_) => ("FormatUnsupported", None),
        SyncError::Conflicts { .. } => ("Conflicts", None),
        SyncError::MassDeletion { .. } => ("MassDeletion", None),
        SyncError::NoConflict { .. } => ("NoConflict", None),
        SyncError::InvalidArgument(_) => ("InvalidArgument", None),
        SyncError::IndexContended { .. } => ("IndexContended", None),
        SyncError::IndexWrite(cause) => ("IndexWrite", Some(cause)),
        SyncError::Local(cause) => ("Local", Some(cause)),
        SyncError::Files { .. } => ("Files", None),
    };
    let value = js_error(kind, &error.to_string());
    if matches!(error, SyncError::Aborted) {
        js_sys::Error::from(value.clone()).set_name("AbortError");
    }
    if let Some(cause) = cause {
        set(&value, "causeKind", &store_error_kind(cause).into());
        if let Some(status) = status_of(cause) {
            set(&value, "status", &JsValue::from_f64(status as f64));
        }
    }
    if let SyncError::Conflicts { conflicts: found, transferred } = error {
        set(&value, "conflicts", &conflicts(found));
        set(&value, "transferred", &JsValue::from_f64(*transferred as f64));
    }
    if let SyncError::MassDeletion { count, limit, .. } = error {
        set(&value, "count", &JsValue::from_f64(*count as f64));
        set(&value, "limit", &JsValue::from_f64(*limit as f64));
    }
    if let SyncError::Files { failures, transferred, .. } = error {
        let list: Array = failures
            .iter()
            .map(|failure| {
                let item = object(&[
                    ("rel", failure.rel.as_str().into()),
                    ("kind", store_error_kind(&failure.error).into()),
                    ("message", failure.error.to_string().into()),
                ]);
                if let Some(status) = status_of(&failure.error) {
                    set(&item, "status", &JsValue::from_f64(f64::from(status)));
                }
                item
            })
            .collect();
        set(&value, "failures", &list);
        set(&value, "transferred", &JsValue::from_f64(*transferred as f64));
    }
    value
}

pub(super) fn status_of(error: &crate::store::StoreError) -> Option<u16> {
    use crate::store::StoreError;
    match error {
        StoreError::Transient { status, .. } | StoreError::Auth { status, .. } => *status,
        StoreError::Http { status, .. } => Some(*status),
        _ => None,
    }
}
