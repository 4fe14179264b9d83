//! Namespaces: several repositories sharing one bucket prefix and one cache directory, each in a subtree of its own.
//!
//! A namespace `ns` puts a repository's objects at `{ns}/{rel}` (its index at `{ns}/_index/…` or
//! `{ns}/.datastore-index.json`, its lock at `{ns}/.datastore.lock`) and its files at `{cache}/{ns}/{rel}`; index
//! entries keep the bare `rel`. The format marker stays at the datastore root: one format for the whole bucket.
//!
//! The engine knows nothing of this: [`ScopedStore`] and [`ScopedCache`] present the subtree as a whole store and a
//! whole cache. A namespace's own state (sidecar, view, marks, journals) lives in internal folders at the cache root
//! named after it (`.marsh-ns~{ns}`, `.marsh-ns~{ns}~{folder}`), never inside `{cache}/{ns}/`, so that an operation
//! without a namespace on the same cache never takes it for data. Such an operation also leaves the subtree of every
//! namespace that has state here out of its walk: a bare markDirty at the root must not copy a namespace's files
//! into the root index.
//!
//! A namespace is claimed by a create-only `{ns}/.namespace.json` (`{namespace, repoId, registeredAt}`): the first
//! repository to create it owns it; registering again with the same `repoId` is a no-op, another `repoId` an error.

use crate::index::meta::FORMAT_MARKER_KEY;
use crate::path::check_rel;
use crate::store::retry::{with_retry, RetryPolicy};
use crate::store::token::VersionToken;
use crate::store::{
    Downloaded, Env, Expected, Fetched, FileStat, ListPage, LocalCache, ObjectMeta, ObjectStore, PathStat,
    Precondition, Prepared, StoreError, StoreResult, WalkItem,
};

/// Root folders holding a namespace's local state start with this.
pub const STATE_PREFIX: &str = ".marsh-ns~";
/// A namespace's claim object, below the namespace.
pub const CLAIM_NAME: &str = ".namespace.json";

/// A checked namespace name: one path segment of letters, digits, `-`, `_` and `.`, not starting with `.` or `_`
/// (those are internal names at the root), at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error("invalid namespace {name:?}: {reason}")]
    Invalid { name: String, reason: &'static str },
    #[error("namespace {namespace:?} is claimed by repository {owner:?} ({key}), not by {repo_id:?}")]
    Claimed { namespace: String, owner: String, repo_id: String, key: String },
    #[error("{key}: not a namespace claim ({reason})")]
    BadClaim { key: String, reason: String },
    #[error("{0}")]
    Store(StoreError),
}

impl Namespace {
    pub fn parse(name: &str) -> Result<Namespace, NamespaceError> {
        let fail = |reason| Err(NamespaceError::Invalid { name: name.to_string(), reason });
        if name.is_empty() {
            return fail("empty");
        }
        if name.len() > 128 {
            return fail("longer than 128 bytes");
        }
        if name.starts_with(['.', '_']) {
            return fail("starts with '.' or '_' (internal names)");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return fail("only letters, digits, '-', '_' and '.' are allowed");
        }
        Ok(Namespace(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `rel` (cache-relative) inside this namespace, relative to it: `{ns}/a/b` → `a/b`; `None` outside it.
    pub fn strip<'r>(&self, rel: &'r str) -> Option<&'r str> {
        rel.strip_prefix(self.0.as_str()).and_then(|rest| rest.strip_prefix('/')).filter(|rest| !rest.is_empty())
    }

    fn state_name(&self, name: &str) -> String {
        match name.split_once('/') {
            Some((folder, rest)) => format!("{STATE_PREFIX}{}~{folder}/{rest}", self.0),
            None => format!("{STATE_PREFIX}{}/{name}", self.0),
        }
    }

    /// The internal folder holding what the engine keeps in its folder `folder` (the marks).
    fn state_folder(&self, folder: &str) -> String {
        format!("{STATE_PREFIX}{}~{folder}", self.0)
    }

    /// The claim object's key.
    pub fn claim_key(&self) -> String {
        format!("{}/{CLAIM_NAME}", self.0)
    }
}

fn strip_item(item: WalkItem, prefix: &str) -> Option<WalkItem> {
    let strip = |rel: String| rel.strip_prefix(prefix).filter(|rest| !rest.is_empty()).map(str::to_string);
    Some(match item {
        WalkItem::File { rel, stat } => WalkItem::File { rel: strip(rel)?, stat },
        WalkItem::Vanished { rel } => WalkItem::Vanished { rel: strip(rel)? },
        WalkItem::Symlink { rel } => WalkItem::Symlink { rel: strip(rel)? },
    })
}

fn item_rel(item: &WalkItem) -> &str {
    match item {
        WalkItem::File { rel, .. } | WalkItem::Vanished { rel } | WalkItem::Symlink { rel } => rel,
    }
}

/// The bucket as one namespace sees it (or the whole bucket, without one).
pub struct ScopedStore<'a, S> {
    inner: &'a S,
    /// `{ns}/`, or empty.
    prefix: String,
}

