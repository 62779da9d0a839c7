/**
 * The only module that talks to the MutualPlan backend. Every call goes through
 * hubspot.fetch (HubSpot signs it with the app's client secret, v3 signature) and
 * carries portalId, userId and userEmail in the query string, which the backend
 * reads after checking the signature. Tests mock this module.
 */
import { hubspot } from '@hubspot/ui-extensions';

import { BACKEND_BASE_URL, FETCH_TIMEOUT_MS } from './config';
import { ApiError } from './problem';
import type {
  Caller,
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
  return `${BACKEND_BASE_URL}${path}?${query.toString()}`;
}

async function call<T>(
  caller: Caller,
  method: Method,
  path: string,
  body?: Record<string, unknown>,
): Promise<T> {
  const response = await hubspot.fetch(backendUrl(path, caller), {
    method,
    timeout: FETCH_TIMEOUT_MS,
    ...(body === undefined ? {} : { body }),
  });
  const payload = await readJson(response);
  if (!response.ok) throw new ApiError(asProblem(payload, response));
  return payload as T;
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function asProblem(payload: unknown, response: Response): Problem {
  const p = (payload && typeof payload === 'object' ? payload : {}) as Partial<Problem>;
  return {
    type: p.type ?? 'about:blank',
    title: p.title ?? (response.statusText || 'Request failed'),
    status: typeof p.status === 'number' ? p.status : response.status,
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
): Promise<Envelope> {
  return call(caller, 'POST', `/hubspot/card/deals/${seg(dealId)}/plan`, {
    template,
    ...(title ? { title } : {}),
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
): Promise<{ url: string; expires_at: string }> {
  return call(caller, 'POST', `/hubspot/card/plans/${seg(planId)}/editor-link`, {});
}
