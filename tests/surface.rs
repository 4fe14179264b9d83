//! Today's swamp surface on pull: lazy hydration (`metadataOnly`, `hydrateFile`, `fetchContent`), `subdirs` and scoped
//! sync (`context.models`), and what each may record (docs/host-contract.md).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{format1_bucket, s3_bucket, Machine};
use marsh::engine::{PullOptions, PullReport, SyncError};
use marsh::testing::sim::block_on;

const RAW: &str = "data/aws/ec2/i-1/state/1/raw";
const META: &str = "data/aws/ec2/i-1/state/1/meta.yaml";
const OTHER_RAW: &str = "data/aws/ec2/i-2/state/1/raw";
const OTHER_META: &str = "data/aws/ec2/i-2/state/1/meta.yaml";
const OUTPUT: &str = "outputs/aws/ec2/i-1/run/7/log";
const WORKFLOW: &str = "workflows-evaluated/w.yaml";

/// A format-2 bucket with two models' data, one model's output and a workflow, pushed by a machine that goes away.
fn bucket() -> marsh::testing::memory::MemoryStore {
    let bucket = s3_bucket();
    let writer = Machine::new(&bucket, 99);
    for (rel, bytes) in [
        (RAW, &b"raw-1"[..]),
        (META, b"meta-1"),
        (OTHER_RAW, b"raw-2"),
        (OTHER_META, b"meta-2"),
        (OUTPUT, b"log"),
        (WORKFLOW, b"wf"),
    ] {
        writer.write(rel, bytes);
    }
    writer.push().expect("populate");
    bucket
}

fn pull_with(machine: &Machine, options: PullOptions) -> Result<PullReport, SyncError> {
    block_on(machine.engine().pull_with(&options))
}

fn metadata_only() -> PullOptions {
    PullOptions { metadata_only: true, ..PullOptions::default() }
}

fn models(list: &[(&str, &str)]) -> PullOptions {
    let models = list.iter().map(|(t, id)| (t.to_string(), id.to_string())).collect();
    PullOptions { models, ..PullOptions::default() }
}

fn subdirs(list: &[&str]) -> PullOptions {
    PullOptions { subdirs: Some(list.iter().map(|s| s.to_string()).collect()), ..PullOptions::default() }
}

#[test]
fn a_metadata_only_pull_skips_content_files_but_creates_their_folders() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);

    let report = pull_with(&reader, metadata_only()).unwrap();

    assert_eq!(report.downloaded, 4);
    assert_eq!(report.skipped, [RAW, OTHER_RAW]);
    assert!(reader.cache.file(RAW).is_none() && reader.cache.file(META).is_some());
    assert!(reader.cache.has_dir("data/aws/ec2/i-1/state/1") && reader.cache.has_dir("data/aws/ec2/i-2/state/1"));
    // Not everything compared is here: no token, so the next full pull cannot take the fast path.
    assert!(!report.verified);
    assert_eq!(reader.state().verified_token, None);
}

#[test]
fn after_a_metadata_only_pull_a_full_pull_downloads_the_skipped_files_and_only_then_verifies() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    pull_with(&reader, metadata_only()).unwrap();
    // Again metadata-only: still skipped, still not "lost here".
    let again = pull_with(&reader, metadata_only()).unwrap();
    assert_eq!((again.downloaded, again.skipped.len(), again.verified), (0, 2, false));

    let full = reader.pull().unwrap();

    assert!(!full.fast_path);
    assert_eq!(full.downloaded, 2);
    assert!(full.verified);
    assert_eq!(reader.cache.file(RAW).as_deref(), Some(&b"raw-1"[..]));
    assert!(reader.pull().unwrap().fast_path);
}

#[test]
fn a_push_after_a_metadata_only_pull_never_takes_a_skipped_file_for_a_deletion() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    pull_with(&reader, metadata_only()).unwrap();
    // A bare markDirty: anything may have changed, and the skipped files are absent here.
    reader.mark_dirty();
    reader.write("data/aws/ec2/i-1/state/2/meta.yaml", b"new");

    let pushed = reader.push().unwrap();

    assert!(pushed.deleted.is_empty(), "{pushed:?}");
    assert!(bucket.object(RAW).is_some() && bucket.object(OTHER_RAW).is_some());
    assert!(common::remote_index(&bucket).get(RAW).is_some());
}