impl<'a, S> ScopedStore<'a, S> {
    pub fn new(inner: &'a S, namespace: Option<&Namespace>) -> Self {
        ScopedStore { inner, prefix: namespace.map(|ns| format!("{}/", ns.0)).unwrap_or_default() }
    }

    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() || key == FORMAT_MARKER_KEY {
            key.to_string()
        } else {
            format!("{}{key}", self.prefix)
        }
    }
}

impl<S: ObjectStore> ObjectStore for ScopedStore<'_, S> {
    type Body = S::Body;

    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<S::Body>> {
        self.inner.get(&self.key(key), if_none_match).await
    }

    async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
        self.inner.get_bytes(&self.key(key), if_none_match).await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.inner.head(&self.key(key)).await
    }

    async fn put(&self, key: &str, body: S::Body, precondition: &Precondition) -> StoreResult<VersionToken> {
        self.inner.put(&self.key(key), body, precondition).await
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8], precondition: &Precondition) -> StoreResult<VersionToken> {
        self.inner.put_bytes(&self.key(key), bytes, precondition).await
    }

    async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()> {
        self.inner.delete(&self.key(key), if_match).await
    }

    async fn list(&self, prefix: &str, page: Option<&str>) -> StoreResult<ListPage> {
        let mut listed = self.inner.list(&self.key(prefix), page).await?;
        if !self.prefix.is_empty() {
            listed.objects.retain_mut(|object| match object.key.strip_prefix(self.prefix.as_str()) {
                Some(rest) => {
                    object.key = rest.to_string();
                    true
                }
                None => false,
            });
        }
        Ok(listed)
    }
}

/// The cache as one namespace sees it: its files under `{cache}/{ns}/`, its state in `.marsh-ns~{ns}…` folders. Without
/// a namespace: the whole cache, less the subtrees of the namespaces that have state here.
pub struct ScopedCache<'a, C> {
    inner: &'a C,
    namespace: Option<Namespace>,
}

impl<'a, C> ScopedCache<'a, C> {
    pub fn new(inner: &'a C, namespace: Option<&Namespace>) -> Self {
        ScopedCache { inner, namespace: namespace.cloned() }
    }

    fn rel(&self, rel: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{rel}", ns.0),
            None => rel.to_string(),
        }
    }

    fn internal(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns) => ns.state_name(name),
            None => name.to_string(),
        }
    }
}

