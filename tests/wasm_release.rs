//! The glue frees the byte buffers it is done with at once (host.rs `release`), run by `wasm-pack test --node`: what a
//! host hands over (`getBytes` and `readInternal` answers) once copied into wasm or fingerprinted, and the glue's own
//! copies once `writeInternal` or `putBytes` succeeded. A freed buffer is detached (length 0); a view into a larger
//! buffer, or a copy whose call failed, is left alone. Without `release`, every "detached" assertion here fails.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Reflect, Uint8Array};
use marsh::encoding::fingerprint::fingerprint;
use marsh::store::{Fetched, LocalCache, ObjectStore, Precondition};
use marsh::wasm::{JsCache, JsStore};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

const BYTES: [u8; 6] = [1, 2, 3, 4, 5, 6];

/// A host object with `methods` from `(name, JS function body with parameters a, b, c)`; the rest throw.
fn host(all: &[&str], methods: &[(&str, &str)]) -> JsValue {
    let target = Object::new();
    for name in all {
        let body =
            methods.iter().find(|(method, _)| method == name).map_or("throw new Error('not expected');", |m| m.1);
        Reflect::set(&target, &(*name).into(), &Function::new_with_args("a, b, c", body)).expect("method set");
    }
    target.into()
}

/// `globalThis[name]`, where the host methods below leave what they were given or answered.
fn global(name: &str) -> Uint8Array {
    Reflect::get(&js_sys::global(), &name.into()).expect("global read").unchecked_into()
}

fn set_global(name: &str, value: &JsValue) {
    Reflect::set(&js_sys::global(), &name.into(), value).expect("global set");
}

fn whole() -> Uint8Array {
    Uint8Array::from(&BYTES[..])
}

/// Bytes 1..5 of an 8-byte buffer: a view that shares its buffer.
fn view() -> Uint8Array {
    Uint8Array::new_with_length(8).subarray(1, 7)
}

#[wasm_bindgen_test]
async fn answers_handed_over_are_freed_once_copied_unless_they_are_a_view_into_a_larger_buffer() {
    for (answer, freed) in [(whole(), true), (view(), false)] {
        set_global("answer", &answer);
        let expected = answer.to_vec();
        let cache =
            JsCache::from_js(host(&JsCache::METHODS, &[("readInternal", "return globalThis.answer;")])).expect("cache");
        assert_eq!(cache.read_internal("f").await.expect("read"), Some(expected.clone()));
        assert_eq!(answer.length() == 0, freed, "readInternal answer of {} bytes", expected.len());

        let answer = if freed { whole() } else { view() };
        set_global("answer", &answer);
        assert_eq!(cache.fingerprint_internal("f").await, fingerprint(Some(&expected)));
        assert_eq!(answer.length() == 0, freed, "fingerprinted answer");

        let answer = if freed { whole() } else { view() };
        set_global("answer", &answer);
        let store = JsStore::from_js(host(
            &JsStore::METHODS,
            &[("getBytes", "return { bytes: globalThis.answer, token: 't1', size: globalThis.answer.length };")],
        ))
        .expect("store");
        let Fetched::Found { body, .. } = store.get_bytes("index", None).await.expect("got") else {
            panic!("not modified?")
        };
        assert_eq!(body, expected);
        assert_eq!(answer.length() == 0, freed, "getBytes answer");
    }
}

#[wasm_bindgen_test]
async fn copies_handed_to_writes_are_freed_after_success_only() {
    // The host keeps its own copy (as hosts must) and shows us the array it was given.
    let keep = "globalThis.given = b; globalThis.kept = b.slice();";
    let cache = JsCache::from_js(host(&JsCache::METHODS, &[("writeInternal", keep)])).expect("cache");
    cache.write_internal("f", BYTES.to_vec()).await.expect("written");
    assert_eq!(global("given").length(), 0, "the glue's copy is freed");
    assert_eq!(global("kept").to_vec(), BYTES, "the host's own copy is intact");

    let failing = format!("{keep} return Promise.reject(Object.assign(new Error('disk full'), {{ kind: 'Io' }}));");
    let cache = JsCache::from_js(host(&JsCache::METHODS, &[("writeInternal", &failing)])).expect("cache");
    assert!(cache.write_internal("f", BYTES.to_vec()).await.is_err());
    assert_eq!(global("given").to_vec(), BYTES, "a failed call may still be using it: left alone");

    let keep_put = "globalThis.given = b; globalThis.kept = b.slice(); return { token: 't2' };";
    let store = JsStore::from_js(host(&JsStore::METHODS, &[("putBytes", keep_put)])).expect("store");
    store.put_bytes("index", &BYTES, &Precondition::IfAbsent).await.expect("put");
    assert_eq!(global("given").length(), 0);
    assert_eq!(global("kept").to_vec(), BYTES);

    let failing =
        "globalThis.given = b; return Promise.reject(Object.assign(new Error('timeout'), { kind: 'Transient' }));";
    let store = JsStore::from_js(host(&JsStore::METHODS, &[("putBytes", failing)])).expect("store");
    assert!(store.put_bytes("index", &BYTES, &Precondition::IfAbsent).await.is_err());
    assert_eq!(global("given").to_vec(), BYTES);
}
