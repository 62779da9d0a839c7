/**
 * Where the card finds the MutualPlan backend.
 *
 * hubspot.fetch only calls HTTPS origins listed in `permittedUrls.fetch` of
 * src/app/app-hsmeta.json. Before `hs project upload`, set this to the same
 * HTTPS origin (for local work with `hs project dev`, point a local.json proxy
 * from that origin to http://localhost:5000; see README.md).
 */
export const BACKEND_BASE_URL = 'http://localhost:5000';

/** hubspot.fetch timeout for every backend call, in milliseconds. */
export const FETCH_TIMEOUT_MS = 15000;

/** Size of the iframe modal that shows the full plan editor. */
export const EDITOR_MODAL = { width: 1200, height: 800 } as const;