impl<C: LocalCache> LocalCache for ScopedCache<'_, C> {
    type Body = C::Body;

    async fn stat(&self, rel: &str) -> StoreResult<Option<FileStat>> {
        self.inner.stat(&self.rel(rel)).await
    }

    // Forwarded, not left to the default: the default walks, and the slow-path pull of a namespace would walk it.
    async fn stat_many(&self, rels: &[&str]) -> StoreResult<Vec<PathStat>> {
        match &self.namespace {
            Some(_) => {
                let full: Vec<String> = rels.iter().map(|rel| self.rel(rel)).collect();
                self.inner.stat_many(&full.iter().map(String::as_str).collect::<Vec<_>>()).await
            }
            None => self.inner.stat_many(rels).await,
        }
    }

    async fn walk(&self) -> StoreResult<Vec<WalkItem>> {
        match &self.namespace {
            Some(ns) => {
                let prefix = format!("{}/", ns.0);
                let items = self.inner.walk_under(&ns.0).await?;
                Ok(items.into_iter().filter_map(|item| strip_item(item, &prefix)).collect())
            }
            None => {
                let mut items = self.inner.walk().await?;
                // Namespaces with state here: their subtrees are theirs, not the root's data.
                let mut owned: Vec<String> = items
                    .iter()
                    .filter_map(|item| item_rel(item).strip_prefix(STATE_PREFIX))
                    .filter_map(|rest| rest.split(['/', '~']).next())
                    .map(|ns| format!("{ns}/"))
                    .collect();
                owned.sort_unstable();
                owned.dedup();
                if !owned.is_empty() {
                    items.retain(|item| !owned.iter().any(|prefix| item_rel(item).starts_with(prefix.as_str())));
                }
                Ok(items)
            }
        }
    }

    async fn walk_under(&self, rel: &str) -> StoreResult<Vec<WalkItem>> {
        match &self.namespace {
            Some(ns) => {
                let items = self.inner.walk_under(&self.rel(rel)).await?;
                let prefix = format!("{}/", ns.0);
                Ok(items.into_iter().filter_map(|item| strip_item(item, &prefix)).collect())
            }
            None => {
                // A root mark inside a namespace's subtree (a namespace with state here) names none of the root's files.
                let top = rel.split('/').next().unwrap_or(rel);
                if let Ok(ns) = Namespace::parse(top) {
                    for folder in [format!("{STATE_PREFIX}{top}"), ns.state_folder(crate::path::MARKS_FOLDER)] {
                        if !self.inner.list_internal(&folder).await?.is_empty() {
                            return Ok(Vec::new());
                        }
                    }
                }
                self.inner.walk_under(rel).await
            }
        }
    }

    async fn remove(&self, rel: &str, expected: FileStat) -> StoreResult<()> {
        self.inner.remove(&self.rel(rel), expected).await
    }

    async fn read_internal(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.read_internal(&self.internal(name)).await
    }

    async fn fingerprint_internal(&self, name: &str) -> u64 {
        self.inner.fingerprint_internal(&self.internal(name)).await
    }

    async fn write_internal(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        self.inner.write_internal(&self.internal(name), bytes).await
    }

    async fn list_internal(&self, folder: &str) -> StoreResult<Vec<String>> {
        match &self.namespace {
            Some(ns) => self.inner.list_internal(&ns.state_folder(folder)).await,
            None => self.inner.list_internal(folder).await,
        }
    }

    async fn remove_internal(&self, name: &str) -> StoreResult<()> {
        self.inner.remove_internal(&self.internal(name)).await
    }

    async fn prepare_upload(&self, rel: &str) -> StoreResult<Option<Prepared<C::Body>>> {
        self.inner.prepare_upload(&self.rel(rel)).await
    }

    async fn download(&self, rel: &str, body: C::Body, expected: Expected) -> StoreResult<Downloaded> {
        self.inner.download(&self.rel(rel), body, expected).await
    }

    async fn create_dir(&self, rel: &str) -> StoreResult<()> {
        self.inner.create_dir(&self.rel(rel)).await
    }

    async fn hash(&self, rel: &str) -> StoreResult<Option<Downloaded>> {
        self.inner.hash(&self.rel(rel)).await
    }
}

/// A namespace's claim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub namespace: String,
    pub repo_id: String,
    pub registered_at: String,
}

