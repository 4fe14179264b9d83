//! The control plane (`marsh::control`) on the in-memory bucket: where records live, how keys are checked, how each
//! request is retried, and what `put_if_absent` answers when a create's answer is lost.
#![cfg(not(target_arch = "wasm32"))]

use marsh::control::{ControlError, ControlPlane, ControlRoot};
use marsh::store::StoreError;
use marsh::testing::memory::{Kind, MemoryStore, TestEnv, TokenStyle};
use marsh::testing::sim::block_on;

fn transient() -> StoreError {
    StoreError::Transient { status: None, message: "connection reset".into() }
}

fn plane<'a>(
    store: &'a MemoryStore,
    env: &'a TestEnv,
    namespace: Option<&str>,
) -> ControlPlane<'a, MemoryStore, TestEnv> {
    ControlPlane::new(store, env, ControlRoot::for_namespace(namespace).unwrap())
}

#[test]
fn records_live_under_control_at_the_root_or_below_the_namespace() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));

    block_on(plane(&store, &env, None).put("signals/a", b"root")).unwrap();
    block_on(plane(&store, &env, Some("team-a")).put("signals/a", b"ns")).unwrap();

    assert_eq!(store.object("_control/signals/a").unwrap().0, b"root");
    assert_eq!(store.object("team-a/_control/signals/a").unwrap().0, b"ns");
    assert_eq!(block_on(plane(&store, &env, Some("team-a")).get("signals/a")).unwrap().as_deref(), Some(&b"ns"[..]));
    let datastore = ControlPlane::new(&store, &env, ControlRoot::datastore());
    assert_eq!(block_on(datastore.get("signals/a")).unwrap().as_deref(), Some(&b"root"[..]));
}

#[test]
fn get_of_a_missing_record_is_none_and_delete_of_one_is_not_an_error() {
    let (store, env) = (MemoryStore::new(TokenStyle::Gcs), TestEnv::new(1));
    let control = plane(&store, &env, None);

    assert_eq!(block_on(control.get("nothing")), Ok(None));
    assert_eq!(block_on(control.delete("nothing")), Ok(()));
    block_on(control.put("k", b"v")).unwrap();
    block_on(control.delete("k")).unwrap();
    assert!(store.keys().is_empty());
}

#[test]
fn put_overwrites_and_list_answers_record_keys_under_a_prefix() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));
    store.set_page_size(2);
    store.put_raw("_controlled/not-a-record", "x");
    store.put_raw("data/a.json", "x");
    let control = plane(&store, &env, None);
    for key in ["runs/1", "runs/2", "runs/3", "runsx", "other"] {
        block_on(control.put(key, b"first")).unwrap();
    }
    block_on(control.put("runs/1", b"second")).unwrap();

    assert_eq!(block_on(control.get("runs/1")).unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(block_on(control.list("runs/")).unwrap(), ["runs/1", "runs/2", "runs/3"]);
    assert_eq!(block_on(control.list("runs")).unwrap(), ["runs/1", "runs/2", "runs/3", "runsx"]);
    assert_eq!(block_on(control.list("")).unwrap(), ["other", "runs/1", "runs/2", "runs/3", "runsx"]);
}

#[test]
fn bad_keys_and_namespaces_are_refused_naming_them_before_any_request() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));
    let control = plane(&store, &env, None);

    for key in ["", "../escape", "/abs", "a//b", "a/./b", "a/", "a\\b"] {
        let error = block_on(control.put_if_absent(key, b"x")).unwrap_err();
        assert!(matches!(&error, ControlError::InvalidKey { key: named, .. } if named == key), "{key:?}: {error:?}");
        assert!(error.to_string().contains(&format!("{key:?}")), "{error}");
        assert!(matches!(block_on(control.get(key)), Err(ControlError::InvalidKey { .. })), "{key:?}");
    }
    assert!(matches!(block_on(control.list("../")), Err(ControlError::InvalidKey { .. })));
    let error = ControlRoot::for_namespace(Some("../other")).unwrap_err();
    assert!(error.to_string().contains("\"../other\""), "{error}");
    assert_eq!(store.requests().total(), 0);
}

#[test]
fn transient_failures_are_retried_by_the_core_policy() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));
    store.faults().fail_nth(Kind::PutBytes, 1, transient());
    store.faults().fail_nth(Kind::GetBytes, 1, transient());
    let control = plane(&store, &env, None);

    block_on(control.put("k", b"v")).unwrap();
    assert_eq!(block_on(control.get("k")).unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(env.sleeps().len(), 2);
}

#[test]
fn a_permanent_failure_is_reported_with_the_key_and_not_retried() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));
    let denied = StoreError::Auth { status: Some(403), message: "AccessDenied".into() };
    store.faults().fail_nth(Kind::PutBytes, 1, denied.clone());

    let error = block_on(plane(&store, &env, None).put_if_absent("claims/x", b"v")).unwrap_err();

    assert_eq!(error, ControlError::Store { key: "claims/x".into(), source: denied });
    assert!(env.sleeps().is_empty());
}

#[test]
fn put_if_absent_creates_once_then_answers_false_and_keeps_the_first_record() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let (store, env) = (MemoryStore::new(style), TestEnv::new(1));
        let control = plane(&store, &env, None);

        assert_eq!(block_on(control.put_if_absent("signal", b"A")), Ok(true));
        assert_eq!(block_on(control.put_if_absent("signal", b"B")), Ok(false));
        assert_eq!(block_on(control.put_if_absent("signal", b"A")), Ok(false), "identical bytes, no retry: false");
        assert_eq!(store.object("_control/signal").unwrap().0, b"A");
    }
}

/// The winner's create lands but its answer is lost; the retry meets its own record and must still answer `true`.
#[test]
fn a_create_whose_answer_was_lost_still_wins() {
    for style in [TokenStyle::S3, TokenStyle::Gcs] {
        let (store, env) = (MemoryStore::new(style), TestEnv::new(1));
        store.faults().fail_nth_after_effect(Kind::PutBytes, 1, transient());
        let loser = store.client();

        let won = block_on(plane(&store, &env, None).put_if_absent("signal", b"A"));
        let lost = block_on(plane(&loser, &env, None).put_if_absent("signal", b"B"));

        assert_eq!((won, lost), (Ok(true), Ok(false)), "{style:?}");
        assert_eq!(store.object("_control/signal").unwrap().0, b"A");
    }
}

/// A creator whose own first attempt failed before it landed, and who then finds another creator's record, lost.
#[test]
fn a_retried_create_that_finds_another_record_loses() {
    let (store, env) = (MemoryStore::new(TokenStyle::Gcs), TestEnv::new(1));
    store.faults().fail_nth(Kind::PutBytes, 1, transient());
    let other = store.client();
    let mut raced = false;
    store.faults().on_call(
        Kind::PutBytes,
        |_| true,
        move |_| {
            if !raced {
                raced = true;
                other.put_raw("_control/signal", "B");
            }
        },
    );

    assert_eq!(block_on(plane(&store, &env, None).put_if_absent("signal", b"A")), Ok(false));
    assert_eq!(store.object("_control/signal").unwrap().0, b"B");
}

#[test]
fn an_abort_stops_put_if_absent_before_its_request() {
    let (store, env) = (MemoryStore::new(TokenStyle::S3), TestEnv::new(1));
    env.abort();

    let error = block_on(plane(&store, &env, None).put_if_absent("signal", b"A")).unwrap_err();

    assert_eq!(error, ControlError::Aborted { key: "signal".into() });
    assert_eq!(store.requests().total(), 0);
}
