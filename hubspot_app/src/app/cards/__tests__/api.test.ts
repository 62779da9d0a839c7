import { beforeEach, describe, expect, it, vi } from 'vitest';

import * as api from '../api';
import { ApiError } from '../problem';
import { envelope } from './fixtures';

const { mockFetch } = vi.hoisted(() => ({ mockFetch: vi.fn() }));

vi.mock('@hubspot/ui-extensions', () => ({
  hubspot: { fetch: (...args: unknown[]) => mockFetch(...args) },
}));

const BACKEND_BASE_URL = 'https://backend.mutualplan.test';
const CALLER = { origin: BACKEND_BASE_URL, portalId: 62515, userId: 45678, userEmail: 'rep+1@seller.example' };
const QUERY = 'portalId=62515&userId=45678&userEmail=rep%2B1%40seller.example';

function json(status: number, body: unknown, type = 'application/json') {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': type } });
}

beforeEach(() => {
  mockFetch.mockReset();
});

describe('requests', () => {
  it('loads the plan of a deal, identifying the caller in the query string', async () => {
    mockFetch.mockResolvedValue(json(200, envelope()));

    const result = await api.getPlan(CALLER, '1246965');

    expect(result.plan?.id).toBe('p1');
    expect(mockFetch).toHaveBeenCalledWith(
      `${BACKEND_BASE_URL}/hubspot/card/deals/1246965/plan?${QUERY}`,
      { method: 'GET', timeout: 15000 },
    );
  });

  it('creates a plan from a template, with and without a title', async () => {
    mockFetch.mockResolvedValue(json(201, envelope()));

    await api.createPlan(CALLER, '7', 'quick', 'Acme');
    await api.createPlan(CALLER, '7', 'enterprise');

    expect(mockFetch.mock.calls[0]).toEqual([
      `${BACKEND_BASE_URL}/hubspot/card/deals/7/plan?${QUERY}`,
      { method: 'POST', timeout: 15000, body: { template: 'quick', title: 'Acme' } },
    ]);
    expect(mockFetch.mock.calls[1][1].body).toEqual({ template: 'enterprise' });
  });

  it('patches a milestone with its version', async () => {
    mockFetch.mockResolvedValue(json(200, envelope()));

    await api.updateMilestone(CALLER, 'a b/c', 4, { due_date: '2026-12-01', reason: 'Legal' });

    expect(mockFetch).toHaveBeenCalledWith(
      `${BACKEND_BASE_URL}/hubspot/card/milestones/a%20b%2Fc?${QUERY}`,
      { method: 'PATCH', timeout: 15000, body: { version: 4, due_date: '2026-12-01', reason: 'Legal' } },
    );
  });

  it('reorders, makes buyer links and editor links', async () => {
    mockFetch
      .mockResolvedValueOnce(json(200, envelope()))
      .mockResolvedValueOnce(json(200, { url: 'https://b/1' }))
      .mockResolvedValueOnce(json(200, { url: 'https://e/1', expires_at: '2026-11-26T10:05:00Z' }))
      .mockResolvedValueOnce(json(200, { url: 'https://e/2', expires_at: '2026-11-26T10:05:00Z' }));

    await api.reorderMilestones(CALLER, 'p1', 's1', ['m2', 'm1']);
    expect(await api.buyerLink(CALLER, 'p1', true)).toEqual({ url: 'https://b/1' });
    expect((await api.editorLink(CALLER, 'p1')).url).toBe('https://e/1');
    await api.editorLink(CALLER, 'p1', 'content');

    expect(mockFetch.mock.calls.map(([url, opts]) => [url, opts.method, opts.body])).toEqual([
      [`${BACKEND_BASE_URL}/hubspot/card/plans/p1/reorder?${QUERY}`, 'POST', { stage_id: 's1', milestone_ids: ['m2', 'm1'] }],
      [`${BACKEND_BASE_URL}/hubspot/card/plans/p1/buyer-link?${QUERY}`, 'POST', { rotate: true }],
      [`${BACKEND_BASE_URL}/hubspot/card/plans/p1/editor-link?${QUERY}`, 'POST', {}],
      [`${BACKEND_BASE_URL}/hubspot/card/plans/p1/editor-link?${QUERY}`, 'POST', { page: 'content' }],
    ]);
  });
});

describe('errors', () => {
  it('turns a problem+json answer into an ApiError', async () => {
    mockFetch.mockResolvedValue(
      json(
        412,
        { type: 'https://mutualplan.dev/problems/stale-version', title: 'Stale version', status: 412, detail: 'Reload and try again.' },
        'application/problem+json',
      ),
    );

    const error = await api.updateMilestone(CALLER, 'm1', 1, { status: 'done' }).catch((e) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(412);
    expect(error.problem.detail).toBe('Reload and try again.');
    expect(error.message).toBe('Reload and try again.');
  });

  it('keeps field errors', async () => {
    const errors = { due_date: ['not a date'] };
    mockFetch.mockResolvedValue(json(422, { type: 'about:blank', title: 'Invalid', status: 422, errors }));

    const error = await api.createPlan(CALLER, '1', 'quick').catch((e) => e);

    expect(error.problem.errors).toEqual(errors);
  });

  it('copes with an error answer that is not JSON', async () => {
    mockFetch.mockResolvedValue(new Response('<html>Bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }));

    const error = await api.getPlan(CALLER, '1').catch((e) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(502);
    expect(error.problem.title).toBe('Bad Gateway');
  });

  it('reads a wrapper whose appServerStatusCode is top-level and scalar', async () => {
    mockFetch.mockResolvedValue(
      json(200, {
        status: 'error',
        appServerStatusCode: 412,
        responseBody: JSON.stringify({ type: 'about:blank', title: 'Stale', status: 412, detail: 'Reload.' }),
      }),
    );

    const error = await api.updateMilestone(CALLER, 'm1', 1, { status: 'done' }).catch((e) => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(412);
    expect(error.problem.detail).toBe('Reload.');
  });

  it('does not mistake our own answers for a wrapper', async () => {
    mockFetch.mockResolvedValue(json(200, { url: 'https://b/1' }));

    expect(await api.buyerLink(CALLER, 'p1', false)).toEqual({ url: 'https://b/1' });
  });
});
