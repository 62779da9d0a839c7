/**
 * HubSpot's proxy between hubspot.fetch and our backend does not always pass our status codes
 * through. For an answer of 300-599 from the app server it answers 200 with a wrapper, and the
 * local development proxy (`hs project dev`) does the same "mirroring current backend proxy
 * behavior" (@hubspot/ui-extensions-dev-server 2.1.2, dist/lib/proxy/AppProxyService.js):
 *
 *   { "status": "error", "category": "BAD_GATEWAY", "message": "Error returned from Request Uri",
 *     "responseBody": <our problem+json>, "errors": [...],
 *     "context": { "appServerStatusCode": ["412"], "correlationId": [...], ... } }
 *
 * Successful answers may likewise arrive as { "status": "success", "responseBody": ... }. Some
 * runtimes reject the hubspot.fetch promise with such an object instead of resolving. This module
 * recognises every shape, so the card sees our own status and problem either way.
 */

export interface Unwrapped {
  /** The app server's status (ours), or null when the proxy did not say. */
  status: number | null;
  /** What our backend answered (problem+json or the envelope). */
  body: unknown;
  /** true for a proxy error wrapper, false for a success wrapper. */
  failed: boolean;
  /** The proxy's own message, for errors it raised itself (no app server status). */
  message?: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function statusFrom(value: unknown): number | null {
  const first = Array.isArray(value) ? value[0] : value;
  const n = typeof first === 'number' ? first : Number.parseInt(String(first ?? ''), 10);
  return Number.isInteger(n) && n >= 100 && n <= 599 ? n : null;
}

function parseMaybeJson(body: unknown): unknown {
  if (typeof body !== 'string') return body;
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}

/** The proxy wrapper inside `value`, or null when `value` is a plain answer from our backend. */
export function unwrapProxy(value: unknown): Unwrapped | null {
  if (!isObject(value)) return null;
  const { status } = value;
  if (status !== 'error' && status !== 'success') return null;
  const context = isObject(value.context) ? value.context : {};
  const hasStatus = 'appServerStatusCode' in value || 'appServerStatusCode' in context;
  // Our own answers never carry a top-level "status" string; require a proxy field as well.
  if (!hasStatus && !('responseBody' in value) && !('category' in value)) return null;
  const code = statusFrom(value.appServerStatusCode ?? context.appServerStatusCode);
  return {
    status: code,
    body: parseMaybeJson(value.responseBody),
    failed: status === 'error',
    message: typeof value.message === 'string' ? value.message : undefined,
  };
}
