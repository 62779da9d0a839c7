/**
 * The only module that talks to the MutualPlan backend. Every call goes through
 * hubspot.fetch (HubSpot signs it with the app's client secret, v3 signature) to the origin from
 * the project config profile, and carries portalId, userId and userEmail in the query string,
 * which the backend reads after checking the signature. Tests of the card mock this module.
 */
import { hubspot } from '@hubspot/ui-extensions';

import { FETCH_TIMEOUT_MS } from './config';
import { ApiError } from './problem';
import { unwrapProxy } from './proxy';
import type {
  Caller,
  EditorPage,
  Envelope,
  MilestoneChanges,
  Problem,
  TemplateKey,
} from './types';

type Method = 'GET' | 'POST' | 'PATCH';

export function backendUrl(path: string, caller: Caller): string {
  const query = new URLSearchParams({
    portalId: String(caller.portalId),
    userId: String(caller.userId),
    userEmail: caller.userEmail,
  });
  return `${caller.origin}${path}?${query.toString()}`;
}

async function call<T>(
  caller: Caller,
  method: Method,
  path: string,
  body?: Record<string, unknown>,
): Promise<T> {
  let response: Response;
  try {
    response = await hubspot.fetch(backendUrl(path, caller), {
      method,
      timeout: FETCH_TIMEOUT_MS,
      ...(body === undefined ? {} : { body }),
    });
  } catch (thrown) {
    // Some runtimes reject with the proxy's error wrapper instead of resolving with it.
    const wrapped = unwrapProxy(thrown);
    if (wrapped) throw new ApiError(asProblem(wrapped.body, wrapped.status ?? 502, wrapped.message));
    throw thrown;
  }
  const payload = await readJson(response);
  const wrapped = unwrapProxy(payload);
  if (wrapped) {
    const status = wrapped.status ?? (wrapped.failed ? 502 : response.status);
    if (wrapped.failed || status >= 300) {
      throw new ApiError(asProblem(wrapped.body, status, wrapped.message));
    }
    return wrapped.body as T;
  }
  if (!response.ok) throw new ApiError(asProblem(payload, response.status, response.statusText));
  return payload as T;
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function asProblem(payload: unknown, status: number, fallbackTitle?: string): Problem {
  const p = (payload && typeof payload === 'object' ? payload : {}) as Partial<Problem> &
    Record<string, unknown>;
  return {
    ...p,
    type: p.type ?? 'about:blank',
    title: p.title ?? (fallbackTitle || 'Request failed'),
    // The app server's status wins over a status field in the body.
    status,
    detail: p.detail,
    errors: p.errors,
  };
}

const seg = encodeURIComponent;

export function getPlan(caller: Caller, dealId: string): Promise<Envelope> {
  return call(caller, 'GET', `/hubspot/card/deals/${seg(dealId)}/plan`);
}

export function createPlan(
  caller: Caller,
  dealId: string,
  template: TemplateKey | string,
  title?: string,
  dealName?: string,
): Promise<Envelope> {
  return call(caller, 'POST', `/hubspot/card/deals/${seg(dealId)}/plan`, {
    template,
    ...(title ? { title } : {}),
    // the backend stores it and defaults the plan's title to it
    ...(dealName ? { deal_name: dealName } : {}),
  });
}

export function updateMilestone(
  caller: Caller,
  milestoneId: string,
  version: number,
  changes: MilestoneChanges,
): Promise<Envelope> {
  return call(caller, 'PATCH', `/hubspot/card/milestones/${seg(milestoneId)}`, {
    version,
    ...changes,
  });
}

export function reorderMilestones(
  caller: Caller,
  planId: string,
  stageId: string,
  milestoneIds: string[],
): Promise<Envelope> {
  return call(caller, 'POST', `/hubspot/card/plans/${seg(planId)}/reorder`, {
    stage_id: stageId,
    milestone_ids: milestoneIds,
  });
}

export function buyerLink(
  caller: Caller,
  planId: string,
  rotate: boolean,
): Promise<{ url: string }> {
  return call(caller, 'POST', `/hubspot/card/plans/${seg(planId)}/buyer-link`, { rotate });
}

export function editorLink(
  caller: Caller,
  planId: string,
  page?: EditorPage,
): Promise<{ url: string; expires_at: string }> {
  const body = page && page !== 'plan' ? { page } : {};
  return call(caller, 'POST', `/hubspot/card/plans/${seg(planId)}/editor-link`, body);
}
