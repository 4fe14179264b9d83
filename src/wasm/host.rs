//! The host objects as core traits: [`JsStore`] (a `MarshStore`) as [`ObjectStore`], [`JsCache`] (a `MarshCache`) as
//! [`LocalCache`], [`JsEnv`] (a `MarshEnv`) as [`Env`], and the error mapping in both directions.
//!
//! Errors cross as objects with a `kind` string (`"NotFound"`, `"PreconditionFailed"`, …): a host method throws
//! `{ kind, status?, key?, message }` and [`store_error_from_js`] turns it into a [`StoreError`]; anything without a
//! known kind becomes `Io` with its message, so a host bug is never mistaken for a retryable failure.
//!
//! Every call made for an operation carries that operation's abort signal as a last `{ signal }` argument (B15), so
//! adapters can cancel their fetch/SDK requests.

use js_sys::{Array, ArrayBuffer, Float64Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::encoding::fingerprint::{fingerprint, Fingerprinter};
use crate::index::{parse_sha256_hex, sha256_hex};
use crate::store::token::VersionToken;
use crate::store::{
    Downloaded, Env, Expected, Fetched, FileStat, ListPage, ListedObject, LocalCache, ObjectMeta, ObjectStore,
    PathStat, Precondition, Prepared, Progress, Replaces, StoreError, StoreResult, WalkItem,
};

// ---------------------------------------------------------------------------------------------------------------------
// Errors

/// The `kind` string of a [`StoreError`], as seen by JS.
pub fn store_error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound { .. } => "NotFound",
        StoreError::PreconditionFailed { .. } => "PreconditionFailed",
        StoreError::Transient { .. } => "Transient",
        StoreError::Auth { .. } => "Auth",
        StoreError::Http { .. } => "Http",
        StoreError::Aborted => "Aborted",
        StoreError::InvalidKey { .. } => "InvalidKey",
        StoreError::Mismatch { .. } => "Mismatch",
        StoreError::LocalChanged { .. } => "LocalChanged",
        StoreError::Io { .. } => "Io",
    }
}

/// A JS `Error` with a `kind` for failures that are not a [`StoreError`] (e.g. a wrong argument).
pub fn js_error(kind: &str, message: &str) -> JsValue {
    let js_error = js_sys::Error::new(message);
    js_error.set_name("MarshError");
    set(&js_error, "kind", &JsValue::from_str(kind));
    js_error.into()
}

/// Map a value thrown (or a promise rejection) by a host method to a [`StoreError`].
///
/// `key` is the key or path of the call: it fills in errors whose `kind` needs one when the host left `key` out. A
/// DOM `AbortError` (what `AbortSignal`-aware APIs throw) counts as `Aborted`.
pub fn store_error_from_js(thrown: &JsValue, key: &str) -> StoreError {
    let message = thrown_message(thrown);
    let kind = string_prop(thrown, "kind");
    let status = get(thrown, "status").as_f64().filter(|s| (0.0..=999.0).contains(s)).map(|s| s as u16);
    let key = string_prop(thrown, "key").unwrap_or_else(|| key.to_string());
    match kind.as_deref() {
        Some("NotFound") => StoreError::NotFound { key },
        Some("PreconditionFailed") => StoreError::PreconditionFailed { key },
        Some("Transient") => StoreError::Transient { status, message },
        Some("Auth") => StoreError::Auth { status, message },
        Some("Http") => StoreError::Http { status: status.unwrap_or(0), message },
        Some("Aborted") => StoreError::Aborted,
        Some("InvalidKey") => StoreError::InvalidKey { key, reason: message },
        Some("Mismatch") => StoreError::Mismatch { key, message },
        Some("LocalChanged") => StoreError::LocalChanged { key },
        Some("Io") => StoreError::Io { message },
        _ if string_prop(thrown, "name").as_deref() == Some("AbortError") => StoreError::Aborted,
        Some(other) => StoreError::Io { message: format!("{message} (unknown error kind {other:?})") },
        None => StoreError::Io { message },
    }
}

/// The best human-readable text of a thrown value: its `message`, the string itself, or a debug rendering.
fn thrown_message(thrown: &JsValue) -> String {
    if let Some(message) = string_prop(thrown, "message") {
        return message;
    }
    if let Some(text) = thrown.as_string() {
        return text;
    }
    format!("{thrown:?}")
}

// ---------------------------------------------------------------------------------------------------------------------
// Small helpers over JS objects

