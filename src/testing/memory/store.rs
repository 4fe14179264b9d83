//! The in-memory object store: exact S3 (content ETag) or GCS (generation) token and precondition semantics.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::rc::Rc;

use super::faults::settle;
use super::*;
use crate::store::token::VersionToken;
use crate::store::{Fetched, ListPage, ListedObject, ObjectMeta, ObjectStore, Precondition, StoreError, StoreResult};

/// Which real store's version tokens to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStyle {
    /// Content-derived ETag (see [`s3_token`]): rewriting identical bytes keeps the token. `If-Match` on a missing
    /// object answers `NotFound` (S3's 404 NoSuchKey).
    S3,
    /// Generation: a bucket-wide counter, new on every write, also for identical bytes. `ifGenerationMatch` on a
    /// missing object answers `PreconditionFailed` (412).
    Gcs,
}

/// Requests seen by one store handle, by kind (injected failures included: the request was made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub get: usize,
    pub get_bytes: usize,
    pub head: usize,
    pub put: usize,
    pub put_bytes: usize,
    pub delete: usize,
    pub list: usize,
}

impl RequestCounts {
    pub fn total(&self) -> usize {
        self.get + self.get_bytes + self.head + self.put + self.put_bytes + self.delete + self.list
    }

    fn bump(&mut self, kind: Kind) {
        let counter = match kind {
            Kind::Get => &mut self.get,
            Kind::GetBytes => &mut self.get_bytes,
            Kind::Head => &mut self.head,
            Kind::Put => &mut self.put,
            Kind::PutBytes => &mut self.put_bytes,
            Kind::Delete => &mut self.delete,
            Kind::List => &mut self.list,
            other => unreachable!("{other:?} is not a store request"),
        };
        *counter += 1;
    }
}

#[derive(Clone)]
struct StoredObject {
    body: Body,
    token: VersionToken,
}

struct Bucket {
    style: TokenStyle,
    objects: BTreeMap<String, StoredObject>,
    next_generation: u64,
    page_size: usize,
}

impl Bucket {
    fn next_token(&mut self, bytes: &[u8]) -> VersionToken {
        match self.style {
            TokenStyle::S3 => s3_token(bytes),
            TokenStyle::Gcs => {
                let generation = self.next_generation;
                self.next_generation += 1;
                VersionToken::new(generation.to_string())
            }
        }
    }

    fn check_write(&self, key: &str, precondition: &Precondition) -> StoreResult<()> {
        let current = self.objects.get(key);
        match (precondition, current) {
            (Precondition::None, _) | (Precondition::IfAbsent, None) => Ok(()),
            (Precondition::IfAbsent, Some(_)) => Err(precondition_failed(key)),
            (Precondition::IfMatch(expected), Some(object)) if object.token == *expected => Ok(()),
            (Precondition::IfMatch(_), Some(_)) => Err(precondition_failed(key)),
            (Precondition::IfMatch(_), None) => match self.style {
                TokenStyle::S3 => Err(not_found(key)),
                TokenStyle::Gcs => Err(precondition_failed(key)),
            },
        }
    }

    fn write(&mut self, key: &str, body: Body, precondition: &Precondition) -> StoreResult<VersionToken> {
        self.check_write(key, precondition)?;
        let token = self.next_token(&body);
        self.objects.insert(key.to_string(), StoredObject { body, token: token.clone() });
        Ok(token)
    }

    fn fetch(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Body>> {
        let object = self.objects.get(key).ok_or_else(|| not_found(key))?;
        if if_none_match == Some(&object.token) {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Found { body: object.body.clone(), token: object.token.clone(), size: object.body.len() as u64 })
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound { key: key.to_string() }
}

fn precondition_failed(key: &str) -> StoreError {
    StoreError::PreconditionFailed { key: key.to_string() }
}

/// An in-memory bucket. `clone()` shares the bucket, the fault rules and the request counters; [`MemoryStore::client`]
/// gives a second client of the same bucket with its own rules and counters (one per simulated machine).
#[derive(Clone)]
pub struct MemoryStore {
    bucket: Rc<RefCell<Bucket>>,
    faults: Faults,
    requests: Rc<Cell<RequestCounts>>,
}

impl MemoryStore {
    pub fn new(style: TokenStyle) -> Self {
        let bucket = Bucket {
            style,
            objects: BTreeMap::new(),
            next_generation: FIRST_GCS_GENERATION,
            page_size: DEFAULT_PAGE_SIZE,
        };
        MemoryStore { bucket: Rc::new(RefCell::new(bucket)), faults: Faults::new(), requests: Rc::default() }
    }

    /// Another client of the same bucket, with fresh fault rules and request counters.
    pub fn client(&self) -> Self {
        MemoryStore { bucket: self.bucket.clone(), faults: Faults::new(), requests: Rc::default() }
    }

    /// The same handle with `faults` as its controller (e.g. one controller shared with a cache).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn style(&self) -> TokenStyle {
        self.bucket.borrow().style
    }

    pub fn set_page_size(&self, page_size: usize) {
        assert!(page_size > 0, "page size must be positive");
        self.bucket.borrow_mut().page_size = page_size;
    }

    pub fn requests(&self) -> RequestCounts {
        self.requests.get()
    }

    pub fn reset_requests(&self) {
        self.requests.set(RequestCounts::default());
    }

    /// Every object: key → (bytes, token).
    pub fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, VersionToken)> {
        let bucket = self.bucket.borrow();
        bucket.objects.iter().map(|(key, object)| (key.clone(), (object.body.to_vec(), object.token.clone()))).collect()
    }