#[test]
fn a_metadata_only_pull_with_nothing_to_skip_verifies_like_a_full_pull() {
    let bucket = s3_bucket();
    let writer = Machine::new(&bucket, 99);
    writer.write(META, b"meta-1");
    writer.push().unwrap();
    let reader = Machine::new(&bucket, 1);

    let report = pull_with(&reader, metadata_only()).unwrap();

    assert!(report.skipped.is_empty() && report.verified);
}

#[test]
fn hydrate_file_brings_one_skipped_file_in_and_records_it_as_synced() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    pull_with(&reader, metadata_only()).unwrap();

    assert!(block_on(reader.engine().hydrate_file(RAW)).unwrap());
    assert_eq!(reader.cache.file(RAW).as_deref(), Some(&b"raw-1"[..]));
    assert!(reader.cache.file(OTHER_RAW).is_none());
    // Recorded as this index's version: a push has nothing to upload for it.
    let pushed = reader.push().unwrap();
    assert_eq!(pushed.uploaded, 0, "{pushed:?}");
    // The next full pull downloads only the other one.
    assert_eq!(reader.pull().unwrap().downloaded, 1);
}

#[test]
fn hydrate_file_answers_false_for_a_path_the_index_does_not_have() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    assert!(!block_on(reader.engine().hydrate_file("data/aws/ec2/i-9/state/1/raw")).unwrap());
    assert!(!block_on(reader.engine().hydrate_file("nothing-here.json")).unwrap());
    assert!(reader.data_files().is_empty());
}

#[test]
fn hydrate_file_leaves_a_local_file_alone() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.write(RAW, b"edited here");
    assert!(block_on(reader.engine().hydrate_file(RAW)).unwrap());
    assert_eq!(reader.cache.file(RAW).as_deref(), Some(&b"edited here"[..]));
}

#[test]
fn fetch_content_answers_the_remote_bytes_without_touching_the_cache() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.store.reset_requests();

    let bytes = block_on(reader.engine().fetch_content(RAW)).unwrap();

    assert_eq!(bytes.as_deref(), Some(&b"raw-1"[..]));
    assert_eq!(reader.store.requests().total(), 1);
    assert!(reader.cache.files().is_empty());
    assert_eq!(block_on(reader.engine().fetch_content("data/none/x/y/raw")).unwrap(), None);
}

#[test]
fn fetch_content_and_hydrate_file_refuse_paths_outside_the_cache_by_name() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    for bad in ["/etc/passwd", "../secret", "data/../../x", ""] {
        let fetched = block_on(reader.engine().fetch_content(bad)).unwrap_err();
        assert!(matches!(&fetched, SyncError::InvalidArgument(m) if m.contains("fetchContent")), "{bad}: {fetched}");
        assert!(fetched.to_string().contains(&format!("{bad:?}")), "{fetched}");
        let hydrated = block_on(reader.engine().hydrate_file(bad)).unwrap_err();
        assert!(matches!(hydrated, SyncError::InvalidArgument(_)), "{bad}: {hydrated}");
    }
    assert_eq!(reader.store.requests().total(), 0);
}

#[test]
fn a_subdirs_pull_decides_only_under_those_folders_and_records_no_token() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    // The bucket deletes a workflow and changes an output; here a workflow file nobody pushed.
    let other = Machine::new(&bucket, 2);
    other.pull().unwrap();
    other.write(OUTPUT, b"log-2");
    other.write("workflows-evaluated/new.yaml", b"n");
    other.push().unwrap();
    let verified_before = reader.state().verified_token;

    let report = pull_with(&reader, subdirs(&["workflows-evaluated"])).unwrap();

    assert_eq!(report.downloaded, 1);
    assert!(reader.cache.file("workflows-evaluated/new.yaml").is_some());
    assert_eq!(reader.cache.file(OUTPUT).as_deref(), Some(&b"log"[..]), "outside the subdirs: untouched");
    assert!(!report.verified);
    assert_eq!(reader.state().verified_token, verified_before);
    // A full pull then takes the rest.
    let full = reader.pull().unwrap();
    assert_eq!((full.downloaded, full.verified), (1, true));
}

