/**
 * The whole card (real api.ts and usePlan) with only hubspot.fetch mocked, configured by a
 * project config profile's variables, against the answers HubSpot's proxy really gives:
 * 3xx-5xx from our backend arrive as 200 {status: "error", responseBody, context.appServerStatusCode}
 * (see proxy.ts), or as a rejected promise carrying the same wrapper.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  Alert,
  Button,
  ErrorState,
  LoadingSpinner,
  Select,
  Text,
} from '@hubspot/ui-extensions';
import { createRenderer } from '@hubspot/ui-extensions/testing';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { PlanCard } from '../components/PlanCard';
import { envelope, plan } from './fixtures';

const { mockFetch } = vi.hoisted(() => ({ mockFetch: vi.fn() }));

vi.mock('@hubspot/ui-extensions', async (importOriginal) => {
  const real = await importOriginal<typeof import('@hubspot/ui-extensions')>();
  return { ...real, hubspot: { ...real.hubspot, fetch: (...a: unknown[]) => mockFetch(...a) } };
});

const root = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
const PROFILE = JSON.parse(readFileSync(join(root, 'src/hsprofile.prod.example.json'), 'utf8'));
const ORIGIN: string = PROFILE.variables.BACKEND_ORIGIN;

function ok(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/** What HubSpot's proxy answers when our backend said `status` with `body`. */
function wrapped(status: number, body: unknown) {
  return ok({
    status: 'error',
    category: 'BAD_GATEWAY',
    message: 'Error returned from Request Uri',
    responseBody: body,
    errors: [{ message: `Unacceptable HTTP status ${status} calling ${ORIGIN}/...` }],
    context: {
      correlationId: ['c0ffee'],
      httpMethod: ['GET'],
      appServerStatusCode: [String(status)],
      portalId: ['123'],
      requestUri: [`${ORIGIN}/...`],
    },
  });
}

function problem(status: number, slug: string, title: string, detail: string, extra = {}) {
  return { type: `https://mutualplan.dev/problems/${slug}`, title, status, detail, ...extra };
}

async function renderCard(variables: Record<string, unknown> = PROFILE.variables) {
  const renderer = createRenderer('crm.record.tab');
  renderer.mocks.context.variables = variables as Record<string, string>;
  renderer.render(<PlanCard />);
  await renderer.waitFor(() => expect(renderer.maybeFind(LoadingSpinner)).toBeNull());
  return renderer;
}

beforeEach(() => {
  mockFetch.mockReset();
});

describe('configuration from the profile', () => {
  it("calls the profile's BACKEND_ORIGIN, signed query and all", async () => {
    mockFetch.mockResolvedValue(ok(envelope()));
    await renderCard();

    const [url, options] = mockFetch.mock.calls[0];
    expect(url).toBe(
      `${ORIGIN}/hubspot/card/deals/123/plan?portalId=123&userId=1&userEmail=fake_email%40example.com`,
    );
    expect(options).toMatchObject({ method: 'GET' });
  });

  it('says the card is not configured, and calls nothing, without the variable', async () => {
    const renderer = await renderCard({});

    expect(renderer.find(ErrorState).props.title).toBe('MutualPlan is not configured');
    expect(renderer.findByTestId(Text, 'not-configured-detail').text).toContain(
      'hs project upload --profile prod',
    );
    expect(mockFetch).not.toHaveBeenCalled();
  });

  it('refuses a non-https origin (hubspot.fetch would refuse it too)', async () => {
    const renderer = await renderCard({ BACKEND_ORIGIN: 'http://backend.mutualplan.test:5000' });

    expect(renderer.findByTestId(Text, 'not-configured-detail').text).toContain('https://');
    expect(mockFetch).not.toHaveBeenCalled();
  });
});