/// Claim `namespace` for `repo_id` by a create-only write of `{ns}/.namespace.json`. Ok when it is ours (new, or
/// claimed before by the same repository, a retried create included); `Claimed` naming the owner otherwise.
pub async fn register<S: ObjectStore, E: Env>(
    store: &S,
    env: &E,
    retry: &RetryPolicy,
    namespace: &Namespace,
    repo_id: &str,
) -> Result<Claim, NamespaceError> {
    if repo_id.trim().is_empty() {
        return Err(NamespaceError::Invalid { name: namespace.0.clone(), reason: "the repoId is empty" });
    }
    let key = namespace.claim_key();
    let claim = Claim {
        namespace: namespace.0.clone(),
        repo_id: repo_id.to_string(),
        registered_at: crate::encoding::time::iso_from_ms(env.now_ms()),
    };
    let bytes = serde_json::to_vec(&claim).expect("a claim serialises");
    match with_retry(env, retry, || store.put_bytes(&key, &bytes, &Precondition::IfAbsent)).await {
        Ok(_) => return Ok(claim),
        Err(StoreError::PreconditionFailed { .. }) => {}
        Err(other) => return Err(NamespaceError::Store(other)),
    }
    let existing = read_claim(store, env, retry, &key).await?;
    match existing {
        Some(existing) if existing.repo_id == repo_id => Ok(existing),
        Some(existing) => Err(NamespaceError::Claimed {
            namespace: namespace.0.clone(),
            owner: existing.repo_id,
            repo_id: repo_id.to_string(),
            key,
        }),
        // Deleted between our create and our read: nobody owns it now; the caller may register again.
        None => Err(NamespaceError::Store(StoreError::Transient {
            status: None,
            message: format!("{key} vanished while it was being read; register again"),
        })),
    }
}

async fn read_claim<S: ObjectStore, E: Env>(
    store: &S,
    env: &E,
    retry: &RetryPolicy,
    key: &str,
) -> Result<Option<Claim>, NamespaceError> {
    match with_retry(env, retry, || store.get_bytes(key, None)).await {
        Ok(Fetched::Found { body, .. }) => serde_json::from_slice::<Claim>(&body)
            .map(Some)
            .map_err(|e| NamespaceError::BadClaim { key: key.to_string(), reason: e.to_string() }),
        Ok(Fetched::NotModified) | Err(StoreError::NotFound { .. }) => Ok(None),
        Err(other) => Err(NamespaceError::Store(other)),
    }
}

/// The namespaces claimed in the bucket, sorted: every `{ns}/.namespace.json` one level below the root. One listing
/// of the whole prefix (a claim is a key like any other); a claim that is not ours to parse is still listed by its key.
pub async fn list<S: ObjectStore, E: Env>(
    store: &S,
    env: &E,
    retry: &RetryPolicy,
) -> Result<Vec<String>, NamespaceError> {
    let mut found = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let listed = with_retry(env, retry, || store.list("", page.as_deref())).await.map_err(NamespaceError::Store)?;
        for object in &listed.objects {
            if let Some((ns, CLAIM_NAME)) = object.key.split_once('/') {
                if Namespace::parse(ns).is_ok() && check_rel(&object.key).is_ok() {
                    found.push(ns.to_string());
                }
            }
        }
        match listed.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_segment() {
        for good in ["team-a", "prod", "a.b_c", "X1"] {
            assert!(Namespace::parse(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "_index", "a/b", "..", "a b", "é", "a~b", &"n".repeat(129)] {
            let error = Namespace::parse(bad).unwrap_err().to_string();
            assert!(error.contains("invalid namespace"), "{bad}: {error}");
        }
    }

    #[test]
    fn paths_strip_only_inside_the_namespace() {
        let ns = Namespace::parse("team").unwrap();
        assert_eq!(ns.strip("team/data/a.json"), Some("data/a.json"));
        assert_eq!(ns.strip("team"), None);
        assert_eq!(ns.strip("team/"), None);
        assert_eq!(ns.strip("teamx/a"), None);
        assert_eq!(ns.strip("other/team/a"), None);
    }

    #[test]
    fn state_lives_in_root_folders_named_after_the_namespace() {
        let ns = Namespace::parse("team").unwrap();
        assert_eq!(ns.state_name(".marsh-view.json"), ".marsh-ns~team/.marsh-view.json");
        assert_eq!(ns.state_name(".marsh-marks/1-a~x"), ".marsh-ns~team~.marsh-marks/1-a~x");
        assert!(crate::path::is_internal(&ns.state_name(".marsh-view.json")));
        assert!(crate::path::is_internal(&ns.state_name(".marsh-marks/1-a~x")));
        assert_eq!(ns.state_folder(".marsh-marks"), ".marsh-ns~team~.marsh-marks");
    }
}