#[test]
fn a_subdirs_pull_removes_only_inside_its_folders() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    let other = Machine::new(&bucket, 2);
    other.pull().unwrap();
    other.delete(WORKFLOW);
    other.delete(OUTPUT);
    other.push().unwrap();

    let report = pull_with(&reader, subdirs(&["outputs"])).unwrap();

    assert_eq!(report.removed, [OUTPUT]);
    assert!(reader.cache.file(WORKFLOW).is_some());
}

#[test]
fn a_subdirs_option_that_is_not_a_top_level_folder_is_refused_by_name() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    for bad in ["a/b", "..", "", ".datastore-index.json"] {
        let error = pull_with(&reader, subdirs(&[bad])).unwrap_err();
        assert!(matches!(&error, SyncError::InvalidArgument(m) if m.contains(&format!("{bad:?}"))), "{error}");
    }
    assert!(reader.data_files().is_empty());
}

#[test]
fn a_scoped_pull_reads_only_the_models_shards_and_decides_only_their_paths() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.store.reset_requests();

    let report = pull_with(&reader, models(&[("aws/ec2", "i-1")])).unwrap();

    // _meta.json, the format marker, data--aws--ec2--i-1 and outputs--aws--ec2--i-1 (no definitions shard is
    // listed); then the three downloads.
    let requests = reader.store.requests();
    assert_eq!(requests.get_bytes, 4, "{requests:?}");
    assert_eq!(report.downloaded, 3);
    assert_eq!(reader.data_files(), [META, RAW, OUTPUT]);
    assert!(!report.verified);
    assert_eq!(reader.state().verified_token, None);
    // Nothing outside the scope counts as decided: a full pull takes the rest.
    assert_eq!(reader.pull().unwrap().downloaded, 3);
}

#[test]
fn a_scoped_pull_leaves_files_of_other_models_alone_even_when_the_bucket_deleted_them() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    let other = Machine::new(&bucket, 2);
    other.pull().unwrap();
    other.delete(OTHER_META);
    other.delete(META);
    other.push().unwrap();

    let report = pull_with(&reader, models(&[("aws/ec2", "i-1")])).unwrap();

    assert_eq!(report.removed, [META]);
    assert!(reader.cache.file(OTHER_META).is_some());
}

#[test]
fn a_scoped_pull_of_a_model_whose_shard_is_not_listed_reads_everything() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);

    let report = pull_with(&reader, models(&[("aws/ec2", "i-404")])).unwrap();

    assert_eq!(report.downloaded, 6);
    assert!(report.verified, "a full read of the whole index, all here");
}

#[test]
fn a_scoped_pull_on_a_format_1_bucket_reads_everything() {
    let bucket = format1_bucket(s3_bucket(), &[(META, b"m"), (WORKFLOW, b"w")]);
    let reader = Machine::new(&bucket, 1);

    let report = pull_with(&reader, models(&[("aws/ec2", "i-1")])).unwrap();

    assert_eq!(report.downloaded, 2);
    assert!(report.verified);
}

#[test]
fn a_scoped_pull_after_a_verified_one_with_nothing_new_is_the_fast_path() {
    let bucket = bucket();
    let reader = Machine::new(&bucket, 1);
    reader.pull().unwrap();
    reader.store.reset_requests();

    let report = pull_with(&reader, models(&[("aws/ec2", "i-1")])).unwrap();

    assert!(report.fast_path);
    assert_eq!(reader.store.requests().total(), 1, "{:?}", reader.store.requests());
}

#[test]
fn a_subdirs_pull_is_not_failed_by_a_bad_entry_outside_its_folders() {
    let bucket = format1_bucket(s3_bucket(), &[("config/a.yaml", b"a"), ("../escape", b"x")]);
    let reader = Machine::new(&bucket, 5);

    let report = pull_with(&reader, subdirs(&["config"])).unwrap();

    assert_eq!(report.downloaded, 1);
    assert_eq!(reader.cache.file("config/a.yaml").as_deref(), Some(&b"a"[..]));
    let whole = reader.pull().unwrap_err();
    assert!(whole.to_string().contains("../escape"), "a whole pull still names it: {whole}");
    let inside = pull_with(&reader, subdirs(&[".."]));
    assert!(inside.is_err(), "and \"..\" is no folder to narrow to");
}