/// `target[name]`, or `undefined` when `target` is not an object or the lookup throws (a getter, a proxy).
pub(super) fn get(target: &JsValue, name: &str) -> JsValue {
    if !target.is_object() && !target.is_function() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(target, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn string_prop(target: &JsValue, name: &str) -> Option<String> {
    get(target, name).as_string()
}

pub(super) fn set(target: &JsValue, name: &str, value: &JsValue) {
    // Setting a property on a fresh plain object or Error cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(name), value);
}

/// A plain object of `pairs`. An `undefined` value leaves its field out: an optional field of js/host.ts (`sha256?`) is
/// absent when it has no value, never present as `undefined`.
pub(super) fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let result = Object::new();
    for (name, value) in pairs.iter().filter(|(_, value)| !value.is_undefined()) {
        set(&result, name, value);
    }
    result.into()
}

fn optional_string(value: Option<&str>) -> JsValue {
    value.map(JsValue::from_str).unwrap_or(JsValue::UNDEFINED)
}

/// A long JS string (the ~18 MB of paths of a 250k-file walk) as UTF-8, encoded by the host's `TextEncoder` in native
/// code and copied in once: the glue's `as_string` encodes the ASCII part one character at a time in JavaScript
/// (~40 ms for those paths, against ~15 ms). Lone surrogates become U+FFFD either way. `None`: not a string.
fn long_string(value: &JsValue) -> Option<String> {
    if !value.is_string() {
        return None;
    }
    let encoded = Reflect::get(&js_sys::global(), &"TextEncoder".into())
        .ok()
        .filter(JsValue::is_function)
        .and_then(|constructor| Reflect::construct(constructor.unchecked_ref::<Function>(), &Array::new()).ok())
        .and_then(|encoder| {
            let encode: Function = Reflect::get(&encoder, &"encode".into()).ok()?.dyn_into().ok()?;
            encode.call1(&encoder, value).ok()?.dyn_into::<Uint8Array>().ok()
        })
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
    encoded.or_else(|| value.as_string())
}

/// Free a byte buffer the core is done with now, instead of when V8's collector gets to it: on a 250k-file slow path the
/// index answer (72 MB) and the copy handed to `writeInternal` as the local index (72 MB) were both still allocated,
/// unreachable, through the whole walk. Released: what a host hands over (`getBytes` and `readInternal` answers) once it
/// is copied into wasm or fingerprinted, and the glue's own copies once `writeInternal` or `putBytes` has succeeded
/// (hosts copy what they keep: `js/host.ts`). Only a `Uint8Array` spanning a whole `ArrayBuffer` is released, since a
/// view may share its buffer with other data (a pooled Node `Buffer`).
fn release(bytes: &Uint8Array) {
    let buffer = bytes.buffer();
    if !buffer.is_instance_of::<ArrayBuffer>()
        || bytes.byte_offset() != 0
        || bytes.byte_length() != buffer.byte_length()
    {
        return;
    }
    let function = |target: &JsValue, name: &str| Reflect::get(target, &name.into()).ok()?.dyn_into::<Function>().ok();
    // `transfer(0)` (Deno, Node 21+) moves the contents to a new empty buffer and frees this one's memory at once.
    // Elsewhere `structuredClone` with a transfer list detaches it too, and its memory goes when the collector finds the
    // unreachable clone. Either way the buffer is left empty; a failure leaves it as it was.
    if let Some(transfer) = function(&buffer, "transfer") {
        let _ = transfer.call1(&buffer, &JsValue::from(0));
    } else if let Some(clone) = function(&js_sys::global(), "structuredClone") {
        let _ = clone.call2(&JsValue::UNDEFINED, &buffer, &object(&[("transfer", Array::of1(&buffer).into())]));
    }
}

/// The wire form of a [`Precondition`]: `{ kind: "none" } | { kind: "ifAbsent" } | { kind: "ifMatch", token }`.
pub fn precondition_to_js(precondition: &Precondition) -> JsValue {
    match precondition {
        Precondition::None => object(&[("kind", "none".into())]),
        Precondition::IfAbsent => object(&[("kind", "ifAbsent".into())]),
        Precondition::IfMatch(token) => object(&[("kind", "ifMatch".into()), ("token", token.as_str().into())]),
    }
}

/// Reads the fields of one host answer, naming the method in every complaint so a malformed answer is easy to trace.
struct Answer<'a> {
    value: JsValue,
    call: &'a dyn std::fmt::Display,
}

impl<'a> Answer<'a> {
    fn new(value: JsValue, call: &'a dyn std::fmt::Display) -> Self {
        Answer { value, call }
    }

    fn malformed(&self, what: &str) -> StoreError {
        StoreError::Io { message: format!("host {} returned a malformed answer: {what}", self.call) }
    }

    fn is_nullish(&self) -> bool {
        self.value.is_null() || self.value.is_undefined()
    }

    fn require_object(&self) -> StoreResult<()> {
        if self.value.is_object() {
            Ok(())
        } else {
            Err(self.malformed("expected an object"))
        }
    }

    fn field(&self, name: &str) -> JsValue {
        get(&self.value, name)
    }

    fn flag(&self, name: &str) -> bool {
        self.field(name).as_bool() == Some(true)
    }

    fn string(&self, name: &str) -> StoreResult<String> {
        self.field(name).as_string().ok_or_else(|| self.malformed(&format!("`{name}` must be a string")))
    }

