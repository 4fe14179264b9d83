/**
 * A reader of the bucket's index written from docs/formats.md alone, sharing no code with marsh's index layer (the
 * TypeScript twin of tests/common/reader.rs): tests use it to see what any other reader of the bucket would see.
 *
 * Format 2 when `_index/_meta.json` says version 2: every shard it lists, each `{"version":1,"entries":{…}}`.
 * Otherwise the format-1 monolith `.datastore-index.json`. Not a test file itself.
 *
 * @module
 */

export const META_KEY = "_index/_meta.json";
export const MONOLITH_KEY = ".datastore-index.json";

/** One object read raw from the bucket, or `null` when it does not exist. */
export type RawGet = (key: string) => Promise<{ bytes: Uint8Array; token: string } | null>;

export interface IndexEntryJson {
  key?: string;
  size: number;
  lastModified?: string;
  localMtime?: string;
  sha256?: string;
  [field: string]: unknown;
}

/** What a reader finds. `format` is `null` when the bucket has no index at all. */
export interface FoundIndex {
  format: 1 | 2 | null;
  /** The token of the commit object: `_meta.json` (format 2) or the monolith (format 1). */
  commitToken: string | null;
  entries: Record<string, IndexEntryJson>;
  /** Format 2: the shard each entry came from. */
  shardOf: Record<string, string>;
  /** Format 2: the shards `_meta.json` lists. */
  partitions: string[];
  /** The commit object's other top-level fields (`commitSeq`, or the monolith's `lastPulled` and unknown fields). */
  top: Record<string, unknown>;
}

const decoder = new TextDecoder();

function json(bytes: Uint8Array, key: string): Record<string, unknown> {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (error) {
    throw new Error(`${key} is not JSON: ${error}`);
  }
}

export async function readIndex(get: RawGet): Promise<FoundIndex> {
  const meta = await get(META_KEY);
  if (meta !== null) {
    const body = json(meta.bytes, META_KEY);
    if (body.version === 2) {
      const partitions = body.partitions as string[];
      if (!Array.isArray(partitions)) throw new Error(`${META_KEY} has no partitions array`);
      const found: FoundIndex = {
        format: 2,
        commitToken: meta.token,
        entries: {},
        shardOf: {},
        partitions,
        top: body,
      };
      for (const name of partitions) {
        const key = `_index/${name}.json`;
        const shard = await get(key);
        if (shard === null) throw new Error(`listed shard ${key} is missing`);
        const document = json(shard.bytes, key);
        if (document.version !== 1) throw new Error(`${key} is not a version-1 document`);
        for (const [rel, entry] of Object.entries(document.entries as Record<string, IndexEntryJson>)) {
          if (rel in found.shardOf) throw new Error(`${rel} is in two shards: ${found.shardOf[rel]} and ${name}`);
          found.shardOf[rel] = name;
          found.entries[rel] = entry;
        }
      }
      return found;
    }
  }
  const monolith = await get(MONOLITH_KEY);
  if (monolith !== null) {
    const body = json(monolith.bytes, MONOLITH_KEY);
    if (body.version === 1) {
      const entries = body.entries as Record<string, IndexEntryJson>;
      return { format: 1, commitToken: monolith.token, entries, shardOf: {}, partitions: [], top: body };
    }
  }
  return { format: null, commitToken: null, entries: {}, shardOf: {}, partitions: [], top: {} };
}