    pub fn object(&self, key: &str) -> Option<(Vec<u8>, VersionToken)> {
        let bucket = self.bucket.borrow();
        bucket.objects.get(key).map(|object| (object.body.to_vec(), object.token.clone()))
    }

    pub fn token(&self, key: &str) -> Option<VersionToken> {
        self.bucket.borrow().objects.get(key).map(|object| object.token.clone())
    }

    pub fn keys(&self) -> Vec<String> {
        self.bucket.borrow().objects.keys().cloned().collect()
    }

    /// Write an object directly (no yield, no faults, not counted), with a token of the bucket's style.
    pub fn put_raw(&self, key: &str, bytes: impl Into<Vec<u8>>) -> VersionToken {
        let body = Rc::new(bytes.into());
        let mut bucket = self.bucket.borrow_mut();
        bucket.write(key, body, &Precondition::None).expect("an unconditional write succeeds")
    }

    /// Write an object directly with a chosen token (e.g. a multipart ETag `"<hex>-3"`, or a GCS generation "0").
    pub fn put_raw_with_token(&self, key: &str, bytes: impl Into<Vec<u8>>, token: VersionToken) {
        let object = StoredObject { body: Rc::new(bytes.into()), token };
        self.bucket.borrow_mut().objects.insert(key.to_string(), object);
    }

    /// Delete an object directly; whether it existed.
    pub fn remove_raw(&self, key: &str) -> bool {
        self.bucket.borrow_mut().objects.remove(key).is_some()
    }

    async fn arrive(&self, kind: Kind, key: &str) -> StoreResult<Option<StoreError>> {
        let arrival = self.faults.arrive(kind, key).await;
        let mut counts = self.requests.get();
        counts.bump(kind);
        self.requests.set(counts);
        arrival
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bucket = self.bucket.borrow();
        f.debug_struct("MemoryStore")
            .field("style", &bucket.style)
            .field("objects", &bucket.objects.len())
            .field("requests", &self.requests.get())
            .finish()
    }
}

impl ObjectStore for MemoryStore {
    type Body = Body;

    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Body>> {
        let fail_after = self.arrive(Kind::Get, key).await?;
        settle(self.bucket.borrow().fetch(key, if_none_match), fail_after)
    }

    async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
        let fail_after = self.arrive(Kind::GetBytes, key).await?;
        let fetched = self.bucket.borrow().fetch(key, if_none_match).map(|fetched| match fetched {
            Fetched::NotModified => Fetched::NotModified,
            Fetched::Found { body, token, size } => Fetched::Found { body: body.to_vec(), token, size },
        });
        settle(fetched, fail_after)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let fail_after = self.arrive(Kind::Head, key).await?;
        let bucket = self.bucket.borrow();
        let meta = bucket
            .objects
            .get(key)
            .map(|object| ObjectMeta { token: object.token.clone(), size: object.body.len() as u64 })
            .ok_or_else(|| not_found(key));
        settle(meta, fail_after)
    }

    async fn put(&self, key: &str, body: Body, precondition: &Precondition) -> StoreResult<VersionToken> {
        let fail_after = self.arrive(Kind::Put, key).await?;
        settle(self.bucket.borrow_mut().write(key, body, precondition), fail_after)
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8], precondition: &Precondition) -> StoreResult<VersionToken> {
        let fail_after = self.arrive(Kind::PutBytes, key).await?;
        settle(self.bucket.borrow_mut().write(key, Rc::new(bytes.to_vec()), precondition), fail_after)
    }

    async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()> {
        let fail_after = self.arrive(Kind::Delete, key).await?;
        let mut bucket = self.bucket.borrow_mut();
        let deleted = match bucket.objects.get(key) {
            None => Err(not_found(key)),
            Some(object) if if_match.is_some_and(|expected| *expected != object.token) => Err(precondition_failed(key)),
            Some(_) => {
                bucket.objects.remove(key);
                Ok(())
            }
        };
        settle(deleted, fail_after)
    }

    /// Keys with `prefix`, ascending. The page token is the last key of the previous page, so paging stays correct
    /// while other writers add or remove keys (like S3's `StartAfter`).
    async fn list(&self, prefix: &str, page: Option<&str>) -> StoreResult<ListPage> {
        let fail_after = self.arrive(Kind::List, prefix).await?;
        let bucket = self.bucket.borrow();
        let after = match page {
            None => None,
            Some(token) => match token.strip_prefix("after:") {
                Some(key) => Some(key),
                None => {
                    let message = format!("invalid page token {token:?}");
                    return settle(Err(StoreError::Http { status: 400, message }), fail_after);
                }
            },
        };
        let mut objects = Vec::new();
        let mut more = false;
        let candidates = bucket
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix));
        for (key, object) in candidates.filter(|(key, _)| after.is_none_or(|after| key.as_str() > after)) {
            if objects.len() == bucket.page_size {
                more = true;
                break;
            }
            objects.push(ListedObject {
                key: key.clone(),
                size: object.body.len() as u64,
                token: object.token.clone(),
            });
        }
        let next_page = if more { objects.last().map(|last| format!("after:{}", last.key)) } else { None };
        settle(Ok(ListPage { objects, next_page }), fail_after)
    }
}
