//! `JsCache::fingerprint_internal` (an internal file fed from JS through a small buffer) against the core's one-shot
//! `fingerprint` of the same bytes, run by `wasm-pack test --node`: files of 0 bytes, under one piece, and over several
//! 1 MB pieces with a length that is not a multiple of 8, so piece and word boundaries fall everywhere they can. A
//! missing file, a malformed answer and a rejection all count as no file, as `read_internal` failures do. A host that
//! streams the file (`readInternalStream`) is read chunk by chunk to the same bytes and fingerprint.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Reflect, Uint8Array};
use marsh::encoding::fingerprint::fingerprint;
use marsh::store::LocalCache;
use marsh::wasm::JsCache;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

/// A cache whose `readInternal` is `read` (every other method throws: none may be called).
fn cache_reading_with(read: &Function) -> JsCache {
    cache_with(&[("readInternal", read.clone())])
}

/// A cache whose `readInternal` answers `answer`.
fn cache_answering(answer: JsValue) -> JsCache {
    let make = Function::new_with_args("answer", "return () => answer;");
    cache_reading_with(&make.call1(&JsValue::NULL, &answer).expect("function built").unchecked_into())
}

#[wasm_bindgen_test]
async fn pieces_fed_from_js_give_the_fingerprint_of_the_whole_file() {
    for length in [0usize, 13, 1 << 20, (3 << 20) + 5] {
        let bytes: Vec<u8> = (0..length).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let cache = cache_answering(Uint8Array::from(&bytes[..]).into());
        assert_eq!(cache.fingerprint_internal("view").await, fingerprint(Some(&bytes)), "{length} bytes");
    }
    // One byte changed at the very end (the last partial word of the last piece) changes it.
    let mut bytes = vec![7u8; (2 << 20) + 3];
    let original = cache_answering(Uint8Array::from(&bytes[..]).into()).fingerprint_internal("view").await;
    *bytes.last_mut().expect("not empty") = 8;
    assert_ne!(cache_answering(Uint8Array::from(&bytes[..]).into()).fingerprint_internal("view").await, original);
}

#[wasm_bindgen_test]
async fn missing_malformed_or_failing_reads_count_as_no_file() {
    for answer in [JsValue::NULL, JsValue::UNDEFINED, JsValue::from_str("not bytes")] {
        assert_eq!(cache_answering(answer).fingerprint_internal("view").await, fingerprint(None));
    }
    // A rejection (made when the read is, so never unhandled) and a synchronous throw.
    for body in ["return Promise.reject(new Error('EIO'));", "throw new Error('EIO');"] {
        let cache = cache_reading_with(&Function::new_no_args(body));
        assert_eq!(cache.fingerprint_internal("view").await, fingerprint(None), "{body}");
    }
}

/// A cache whose `readInternalStream` answers `bytes` in chunks of `chunk` bytes, announcing `size` (a chunk that is a
/// string instead of bytes, or an error, from byte `bad_at` on), and whose `readInternal` answers `whole`.
fn streaming_cache(bytes: &[u8], chunk: usize, size: usize, bad_at: Option<(usize, &str)>, whole: JsValue) -> JsCache {
    let make = Function::new_with_args(
        "bytes, chunk, size, badAt, bad",
        "return () => Promise.resolve({ size, stream: new ReadableStream({ start(c) {
           for (let at = 0; at < bytes.length; at += chunk) {
             if (badAt !== undefined && at >= badAt) {
               if (bad === 'error') { c.error(new Error('EIO')); return; }
               c.enqueue('not bytes');
             }
             c.enqueue(bytes.slice(at, at + chunk));
           }
           c.close();
         } }) });",
    );
    let (bad_at, bad) = bad_at.map_or((JsValue::UNDEFINED, JsValue::UNDEFINED), |(at, bad)| (at.into(), bad.into()));
    let args = js_sys::Array::of5(&Uint8Array::from(bytes).into(), &chunk.into(), &size.into(), &bad_at, &bad);
    let stream: Function = make.apply(&JsValue::NULL, &args).expect("function built").unchecked_into();
    let read: Function = Function::new_with_args("whole", "return () => Promise.resolve(whole);")
        .call1(&JsValue::NULL, &whole)
        .expect("function built")
        .unchecked_into();
    cache_with(&[("readInternal", read), ("readInternalStream", stream)])
}

/// A cache with these methods (optional ones included); every other method of `MarshCache` throws.
fn cache_with(methods: &[(&str, Function)]) -> JsCache {
    let target = Object::new();
    for method in JsCache::METHODS {
        let function = Function::new_no_args("throw new Error('not expected');");
        Reflect::set(&target, &method.into(), &function).expect("method set");
    }
    for (method, function) in methods {
        Reflect::set(&target, &(*method).into(), function).expect("method set");
    }
    JsCache::from_js(target.into()).expect("a complete cache")
}

fn sample(length: usize) -> Vec<u8> {
    (0..length).map(|n| (n.wrapping_mul(2_654_435_761) >> 11) as u8).collect()
}

#[wasm_bindgen_test]
async fn files_streamed_by_the_host_read_and_fingerprint_as_whole_ones() {
    for (length, chunk) in [(0, 7), (13, 5), ((1 << 20) + 5, 65_536), ((2 << 20) + 3, 3 << 20)] {
        let bytes = sample(length);
        // `readInternal` answers something else: it must not be what was read.
        let cache = || streaming_cache(&bytes, chunk, length, None, JsValue::from_str("not used"));
        assert_eq!(cache().read_internal("view").await, Ok(Some(bytes.clone())), "{length} bytes");
        assert_eq!(cache().fingerprint_internal("view").await, fingerprint(Some(&bytes)), "{length} bytes");
    }
}

#[wasm_bindgen_test]
async fn a_stream_that_ends_off_its_announced_size_is_fingerprinted_again_whole() {
    let bytes = sample(100_000);
    for announced in [99_999, 100_001, 0] {
        let whole = sample(70_000);
        let cache = streaming_cache(&bytes, 4096, announced, None, Uint8Array::from(&whole[..]).into());
        // The file as read again: what it is now.
        assert_eq!(cache.fingerprint_internal("view").await, fingerprint(Some(&whole)), "announced {announced}");
        // A read takes what the stream gave, whatever its size was said to be.
        let cache = streaming_cache(&bytes, 4096, announced, None, JsValue::NULL);
        assert_eq!(cache.read_internal("view").await, Ok(Some(bytes.clone())));
    }
}

#[wasm_bindgen_test]
async fn a_missing_failing_or_malformed_stream_is_no_file_to_fingerprint_and_an_error_to_read() {
    // Missing: `readInternalStream` answers null, and `readInternal` is not asked.
    let missing = cache_with(&[("readInternalStream", Function::new_no_args("return Promise.resolve(null);"))]);
    assert_eq!(missing.read_internal("view").await, Ok(None));
    assert_eq!(missing.fingerprint_internal("view").await, fingerprint(None));
    let bytes = sample(50_000);
    for bad in ["error", "string"] {
        let cache = streaming_cache(&bytes, 4096, bytes.len(), Some((20_000, bad)), JsValue::NULL);
        assert_eq!(cache.fingerprint_internal("view").await, fingerprint(None), "{bad}");
        let cache = streaming_cache(&bytes, 4096, bytes.len(), Some((20_000, bad)), JsValue::NULL);
        assert!(cache.read_internal("view").await.is_err(), "{bad}");
    }
}
