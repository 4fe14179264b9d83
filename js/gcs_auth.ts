/**
 * Access tokens for the GCS adapter. {@link GcsStore} only sees the tiny {@link TokenSource} interface, so tests can
 * inject a fake one and emulator mode needs none; {@link AdcTokenSource} is the production source: application default
 * credentials through google-auth-library (service account or authorized user file in GOOGLE_APPLICATION_CREDENTIALS,
 * external accounts / workload identity federation, the gcloud ADC file, the metadata server).
 *
 * @module
 */

// Static import on purpose: swamp extensions may only import statically, and its check would flag the dynamic form
// even in a comment. The library itself does no I/O until the first token is asked for (the `GoogleAuth` object is
// built then), so importing this module stays cheap.
import { GoogleAuth } from "npm:google-auth-library@11.3.4";

/** OAuth scope for reading and writing objects (no bucket administration). */
export const GCS_READ_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write";

const PROJECT_NOT_NEEDED = "marsh-project-not-needed";

/** Where bearer tokens come from. */
export interface TokenSource {
  /** A currently valid access token (cached by the source; refreshed by it before expiry). */
  getToken(): Promise<string>;
  /** Forget any cached token: the server rejected it (HTTP 401), so the next `getToken` must fetch a fresh one. */
  invalidate(): void;
}

/**
 * A token could not be obtained. `status` is the HTTP status of the token endpoint when there was one: a 429/5xx there
 * is worth a retry, anything else (no credentials found, revoked refresh token, bad key file) is not.
 */
export class CredentialsError extends Error {
  override name = "CredentialsError";
  readonly status?: number;

  constructor(message: string, options?: { status?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.status = options?.status;
  }
}

/** Options of {@link AdcTokenSource}. */
export interface AdcTokenSourceOptions {
  /** Passed to google-auth-library; only used by credential types that need a project (none of the common ones). */
  projectId?: string;
  /** Defaults to {@link GCS_READ_WRITE_SCOPE}. */
  scopes?: string[];
  /**
   * A credentials JSON object (any type the library reads from a file) instead of the ADC lookup. For embedding and
   * tests; swamp users configure credentials the standard way.
   */
  credentials?: Record<string, unknown>;
}

/** Application default credentials via google-auth-library, built on first use. */
export class AdcTokenSource implements TokenSource {
  #options: AdcTokenSourceOptions;
  #auth: GoogleAuth | undefined;

  constructor(options: AdcTokenSourceOptions = {}) {
    this.#options = options;
  }

  async getToken(): Promise<string> {
    // The auth client caches the token and refreshes it shortly before it expires; we only keep the client.
    this.#auth ??= new GoogleAuth({
      scopes: this.#options.scopes ?? [GCS_READ_WRITE_SCOPE],
      // Object calls name no project, but without one the library looks it up before handing out the first token:
      // `gcloud config` in a child process, the metadata server, or Cloud Resource Manager for external accounts
      // (which fails where that API is unreachable or not permitted). A placeholder stops the lookup; it is never sent.
      projectId: this.#options.projectId || PROJECT_NOT_NEEDED,
      credentials: this.#options.credentials,
    });
    let token: string | null | undefined;
    try {
      token = await this.#auth.getAccessToken();
    } catch (error) {
      // A failed credential lookup is not cached: drop the client so that the next call looks again.
      this.#auth = undefined;
      throw new CredentialsError(`could not get a Google access token: ${describe(error)}`, {
        status: statusOf(error),
        cause: error,
      });
    }
    if (!token) {
      this.#auth = undefined;
      throw new CredentialsError("could not get a Google access token: the credentials gave an empty token");
    }
    return token;
  }

  invalidate(): void {
    // Rebuilding the client is the one way that works for every credential type (some keep their token privately).
    this.#auth = undefined;
  }
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** The HTTP status of a gaxios-style error (`status`, or `response.status`), if any. */
function statusOf(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const direct = (error as { status?: unknown }).status;
  if (typeof direct === "number") return direct;
  const response = (error as { response?: { status?: unknown } }).response;
  return typeof response?.status === "number" ? response.status : undefined;
}
