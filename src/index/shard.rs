//! Which shard of a format-2 index holds a path. Every writer must compute this identically, or one path's entry ends
//! up in two shards and readers see whichever they merge last; the rules are the official ones (docs/formats.md).
//!
//! Where the official rules give no shard (a `data/` path of fewer than four segments, a `workflow-runs/` path of
//! fewer than three), the official extension drops the entry from the index, so no reader sees the file.
//! marsh never drops an entry: such paths live in the shard [`UNSHARDED`]. A path whose shard name would be `_meta`
//! (a top-level folder of that name) goes there too: its shard object would be `_index/_meta.json`, the commit record.

use std::borrow::Cow;

/// The shard of single-segment paths (files at the top of the cache).
pub const ROOT_SHARD: &str = "_root";
/// marsh's home for paths the official rules give no shard.
pub const UNSHARDED: &str = "_unsharded";
/// The name no shard may take: `_index/_meta.json` is the commit record.
const META_NAME: &str = "_meta";

/// Top-level folders whose shards are named after the model (type and id) a path belongs to.
const MODEL_FOLDERS: [&str; 3] = ["data", "outputs", "definitions-evaluated"];
const WORKFLOW_RUNS: &str = "workflow-runs";

/// The shard the official rules give `rel` (a `/`-separated cache-relative path), if any.
pub fn official_shard(rel: &str) -> Option<Cow<'_, str>> {
    let segments: Vec<&str> = rel.split('/').filter(|segment| !segment.is_empty()).collect();
    match segments.as_slice() {
        [] => None,
        [_] => Some(Cow::Borrowed(ROOT_SHARD)),
        [first, ..] if MODEL_FOLDERS.contains(first) => match segments.len() {
            0..=3 => None,
            4 | 5 => Some(Cow::Owned(segments[..segments.len() - 1].join("--"))),
            n => Some(Cow::Owned(segments[..n - 3].join("--"))),
        },
        [first, second, _, ..] if *first == WORKFLOW_RUNS => Some(Cow::Owned(format!("{WORKFLOW_RUNS}--{second}"))),
        [first, ..] if *first == WORKFLOW_RUNS => None,
        [first, ..] => Some(Cow::Borrowed(first)),
    }
}

/// The shard marsh keeps `rel` in: the official one, or [`UNSHARDED`].
pub fn home_shard(rel: &str) -> Cow<'_, str> {
    match official_shard(rel) {
        Some(shard) if shard != META_NAME => shard,
        _ => Cow::Borrowed(UNSHARDED),
    }
}

/// The shards a scoped pull of one model reads: its `data`, `outputs` and `definitions-evaluated` shards. A model type
/// with several segments (`aws/ec2`) joins them with `--`, as its paths do.
pub fn model_shards(model_type: &str, model_id: &str) -> [String; 3] {
    let model =
        format!("{}--{model_id}", model_type.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("--"));
    MODEL_FOLDERS.map(|folder| format!("{folder}--{model}"))
}

/// The object holding shard `name`.
pub fn shard_key(name: &str) -> String {
    format!("_index/{name}.json")
}

/// Whether `name`, read from a `_meta.json` partition list, can be a shard of ours to read and write: a plain name
/// that maps to an object directly under `_index/`.
pub fn is_valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name != META_NAME
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official rules, path by path, with marsh's home for the paths they leave out.
    #[test]
    fn paths_are_assigned_as_the_official_rules_say() {
        let cases: [(&str, Option<&str>, &str); 30] = [
            // One segment: the root shard.
            ("README.md", Some("_root"), "_root"),
            (".catalog-export.json", Some("_root"), "_root"),
            // Model folders: 4 or 5 segments drop the last; 6 or more drop the last three; fewer than 4 have none.
            ("data/aws/ec2/i-1/state/3/raw", Some("data--aws--ec2--i-1"), "data--aws--ec2--i-1"),
            ("data/aws/ec2/i-1/state/3/meta.yaml", Some("data--aws--ec2--i-1"), "data--aws--ec2--i-1"),
            ("data/t/id/v/raw", Some("data--t--id--v"), "data--t--id--v"),
            ("data/t/id/raw", Some("data--t--id"), "data--t--id"),
            ("data/t/id/a/b/c", Some("data--t--id"), "data--t--id"),
            ("data/t/id/a/b/c/d/e", Some("data--t--id--a--b"), "data--t--id--a--b"),
            ("data/t/id", None, "_unsharded"),
            ("data/t", None, "_unsharded"),
            ("data", Some("_root"), "_root"),
            ("outputs/aws/ec2/i-1/run/7/log", Some("outputs--aws--ec2--i-1"), "outputs--aws--ec2--i-1"),
            ("outputs/t/id/x", Some("outputs--t--id"), "outputs--t--id"),
            ("outputs/t/x", None, "_unsharded"),
            (
                "definitions-evaluated/t/id/v1/def.yaml",
                Some("definitions-evaluated--t--id--v1"),
                "definitions-evaluated--t--id--v1",
            ),
            (
                "definitions-evaluated/t/id/def.yaml",
                Some("definitions-evaluated--t--id"),
                "definitions-evaluated--t--id",
            ),
            ("definitions-evaluated/t/def.yaml", None, "_unsharded"),
            // Workflow runs: by run id from three segments on.
            ("workflow-runs/r-1/state.json", Some("workflow-runs--r-1"), "workflow-runs--r-1"),
            ("workflow-runs/r-1/steps/a/log", Some("workflow-runs--r-1"), "workflow-runs--r-1"),
            ("workflow-runs/r-1", None, "_unsharded"),
            // Any other first segment is the shard.
            ("workflows-evaluated/w.yaml", Some("workflows-evaluated"), "workflows-evaluated"),
            ("auto-definitions/a/b/c/d.yaml", Some("auto-definitions"), "auto-definitions"),
            ("audit/2026/12/02.log", Some("audit"), "audit"),
            ("telemetry/x.json", Some("telemetry"), "telemetry"),
            ("logs/run.log", Some("logs"), "logs"),
            ("files/a/b", Some("files"), "files"),
            ("config/settings.yaml", Some("config"), "config"),
            ("my-own-folder/x", Some("my-own-folder"), "my-own-folder"),
            // A folder named like the commit record would put its shard over `_index/_meta.json`.
            ("_meta/x.json", Some("_meta"), "_unsharded"),
            ("_root/x.json", Some("_root"), "_root"),
        ];
        for (rel, official, home) in cases {
            assert_eq!(official_shard(rel).as_deref(), official, "official shard of {rel}");
            assert_eq!(home_shard(rel), home, "home shard of {rel}");
        }
    }

    #[test]
    fn a_scoped_pull_reads_the_three_shards_of_a_model() {
        assert_eq!(
            model_shards("aws/ec2", "i-1"),
            ["data--aws--ec2--i-1", "outputs--aws--ec2--i-1", "definitions-evaluated--aws--ec2--i-1"]
        );
        assert_eq!(home_shard("data/aws/ec2/i-1/state/3/raw"), model_shards("aws/ec2", "i-1")[0]);
    }

    #[test]
    fn shard_names_from_a_partition_list_must_name_an_object_under_the_index_folder() {
        for good in ["_root", "data--aws--ec2--i-1", "_unsharded", "workflow-runs--r1", "a.b"] {
            assert!(is_valid_shard_name(good), "{good}");
        }
        for bad in ["", "_meta", "..", ".", "a/b", "../x", "a\\b", "a\nb"] {
            assert!(!is_valid_shard_name(bad), "{bad:?}");
        }
        assert_eq!(shard_key("_root"), "_index/_root.json");
    }
}