    fn optional_string(&self, name: &str) -> StoreResult<Option<String>> {
        let value = self.field(name);
        if value.is_null() || value.is_undefined() {
            return Ok(None);
        }
        value.as_string().map(Some).ok_or_else(|| self.malformed(&format!("`{name}` must be a string")))
    }

    /// A version token, already in normal form (S3 ETag without quotes, GCS generation as a decimal string).
    fn token(&self, name: &str) -> StoreResult<VersionToken> {
        self.string(name).map(VersionToken::new)
    }

    /// A non-negative integer that fits a JS number exactly (sizes).
    fn size(&self, name: &str) -> StoreResult<u64> {
        match self.field(name).as_f64() {
            Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(n as u64),
            _ => Err(self.malformed(&format!("`{name}` must be a non-negative integer"))),
        }
    }

    /// Milliseconds since the epoch; fractional host clocks are rounded.
    fn millis(&self, name: &str) -> StoreResult<i64> {
        match self.field(name).as_f64() {
            Some(n) if n.is_finite() => Ok(n.round() as i64),
            _ => Err(self.malformed(&format!("`{name}` must be a number (milliseconds)"))),
        }
    }

    fn bytes(&self, name: &str) -> StoreResult<Vec<u8>> {
        let value = self.field(name);
        if value.is_instance_of::<Uint8Array>() {
            let bytes = Uint8Array::from(value);
            let copy = bytes.to_vec();
            release(&bytes);
            Ok(copy)
        } else {
            Err(self.malformed(&format!("`{name}` must be a Uint8Array")))
        }
    }

    /// A SHA-256 digest as 64 hex digits.
    fn sha256(&self, name: &str) -> StoreResult<[u8; 32]> {
        let text = self.string(name)?;
        parse_sha256_hex(&text).ok_or_else(|| self.malformed(&format!("`{name}` must be 64 hex digits")))
    }

    fn stat(&self) -> StoreResult<FileStat> {
        Ok(FileStat { size: self.size("size")?, mtime_ms: self.millis("mtimeMs")? })
    }
}

/// A host object whose methods were checked to exist when it was wrapped.
#[derive(Clone)]
struct HostObject {
    target: JsValue,
    /// `"store"`, `"cache"` or `"env"`: used in error messages.
    role: &'static str,
    /// The operation's `AbortSignal`, passed as a last `{ signal }` argument to every call (undefined: none).
    signal: JsValue,
}

impl HostObject {
    fn new(target: JsValue, role: &'static str, interface: &str, methods: &[&str]) -> Result<Self, JsValue> {
        if !target.is_object() {
            return Err(js_error("InvalidArgument", &format!("the {role} must be an object implementing {interface}")));
        }
        let missing: Vec<&str> = methods.iter().copied().filter(|m| !get(&target, m).is_function()).collect();
        if !missing.is_empty() {
            return Err(js_error(
                "InvalidArgument",
                &format!("the {role} does not implement {interface}: missing method(s) {}", missing.join(", ")),
            ));
        }
        Ok(HostObject { target, role, signal: JsValue::UNDEFINED })
    }

    /// Call `method(args…)` on the host object and await its result (a plain value is accepted as if resolved).
    /// A synchronous throw and a rejection are both mapped by [`store_error_from_js`] with `key` as context.
    async fn call(&self, method: &str, args: &[JsValue], key: &str) -> StoreResult<JsValue> {
        let function: Function = get(&self.target, method).unchecked_into();
        let arguments: Array = args.iter().collect();
        if !self.signal.is_undefined() {
            arguments.push(&object(&[("signal", self.signal.clone())]));
        }
        let returned =
            Reflect::apply(&function, &self.target, &arguments).map_err(|thrown| store_error_from_js(&thrown, key))?;
        JsFuture::from(Promise::resolve(&returned)).await.map_err(|thrown| store_error_from_js(&thrown, key))
    }

    /// Names the call in a complaint; formatted only if there is one (a `format!` per call was a tenth of a small
    /// download's time in the core).
    fn call_name<'a>(&self, method: &'a str, key: &'a str) -> CallName<'a> {
        CallName { role: self.role, method, key }
    }
}

/// `store.get("key")`: a host call as error messages name it.
struct CallName<'a> {
    role: &'static str,
    method: &'a str,
    key: &'a str,
}

impl std::fmt::Display for CallName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}({:?})", self.role, self.method, self.key)
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The store

/// A host `MarshStore` (see `js/host.ts`) seen as an [`ObjectStore`]. Bodies stay JS values the core never inspects.
pub struct JsStore {
    host: HostObject,
}

