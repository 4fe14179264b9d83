//! `JsCache::fingerprint_internal` (an internal file fed from JS through a small buffer) against the core's one-shot
//! `fingerprint` of the same bytes, run by `wasm-pack test --node`: files of 0 bytes, under one piece, and over several
//! 1 MB pieces with a length that is not a multiple of 8, so piece and word boundaries fall everywhere they can. A missing
//! file, a malformed answer and a rejection all count as no file, as `read_internal` failures do.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Reflect, Uint8Array};
use marsh::fingerprint::fingerprint;
use marsh::store::LocalCache;
use marsh::wasm::JsCache;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

/// A cache whose `readInternal` is `read` (every other method throws: none may be called).
fn cache_reading_with(read: &Function) -> JsCache {
    let target = Object::new();
    for method in JsCache::METHODS {
        let function = if method == "readInternal" {
            read.clone()
        } else {
            Function::new_no_args("throw new Error('not expected');")
        };
        Reflect::set(&target, &method.into(), &function).expect("method set");
    }
    JsCache::from_js(target.into()).expect("a complete cache")
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