describe("HubSpot's proxy envelope", () => {
  it('unwraps a success wrapper', async () => {
    mockFetch.mockResolvedValue(
      ok({ status: 'success', responseBody: envelope(), context: { appServerStatusCode: ['200'] } }),
    );
    const renderer = await renderCard();

    expect(renderer.maybeFind(ErrorState)).toBeNull();
    expect(renderer.findByTestId(Select, 'status-m1').props.value).toBe('not_started');
  });

  it('a wrapped 412 reloads the plan and tells the rep someone else changed it', async () => {
    const fresh = plan();
    fresh.stages[1].milestones[0] = { ...fresh.stages[1].milestones[0], status: 'in_progress', version: 5 };
    mockFetch
      .mockResolvedValueOnce(ok(envelope()))
      .mockResolvedValueOnce(
        wrapped(412, problem(412, 'stale-version', 'Precondition failed', 'Version 3 is stale.')),
      )
      .mockResolvedValueOnce(ok(envelope({ plan: fresh })));
    const renderer = await renderCard();

    (renderer.findByTestId(Select, 'status-m1').trigger as (n: string, v: string) => void)(
      'onChange',
      'done',
    );

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Select, 'status-m1').props.value).toBe('in_progress'),
    );
    expect(renderer.findByTestId(Alert, 'notice').props.title).toBe(
      'Someone else changed this milestone',
    );
    expect(mockFetch.mock.calls.map(([, o]) => o.method)).toEqual(['GET', 'PATCH', 'GET']);
    expect(mockFetch.mock.calls[1][1].body).toEqual({ version: 3, status: 'done' });
  });

  it('a wrapped 403 not-installed offers to connect the app', async () => {
    mockFetch.mockResolvedValue(
      wrapped(
        403,
        problem(403, 'not-installed', 'MutualPlan is not connected to this HubSpot account',
          'HubSpot account 123 has not installed MutualPlan (or uninstalled it).',
          { reconnect_url: `${ORIGIN}/install/hubspot` }),
      ),
    );
    const renderer = await renderCard();

    expect(renderer.findByTestId(ErrorState, 'not-installed').props.title).toBe(
      'MutualPlan is not connected to this HubSpot account',
    );
    expect(renderer.findByTestId(Button, 'install-button').props.href).toEqual({
      url: `${ORIGIN}/install/hubspot`,
      external: true,
    });
  });

  it('a wrapped 500 shows the problem and lets the rep retry', async () => {
    mockFetch
      .mockResolvedValueOnce(
        wrapped(500, problem(500, 'internal', 'Internal error', 'Something broke on our side.')),
      )
      .mockResolvedValueOnce(ok(envelope()));
    const renderer = await renderCard();

    expect(renderer.findByTestId(ErrorState, 'load-error')).toBeDefined();
    expect(renderer.findByTestId(Text, 'load-error-detail').text).toBe(
      'Something broke on our side.',
    );
    renderer.findByTestId(Button, 'retry').trigger('onClick');
    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).toBeNull());
  });

  it('a wrapped 502 whose body is not JSON still explains itself', async () => {
    mockFetch.mockResolvedValue(wrapped(502, '<html>Bad gateway</html>'));
    const renderer = await renderCard();

    expect(renderer.findByTestId(Text, 'load-error-detail').text).toBe(
      'Error returned from Request Uri',
    );
  });

  it('reads the same wrapper from a rejected hubspot.fetch', async () => {
    const rejection = Object.assign(new Error('Request failed'), {
      status: 'error',
      responseBody: problem(403, 'not-installed', 'Not connected', 'Install MutualPlan first.'),
      context: { appServerStatusCode: ['403'] },
    });
    mockFetch.mockRejectedValue(rejection);
    const renderer = await renderCard();

    expect(renderer.findByTestId(ErrorState, 'not-installed')).toBeDefined();
    expect(renderer.findByTestId(Text, 'load-error-detail').text).toBe('Install MutualPlan first.');
  });

  it('still reads a raw (unwrapped) 412', async () => {
    mockFetch
      .mockResolvedValueOnce(ok(envelope()))
      .mockResolvedValueOnce(ok(problem(412, 'stale-version', 'Precondition failed', 'Stale.'), 412))
      .mockResolvedValueOnce(ok(envelope()));
    const renderer = await renderCard();

    (renderer.findByTestId(Select, 'risk-m1').trigger as (n: string, v: string) => void)(
      'onChange',
      'at_risk',
    );
    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Alert, 'notice').props.title).toBe(
        'Someone else changed this milestone',
      ),
    );
    expect(mockFetch).toHaveBeenCalledTimes(3);
  });
});