impl JsStore {
    pub const METHODS: [&'static str; 7] = ["get", "getBytes", "head", "put", "putBytes", "delete", "list"];

    /// Wrap a host store, checking that every method of `MarshStore` is present.
    pub fn from_js(store: JsValue) -> Result<Self, JsValue> {
        Ok(JsStore { host: HostObject::new(store, "store", "MarshStore", &Self::METHODS)? })
    }

    /// The same store, passing `signal` to every call (one per operation).
    pub fn with_signal(&self, signal: JsValue) -> Self {
        JsStore { host: HostObject { signal, ..self.host.clone() } }
    }

    /// The answer of `get`/`getBytes`: `{ notModified: true }` or `{ <body field>, token, size }`.
    fn fetched<B>(
        answer: &Answer<'_>,
        read_body: impl FnOnce(&Answer<'_>) -> StoreResult<B>,
    ) -> StoreResult<Fetched<B>> {
        answer.require_object()?;
        if answer.flag("notModified") {
            return Ok(Fetched::NotModified);
        }
        Ok(Fetched::Found { body: read_body(answer)?, token: answer.token("token")?, size: answer.size("size")? })
    }
}

impl ObjectStore for JsStore {
    type Body = JsValue;

    async fn get(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<JsValue>> {
        let args = [key.into(), optional_string(if_none_match.map(VersionToken::as_str))];
        let value = self.host.call("get", &args, key).await?;
        let call = self.host.call_name("get", key);
        Self::fetched(&Answer::new(value, &call), |answer| Ok(answer.field("body")))
    }

    async fn get_bytes(&self, key: &str, if_none_match: Option<&VersionToken>) -> StoreResult<Fetched<Vec<u8>>> {
        let args = [key.into(), optional_string(if_none_match.map(VersionToken::as_str))];
        let value = self.host.call("getBytes", &args, key).await?;
        let call = self.host.call_name("getBytes", key);
        Self::fetched(&Answer::new(value, &call), |answer| answer.bytes("bytes"))
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectMeta> {
        let value = self.host.call("head", &[key.into()], key).await?;
        let call = self.host.call_name("head", key);
        let answer = Answer::new(value, &call);
        answer.require_object()?;
        Ok(ObjectMeta { token: answer.token("token")?, size: answer.size("size")? })
    }

    async fn put(&self, key: &str, body: JsValue, precondition: &Precondition) -> StoreResult<VersionToken> {
        let args = [key.into(), body, precondition_to_js(precondition)];
        let value = self.host.call("put", &args, key).await?;
        let call = self.host.call_name("put", key);
        let answer = Answer::new(value, &call);
        answer.require_object()?;
        answer.token("token")
    }

    async fn put_bytes(&self, key: &str, bytes: &[u8], precondition: &Precondition) -> StoreResult<VersionToken> {
        let copy = Uint8Array::from(bytes);
        let args = [key.into(), copy.clone().into(), precondition_to_js(precondition)];
        let value = self.host.call("putBytes", &args, key).await?;
        release(&copy);
        let call = self.host.call_name("putBytes", key);
        let answer = Answer::new(value, &call);
        answer.require_object()?;
        answer.token("token")
    }

    async fn delete(&self, key: &str, if_match: Option<&VersionToken>) -> StoreResult<()> {
        let args = [key.into(), optional_string(if_match.map(VersionToken::as_str))];
        self.host.call("delete", &args, key).await.map(drop)
    }

    async fn list(&self, prefix: &str, page: Option<&str>) -> StoreResult<ListPage> {
        let args = [prefix.into(), optional_string(page)];
        let value = self.host.call("list", &args, prefix).await?;
        let call = self.host.call_name("list", prefix);
        let answer = Answer::new(value, &call);
        answer.require_object()?;
        let listed = answer.field("objects");
        if !Array::is_array(&listed) {
            return Err(answer.malformed("`objects` must be an array"));
        }
        let mut objects = Vec::new();
        for item in Array::from(&listed).iter() {
            let item = Answer::new(item, &call);
            item.require_object()?;
            objects.push(ListedObject {
                key: item.string("key")?,
                size: item.size("size")?,
                token: item.token("token")?,
            });
        }
        Ok(ListPage { objects, next_page: answer.optional_string("nextPageToken")? })
    }
}

// ---------------------------------------------------------------------------------------------------------------------
// The cache

/// An internal file as the host reads it, chunk by chunk (`readInternalStream`): the size it had when opened, and a
/// reader of its `ReadableStream`.
struct InternalChunks {
    size: usize,
    reader: JsValue,
    call: String,
}

impl InternalChunks {
    /// The next chunk, `None` at the end. A chunk that is not a `Uint8Array` cancels the stream (closing the file).
    async fn next(&self) -> StoreResult<Option<Uint8Array>> {
        let read: Function = get(&self.reader, "read").unchecked_into();
        let pending = read.call0(&self.reader).map_err(|thrown| store_error_from_js(&thrown, &self.call))?;
        let result = JsFuture::from(Promise::resolve(&pending))
            .await
            .map_err(|thrown| store_error_from_js(&thrown, &self.call))?;
        if get(&result, "done").is_truthy() {
            return Ok(None);
        }
        let chunk = get(&result, "value");
        if chunk.is_instance_of::<Uint8Array>() {
            return Ok(Some(chunk.unchecked_into()));
        }
        if let Ok(cancel) = get(&self.reader, "cancel").dyn_into::<Function>() {
            let _ = cancel.call0(&self.reader);
        }
        Err(Answer::new(chunk, &self.call).malformed("stream chunks must be Uint8Arrays"))
    }
}

/// Feed bytes that stay in JS to `hasher` through `buffer`, at most 1 MB at a time; answers how many.
fn feed(hasher: &mut Fingerprinter, bytes: &Uint8Array, buffer: &mut Vec<u8>) -> usize {
    const PIECE: usize = 1 << 20;
    let length = bytes.length() as usize;
    buffer.resize(PIECE.min(length).max(buffer.len()), 0);
    for start in (0..length).step_by(PIECE) {
        let end = (start + PIECE).min(length);
        let piece = &mut buffer[..end - start];
        bytes.subarray(start as u32, end as u32).copy_to(piece);
        hasher.update(piece);
    }
    length
}

/// A host `MarshCache` (see `js/host.ts`) seen as a [`LocalCache`]. Upload bodies it prepares are handed to
/// [`JsStore::put`] untouched; bodies from [`JsStore::get`] come back to `download`.
pub struct JsCache {
    host: HostObject,
    /// A host without `statMany`: the one walk that answers every `stat_many` of this operation (the engine asks in
    /// batches, and a walk per batch would list the whole cache hundreds of times).
    walked: std::cell::RefCell<Option<std::rc::Rc<crate::store::WalkLookup>>>,
}

impl JsCache {
    pub const METHODS: [&'static str; 12] = [
        "stat",
        "walk",
        "walkUnder",
        "removeFile",
        "readInternal",
        "writeInternal",
        "listInternal",
        "removeInternal",
        "prepareUpload",
        "download",
        "hash",
        "createDir",
    ];

    /// Wrap a host cache, checking that every method of `MarshCache` is present.
    pub fn from_js(cache: JsValue) -> Result<Self, JsValue> {
        Ok(JsCache { host: HostObject::new(cache, "cache", "MarshCache", &Self::METHODS)?, walked: Default::default() })
    }

    /// The same cache, passing `signal` to every call (one per operation).
    pub fn with_signal(&self, signal: JsValue) -> Self {
        JsCache { host: HostObject { signal, ..self.host.clone() }, walked: Default::default() }
    }

    /// The file's chunks straight from the host's reads, when the host has `readInternalStream` (`Ok(None)`: no such
    /// method; `Ok(Some(None))`: no file). Read this way, a large internal file (a 250k-file view: 38 MB) is never whole
    /// in JS memory.
    async fn internal_chunks(&self, name: &str) -> StoreResult<Option<Option<InternalChunks>>> {
        if !get(&self.host.target, "readInternalStream").is_function() {
            return Ok(None);
        }
        let value = self.host.call("readInternalStream", &[name.into()], name).await?;
        let call = self.host.call_name("readInternalStream", name);
        let answer = Answer::new(value, &call);
        if answer.is_nullish() {
            return Ok(Some(None));
        }
        answer.require_object()?;
        let size = answer.size("size")? as usize;
        let stream = answer.field("stream");
        let reader = get(&stream, "getReader")
            .dyn_into::<Function>()
            .ok()
            .and_then(|get_reader| get_reader.call0(&stream).ok())
            .ok_or_else(|| answer.malformed("`stream` must be a ReadableStream"))?;
        Ok(Some(Some(InternalChunks { size, reader, call: call.to_string() })))
    }

    /// `readInternal`'s answer, left in JS: `None` for a missing file.
    async fn read_internal_in_js(&self, name: &str) -> StoreResult<Option<Uint8Array>> {
        let value = self.host.call("readInternal", &[name.into()], name).await?;
        if value.is_null() || value.is_undefined() {
            return Ok(None);
        }
        if value.is_instance_of::<Uint8Array>() {
            return Ok(Some(Uint8Array::from(value)));
        }
        let call = self.host.call_name("readInternal", name);
        Err(Answer::new(value, &call).malformed("expected a Uint8Array or null"))
    }

    /// A `PackedWalk`: NUL-joined rels (UTF-8 bytes or a string) plus parallel size and mtime arrays, read in a handful
    /// of boundary calls.
    fn packed_walk(answer: &Answer<'_>) -> StoreResult<Vec<WalkItem>> {
        answer.require_object()?;
        let files = answer.field("files");
        let files = if files.is_instance_of::<Uint8Array>() {
            let bytes = Uint8Array::from(files);
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| answer.malformed("`files` is not UTF-8"))?;
            release(&bytes);
            text
        } else {
            long_string(&files).ok_or_else(|| answer.malformed("`files` must be a Uint8Array or a string"))?
        };
        let numbers = |name: &str| {
            let value = answer.field(name);
            if value.is_instance_of::<Float64Array>() {
                Ok(Float64Array::from(value).to_vec())
            } else {
                Err(answer.malformed(&format!("`{name}` must be a Float64Array")))
            }
        };
        let (sizes, mtimes) = (numbers("sizes")?, numbers("mtimes")?);
        let rels: Vec<&str> = if files.is_empty() { Vec::new() } else { files.split('\0').collect() };
        if rels.len() != sizes.len() || rels.len() != mtimes.len() {
            return Err(answer.malformed("`files`, `sizes` and `mtimes` must have one item per file"));
        }
        let mut items = Vec::with_capacity(rels.len());
        for ((rel, size), mtime) in rels.into_iter().zip(sizes).zip(mtimes) {
            if !(size >= 0.0 && size.fract() == 0.0 && mtime.is_finite()) {
                return Err(answer.malformed(&format!("bad size or mtime for {rel:?}")));
            }
            let stat = FileStat { size: size as u64, mtime_ms: mtime.round() as i64 };
            items.push(WalkItem::File { rel: rel.to_string(), stat });
        }
        for (name, make) in [("symlinks", true), ("vanished", false)] {
            let list = answer.field(name);
            if !Array::is_array(&list) {
                return Err(answer.malformed(&format!("`{name}` must be an array")));
            }
            for rel in Array::from(&list).iter() {
                let rel = rel.as_string().ok_or_else(|| answer.malformed(&format!("`{name}` must hold strings")))?;
                items.push(if make { WalkItem::Symlink { rel } } else { WalkItem::Vanished { rel } });
            }
        }
        Ok(items)
    }

    /// A `PackedStats`: one kind, size and mtime per path asked, in order.
    fn packed_stats(answer: &Answer<'_>, rels: &[&str]) -> StoreResult<Vec<PathStat>> {
        answer.require_object()?;
        let kinds = answer.field("kinds");
        if !kinds.is_instance_of::<Uint8Array>() {
            return Err(answer.malformed("`kinds` must be a Uint8Array"));
        }
        let kinds = Uint8Array::from(kinds).to_vec();
        let numbers = |name: &str| {
            let value = answer.field(name);
            if value.is_instance_of::<Float64Array>() {
                Ok(Float64Array::from(value).to_vec())
            } else {
                Err(answer.malformed(&format!("`{name}` must be a Float64Array")))
            }
        };
        let (sizes, mtimes) = (numbers("sizes")?, numbers("mtimes")?);
        if kinds.len() != rels.len() || sizes.len() != rels.len() || mtimes.len() != rels.len() {
            return Err(answer.malformed("`kinds`, `sizes` and `mtimes` must have one item per path asked"));
        }
        let mut found = Vec::with_capacity(rels.len());
        for (i, rel) in rels.iter().enumerate() {
            found.push(match kinds[i] {
                0 => PathStat::Absent,
                1 if sizes[i] >= 0.0 && sizes[i].fract() == 0.0 && mtimes[i].is_finite() => {
                    PathStat::File(FileStat { size: sizes[i] as u64, mtime_ms: mtimes[i].round() as i64 })
                }
                2 => PathStat::Symlink,
                _ => return Err(answer.malformed(&format!("bad kind, size or mtime for {rel:?}"))),
            });
        }
        Ok(found)
    }

    /// A walk answered as one object per item (`walk` without `walkPacked`, and `walkUnder`).
    fn walk_items(value: JsValue, call: &CallName<'_>) -> StoreResult<Vec<WalkItem>> {
        if !Array::is_array(&value) {
            return Err(Answer::new(value, call).malformed("expected an array"));
        }
        let mut items = Vec::new();
        for item in Array::from(&value).iter() {
            let item = Answer::new(item, call);
            item.require_object()?;
            let rel = item.string("rel")?;
            items.push(match item.string("kind")?.as_str() {
                "file" => WalkItem::File { rel, stat: item.stat()? },
                "vanished" => WalkItem::Vanished { rel },
                "symlink" => WalkItem::Symlink { rel },
                other => return Err(item.malformed(&format!("unknown walk item kind {other:?}"))),
            });
        }
        Ok(items)
    }

    /// `{ size, mtimeMs, sha256 }`.
    fn downloaded(answer: &Answer<'_>) -> StoreResult<Downloaded> {
        answer.require_object()?;
        Ok(Downloaded { stat: answer.stat()?, sha256: answer.sha256("sha256")? })
    }
}

impl LocalCache for JsCache {
    type Body = JsValue;

    async fn stat(&self, rel: &str) -> StoreResult<Option<FileStat>> {
        let value = self.host.call("stat", &[rel.into()], rel).await?;
        let call = self.host.call_name("stat", rel);
        let answer = Answer::new(value, &call);
        if answer.is_nullish() {
            return Ok(None);
        }
        answer.require_object()?;
        answer.stat().map(Some)
    }

    async fn walk(&self) -> StoreResult<Vec<WalkItem>> {
        if get(&self.host.target, "walkPacked").is_function() {
            let value = self.host.call("walkPacked", &[], "").await?;
            let call = self.host.call_name("walkPacked", "");
            return Self::packed_walk(&Answer::new(value, &call));
        }
        let value = self.host.call("walk", &[], "").await?;
        Self::walk_items(value, &self.host.call_name("walk", ""))
    }

    /// `statMany` when the host has it (the paths cross as one NUL-joined string, the answer as three typed arrays);
    /// otherwise answered from a walk.
    async fn stat_many(&self, rels: &[&str]) -> StoreResult<Vec<PathStat>> {
        if !get(&self.host.target, "statMany").is_function() {
            let known = self.walked.borrow().clone();
            let lookup = match known {
                Some(lookup) => lookup,
                None => {
                    let lookup = std::rc::Rc::new(crate::store::WalkLookup::new(self.walk().await?));
                    self.walked.replace(Some(lookup.clone()));
                    lookup
                }
            };
            return Ok(lookup.stat_many(rels));
        }
        let key = rels.first().copied().unwrap_or("");
        let value = self.host.call("statMany", &[rels.join("\0").into()], key).await?;
        let call = self.host.call_name("statMany", key);
        Self::packed_stats(&Answer::new(value, &call), rels)
    }

    async fn walk_under(&self, rel: &str) -> StoreResult<Vec<WalkItem>> {
        let value = self.host.call("walkUnder", &[rel.into()], rel).await?;
        Self::walk_items(value, &self.host.call_name("walkUnder", rel))
    }

    async fn remove(&self, rel: &str, expected: FileStat) -> StoreResult<()> {
        self.host.call("removeFile", &[rel.into(), stat_js(&expected)], rel).await?;
        Ok(())
    }

    async fn list_internal(&self, folder: &str) -> StoreResult<Vec<String>> {
        let value = self.host.call("listInternal", &[folder.into()], folder).await?;
        let call = self.host.call_name("listInternal", folder);
        if !Array::is_array(&value) {
            return Err(Answer::new(value, &call).malformed("expected an array of names"));
        }
        Array::from(&value)
            .iter()
            .map(|name| name.as_string().ok_or_else(|| Answer::new(name, &call).malformed("expected a name")))
            .collect()
    }

    async fn remove_internal(&self, name: &str) -> StoreResult<()> {
        self.host.call("removeInternal", &[name.into()], name).await?;
        Ok(())
    }

    async fn read_internal(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        if let Some(chunks) = self.internal_chunks(name).await? {
            let Some(chunks) = chunks else { return Ok(None) };
            let mut bytes = Vec::with_capacity(chunks.size);
            while let Some(chunk) = chunks.next().await? {
                let at = bytes.len();
                bytes.resize(at + chunk.length() as usize, 0);
                chunk.copy_to(&mut bytes[at..]);
                release(&chunk);
            }
            return Ok(Some(bytes));
        }
        Ok(self.read_internal_in_js(name).await?.map(|bytes| {
            let copy = bytes.to_vec();
            release(&bytes);
            copy
        }))
    }

    /// The file stays in JS: it is fed through a 1 MB buffer (the default would copy a 40 MB view into wasm memory,
    /// which never shrinks, just to fingerprint it), chunk by chunk as the host reads it when it can.
    async fn fingerprint_internal(&self, name: &str) -> u64 {
        let mut buffer = Vec::new();
        match self.internal_chunks(name).await {
            Ok(Some(Some(chunks))) => {
                let mut hasher = Fingerprinter::new(chunks.size);
                let mut total = 0;
                loop {
                    match chunks.next().await {
                        Ok(Some(chunk)) => {
                            total += feed(&mut hasher, &chunk, &mut buffer);
                            release(&chunk);
                        }
                        Ok(None) => break,
                        // Unreadable: as with `read_internal`, no file.
                        Err(_) => return fingerprint(None),
                    }
                }
                if total == chunks.size {
                    return hasher.finish();
                }
                // The file changed size while it was read: read it again, whole.
            }
            Ok(Some(None)) | Err(_) => return fingerprint(None),
            Ok(None) => {}
        }
        let Ok(Some(value)) = self.read_internal_in_js(name).await else {
            // Missing, unreadable or malformed: as with `read_internal`, no file.
            return fingerprint(None);
        };
        let mut hasher = Fingerprinter::new(value.length() as usize);
        feed(&mut hasher, &value, &mut buffer);
        release(&value);
        hasher.finish()
    }

    async fn write_internal(&self, name: &str, bytes: Vec<u8>) -> StoreResult<()> {
        let copy = Uint8Array::from(bytes.as_slice());
        // Freed before the write is awaited (a 72 MB index copy would otherwise stay in wasm memory meanwhile).
        drop(bytes);
        self.host.call("writeInternal", &[name.into(), copy.clone().into()], name).await?;
        release(&copy);
        Ok(())
    }

    async fn prepare_upload(&self, rel: &str) -> StoreResult<Option<Prepared<JsValue>>> {
        let value = self.host.call("prepareUpload", &[rel.into()], rel).await?;
        let call = self.host.call_name("prepareUpload", rel);
        let answer = Answer::new(value, &call);
        if answer.is_nullish() {
            return Ok(None);
        }
        answer.require_object()?;
        Ok(Some(Prepared { body: answer.field("body"), stat: answer.stat()?, sha256: answer.sha256("sha256")? }))
    }

    async fn download(&self, rel: &str, body: JsValue, expected: Expected) -> StoreResult<Downloaded> {
        let mut fields = vec![("size", JsValue::from_f64(expected.size as f64))];
        if let Some(digest) = expected.sha256 {
            fields.push(("sha256", JsValue::from_str(&sha256_hex(&digest))));
        }
        match expected.replaces {
            Replaces::Nothing => fields.push(("replaces", JsValue::NULL)),
            Replaces::File(stat) => fields.push(("replaces", stat_js(&stat))),
            Replaces::Anything => {}
        }
        let expected_js = object(&fields);
        let value = self.host.call("download", &[rel.into(), body, expected_js], rel).await?;
        let call = self.host.call_name("download", rel);
        Self::downloaded(&Answer::new(value, &call))
    }

    async fn create_dir(&self, rel: &str) -> StoreResult<()> {
        self.host.call("createDir", &[rel.into()], rel).await?;
        Ok(())
    }

    async fn hash(&self, rel: &str) -> StoreResult<Option<Downloaded>> {
        let value = self.host.call("hash", &[rel.into()], rel).await?;
        let call = self.host.call_name("hash", rel);
        let answer = Answer::new(value, &call);
        if answer.is_nullish() {
            return Ok(None);
        }
        Self::downloaded(&answer).map(Some)
    }
}

/// `{ size, mtimeMs }`, as the host reports a stat.
fn stat_js(stat: &FileStat) -> JsValue {
    object(&[("size", JsValue::from_f64(stat.size as f64)), ("mtimeMs", JsValue::from_f64(stat.mtime_ms as f64))])
}

// ---------------------------------------------------------------------------------------------------------------------
// The environment

/// A host `MarshEnv` (see `js/host.ts`) seen as an [`Env`]: the clock and randomness come from JS built-ins, sleeping
/// and aborting from the host (one env per operation, carrying that operation's `AbortSignal`).
pub struct JsEnv {
    host: HostObject,
}

impl JsEnv {
    pub const METHODS: [&'static str; 1] = ["sleep"];

    /// Wrap a host env, checking that `sleep` is present (`signal` and `trace` are optional).
    pub fn from_js(env: JsValue) -> Result<Self, JsValue> {
        Ok(JsEnv { host: HostObject::new(env, "env", "MarshEnv", &Self::METHODS)? })
    }

    /// The operation's abort signal (`undefined` when none was given).
    pub fn signal(&self) -> JsValue {
        get(&self.host.target, "signal")
    }
}

impl Env for JsEnv {
    fn now_ms(&self) -> i64 {
        js_sys::Date::now() as i64
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }

    async fn sleep(&self, ms: u64) -> StoreResult<()> {
        if self.is_aborted() {
            return Err(StoreError::Aborted);
        }
        match self.host.call("sleep", &[JsValue::from_f64(ms as f64)], "").await {
            Ok(_) => Ok(()),
            // Whatever the host rejected with, an aborted signal means the sleep was cut short by the abort.
            Err(_) if self.is_aborted() => Err(StoreError::Aborted),
            Err(error) => Err(error),
        }
    }

    fn is_aborted(&self) -> bool {
        get(&get(&self.host.target, "signal"), "aborted").as_bool() == Some(true)
    }

    fn progress(&self, event: &Progress<'_>) {
        let progress = get(&self.host.target, "progress");
        if !progress.is_function() {
            return;
        }
        let event = match event {
            Progress::Planned { operation, files, bytes } => object(&[
                ("kind", "planned".into()),
                ("operation", (*operation).into()),
                ("files", JsValue::from_f64(*files as f64)),
                ("bytes", JsValue::from_f64(*bytes as f64)),
            ]),
            Progress::Transferred { operation, rel, bytes } => object(&[
                ("kind", "transferred".into()),
                ("operation", (*operation).into()),
                ("rel", (*rel).into()),
                ("bytes", JsValue::from_f64(*bytes as f64)),
            ]),
        };
        let progress: Function = progress.unchecked_into();
        // Like tracing, progress display must never fail an operation.
        let _ = Reflect::apply(&progress, &self.host.target, &Array::of1(&event));
    }

    fn trace(&self, line: &str) {
        let trace = get(&self.host.target, "trace");
        if trace.is_function() {
            let trace: Function = trace.unchecked_into();
            // The module's memory so far (it only grows): where a sync's peak memory comes from, phase by phase.
            let pages = core::arch::wasm32::memory_size(0);
            let line = format!("{line} (wasm memory {:.1} MB)", (pages * 65536) as f64 / 1e6);
            // Tracing must never fail an operation: a throwing trace callback is ignored.
            let _ = Reflect::apply(&trace, &self.host.target, &Array::of1(&JsValue::from_str(&line)));
        }
    }
}
