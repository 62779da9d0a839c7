/**
 * Card configuration. The backend origin is not in the code: it comes from the HubSpot project
 * config profile the project was uploaded with (`hs project upload --profile prod`), whose
 * `variables` HubSpot hands to the card as `context.variables`. The same variable fills
 * `permittedUrls`, the OAuth redirect URL and the webhook target in the `-hsmeta.json` files, so
 * the card can only call the origin the app permits. See README.md.
 */

/** Name of the profile variable that holds the backend origin (e.g. https://app.your-domain). */
export const BACKEND_ORIGIN_VARIABLE = 'BACKEND_ORIGIN';

/** hubspot.fetch timeout for every backend call, in milliseconds. */
export const FETCH_TIMEOUT_MS = 15000;

/** Size of the iframe modal that shows the full plan editor. */
export const EDITOR_MODAL = { width: 1200, height: 800 } as const;

/**
 * The card's part of the payload contract (the backend applies it; see types.ts `Plan`):
 * at most this many milestones in one card answer...
 */
export const CARD_MILESTONE_LIMIT = 50;
/** ...and fewer if the UTF-8 JSON answer would otherwise pass this many bytes (HubSpot: 1 MB). */
export const CARD_PAYLOAD_BUDGET = 900_000;

export type OriginResult = { ok: true; origin: string } | { ok: false; reason: string };

/**
 * Reads the backend origin from the profile variables. hubspot.fetch only calls HTTPS URLs whose
 * origin is listed in permittedUrls.fetch, so anything else is a configuration error.
 */
export function backendOrigin(variables: Record<string, unknown> | undefined): OriginResult {
  const raw = variables?.[BACKEND_ORIGIN_VARIABLE];
  if (typeof raw !== 'string' || !raw.trim()) {
    return {
      ok: false,
      reason: `The project was uploaded without the ${BACKEND_ORIGIN_VARIABLE} profile variable. Upload it with a config profile (hs project upload --profile prod).`,
    };
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return { ok: false, reason: `${BACKEND_ORIGIN_VARIABLE} is not a URL: ${raw}` };
  }
  if (url.protocol !== 'https:') {
    return {
      ok: false,
      reason: `${BACKEND_ORIGIN_VARIABLE} must be an https:// origin (hubspot.fetch calls nothing else): ${raw}`,
    };
  }
  return { ok: true, origin: url.origin };
}
