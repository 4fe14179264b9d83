// marsh's conformance suites (tests/deno/support/datastore_conformance.ts), written from swamp's host contract, each
// registered against every backend: the in-memory store, the CLI's file:// store, S3 on moto and GCS on
// fake-gcs-server. Run under scripts/with-emulators.sh: without the emulator endpoints the S3 and GCS cases fail, never
// skip. Case names read "<suite> [<backend>]: <what it checks>", so `--filter "[memory]"` or `--filter "lock ["`
// selects one backend or one suite.
import {
  conformanceBackends,
  controlPlaneSuite,
  exportSuite,
  lockSuite,
  lockTimeoutSuite,
  syncRoundTripSuite,
} from "./support/datastore_conformance.ts";

for (const backend of conformanceBackends()) {
  exportSuite(backend);
  lockSuite(backend);
  lockTimeoutSuite(backend);
  syncRoundTripSuite(backend);
  syncRoundTripSuite(backend, { namespace: "team-a" });
  controlPlaneSuite(backend);
}
