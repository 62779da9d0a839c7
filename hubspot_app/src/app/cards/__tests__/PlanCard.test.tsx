import {
  Alert,
  Button,
  DateInput,
  EmptyState,
  ErrorState,
  Heading,
  Input,
  Link,
  LoadingSpinner,
  ProgressBar,
  Select,
  StatusTag,
  Tag,
  Text,
  Tile,
  ToggleGroup,
} from '@hubspot/ui-extensions';
import { createRenderer, type RenderedElementNode } from '@hubspot/ui-extensions/testing';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import * as api from '../api';
import { PlanCard } from '../components/PlanCard';
import { CARD_MILESTONE_LIMIT, CARD_PAYLOAD_BUDGET } from '../config';
import { ApiError } from '../problem';
import { envelope, plan } from './fixtures';

vi.mock('../api', () => ({
  getPlan: vi.fn(),
  createPlan: vi.fn(),
  updateMilestone: vi.fn(),
  reorderMilestones: vi.fn(),
  buyerLink: vi.fn(),
  editorLink: vi.fn(),
}));

const mocked = vi.mocked(api);

/** The backend origin, as a config profile hands it to the card (context.variables). */
const ORIGIN = 'https://backend.mutualplan.test';
/** The caller the renderer's mocked context produces (portal 123, user 1, deal 123). */
const CALLER = { origin: ORIGIN, portalId: 123, userId: 1, userEmail: 'fake_email@example.com' };
const DEAL = '123';
/** The renderer's default useCrmProperties mock answers `fake_<name>`. */
const DEAL_NAME = 'fake_dealname';

function problem(status: number, title: string, detail?: string, errors?: unknown) {
  return new ApiError({ type: 'about:blank', title, status, detail, errors });
}

/** trigger() with an event argument (its typing expects the handler type). */
function fire(node: Pick<RenderedElementNode, 'trigger'>, prop: string, arg?: unknown) {
  (node.trigger as (name: string, value?: unknown) => void)(prop, arg);
}

function configuredRenderer() {
  const renderer = createRenderer('crm.record.tab');
  renderer.mocks.context.variables = { BACKEND_ORIGIN: ORIGIN };
  return renderer;
}

async function renderCard() {
  const renderer = configuredRenderer();
  renderer.render(<PlanCard />);
  await renderer.waitFor(() => expect(renderer.maybeFind(LoadingSpinner)).toBeNull());
  return renderer;
}

beforeEach(() => {
  vi.resetAllMocks();
});

describe('loading and errors', () => {
  it('shows a spinner, then loads the plan for this deal as this user', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = configuredRenderer();
    renderer.render(<PlanCard />);

    expect(renderer.findByTestId(LoadingSpinner, 'loading')).toBeDefined();
    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Heading, 'plan-title').text).toBe('Acme rollout'),
    );
    expect(mocked.getPlan).toHaveBeenCalledWith(CALLER, DEAL);
  });

  it('shows the problem detail when loading fails, and retries', async () => {
    mocked.getPlan.mockRejectedValueOnce(
      problem(503, 'Service unavailable', 'The database is being upgraded.'),
    );
    const renderer = await renderCard();

    expect(renderer.find(ErrorState).props.title).toBe(
      'The mutual action plan could not be loaded',
    );
    expect(renderer.findByTestId(Text, 'load-error-detail').text).toBe(
      'The database is being upgraded.',
    );

    mocked.getPlan.mockResolvedValueOnce(envelope());
    renderer.findByTestId(Button, 'retry').trigger('onClick');
    await renderer.waitFor(() => expect(renderer.maybeFind(ErrorState)).toBeNull());
    expect(renderer.findByTestId(Heading, 'plan-title').text).toBe('Acme rollout');
    expect(mocked.getPlan).toHaveBeenCalledTimes(2);
  });

  it('explains when the backend cannot be reached at all', async () => {
    mocked.getPlan.mockRejectedValueOnce(new Error('timeout'));
    const renderer = await renderCard();

    expect(renderer.findByTestId(Text, 'load-error-detail').text).toBe('timeout');
  });
});

describe('empty state', () => {
  it('creates a plan from the chosen template', async () => {
    mocked.getPlan.mockResolvedValue(envelope({ plan: null, buyer_link: null }));
    mocked.createPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.find(EmptyState).props.title).toBe('No mutual action plan yet');
    const toggle = renderer.findByTestId(ToggleGroup, 'template');
    expect(toggle.props.options.map((o) => o.value)).toEqual(['enterprise', 'quick']);
    expect(toggle.props.value).toBe('enterprise');

    fire(toggle, 'onChange', 'quick');
    fire(renderer.findByTestId(Input, 'title'), 'onChange', '  Acme rollout ');
    renderer.findByTestId(Button, 'create').trigger('onClick');

    await renderer.waitFor(() => expect(renderer.maybeFind(EmptyState)).toBeNull());
    expect(mocked.createPlan).toHaveBeenCalledWith(CALLER, DEAL, 'quick', 'Acme rollout', DEAL_NAME);
    expect(renderer.findByTestId(Alert, 'notice').props.title).toBe('Plan created');
    expect(renderer.findByTestId(Heading, 'plan-title').text).toBe('Acme rollout');
  });

  it('sends no title when none is typed', async () => {
    mocked.getPlan.mockResolvedValue(envelope({ plan: null }));
    mocked.createPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'create').trigger('onClick');
    await vi.waitFor(() => expect(mocked.createPlan).toHaveBeenCalled());
    expect(mocked.createPlan).toHaveBeenCalledWith(CALLER, DEAL, 'enterprise', undefined, DEAL_NAME);
  });

  it("sends the deal's name from its CRM properties, and none when HubSpot has none", async () => {
    mocked.getPlan.mockResolvedValue(envelope({ plan: null }));
    mocked.createPlan.mockResolvedValue(envelope());
    const renderer = configuredRenderer();
    renderer.mocks.useCrmProperties.willCall((names) => ({
      properties: Object.fromEntries(names.map((n) => [n, n === 'dealname' ? '  Globex renewal ' : null])),
      error: null,
      isLoading: false,
      isRefetching: false,
      refetch: async () => {},
    }));
    renderer.render(<PlanCard />);
    await renderer.waitFor(() => expect(renderer.maybeFind(LoadingSpinner)).toBeNull());

    expect(renderer.findByTestId(Input, 'title').props.placeholder).toBe('Globex renewal');
    renderer.findByTestId(Button, 'create').trigger('onClick');
    await vi.waitFor(() => expect(mocked.createPlan).toHaveBeenCalled());
    expect(mocked.createPlan).toHaveBeenCalledWith(CALLER, DEAL, 'enterprise', undefined, 'Globex renewal');
  });

  it("preselects the backend's default template", async () => {
    const own = { key: 'tpl-1', name: 'Pilot first', description: '', milestone_count: 1, default: true };
    mocked.getPlan.mockResolvedValue(
      envelope({ plan: null, templates: [...envelope().templates, own] }),
    );
    mocked.createPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.findByTestId(ToggleGroup, 'template').props.value).toBe('tpl-1');
    renderer.findByTestId(Button, 'create').trigger('onClick');
    await vi.waitFor(() => expect(mocked.createPlan).toHaveBeenCalled());
    expect(mocked.createPlan).toHaveBeenCalledWith(CALLER, DEAL, 'tpl-1', undefined, DEAL_NAME);
  });

  it('sends no deal name while HubSpot has not given one', async () => {
    mocked.getPlan.mockResolvedValue(envelope({ plan: null }));
    mocked.createPlan.mockResolvedValue(envelope());
    const renderer = configuredRenderer();
    renderer.mocks.useCrmProperties.nextResult({
      properties: {},
      error: null,
      isLoading: true,
      isRefetching: false,
      refetch: async () => {},
    });
    renderer.render(<PlanCard />);
    await renderer.waitFor(() => expect(renderer.maybeFind(LoadingSpinner)).toBeNull());

    renderer.findByTestId(Button, 'create').trigger('onClick');
    await vi.waitFor(() => expect(mocked.createPlan).toHaveBeenCalled());
    expect(mocked.createPlan).toHaveBeenCalledWith(CALLER, DEAL, 'enterprise', undefined, undefined);
  });
});

describe('plan view', () => {
  it('leaves health and win probability out when the backend sends none', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({ plan: plan({ health: undefined, win_probability: null }) }),
    );
    const renderer = await renderCard();
    expect(renderer.findAll(Text).some((t) => t.props.testId === 'win-probability')).toBe(false);
    expect(renderer.findAll(StatusTag).some((t) => t.props.testId === 'plan-health')).toBe(false);
  });

  it('shows stakeholder coverage and alerts when the decision maker has not engaged', async () => {
    const roles = [
      { role: 'decision_maker', label: 'Decision maker', present: true, engaged: false },
      { role: 'champion', label: 'Champion', present: true, engaged: true },
      { role: 'security', label: 'Security', present: false, engaged: false },
    ];
    mocked.getPlan.mockResolvedValue(
      envelope({ plan: plan({ coverage: { days: 14, roles, decision_maker_alert: true } }) }),
    );
    const renderer = await renderCard();
    const tag = (role: string) => renderer.findByTestId(Tag, `coverage-${role}`);
    expect(tag('champion').text).toBe('Champion: engaged');
    expect(tag('champion').props.variant).toBe('success');
    expect(tag('decision_maker').text).toBe('Decision maker: quiet');
    expect(tag('security').text).toBe('Security: not named');
    expect(renderer.findByTestId(Alert, 'decision-maker-alert').text).toContain(
      'has not engaged in the last 14 days',
    );
  });

  it('shows no coverage section when the backend sends none', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();
    expect(renderer.findAll(Tag).some((t) => String(t.props.testId).startsWith('coverage-'))).toBe(
      false,
    );
    expect(renderer.findAll(Alert).some((a) => a.props.testId === 'decision-maker-alert')).toBe(
      false,
    );
  });

  it('shows progress, risk and the stages in order with their milestones', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    const bar = renderer.findByTestId(ProgressBar, 'progress');
    expect(bar.props.value).toBe(33);
    expect(bar.props.valueDescription).toBe('1 of 3 milestones done');
    expect(renderer.findByTestId(StatusTag, 'plan-risk').text).toBe('At risk');
    expect(renderer.findByTestId(Text, 'next-milestone').text).toBe(
      'Kick-off call (due 2099-01-15)',
    );
    expect(renderer.findByTestId(Text, 'slips').text).toBe('2 date changes, 9 days');
    expect(renderer.findByTestId(StatusTag, 'plan-health').text).toBe('Stalled');
    expect(renderer.findByTestId(Text, 'win-probability').text).toBe('62%');

    const stageNames = renderer
      .findAll(Heading)
      .map((h) => h.text)
      .filter((t) => t === 'Discovery' || t === 'Validation');
    expect(stageNames).toEqual(['Discovery', 'Validation']);

    const tiles = renderer.findAll(Tile).map((t) => t.props.testId);
    expect(tiles).toEqual(['milestone-m1', 'milestone-m2', 'milestone-m3']);
    expect(renderer.findByTestId(Text, 'owner-m2').text).toBe('Buyer: Bea Buyer');
    expect(renderer.findByTestId(Select, 'status-m2').props.value).toBe('in_progress');
    expect(renderer.findByTestId(Select, 'risk-m2').props.value).toBe('at_risk');
    expect(renderer.findByTestId(DateInput, 'due-m1').props.value).toEqual({
      year: 2099,
      month: 0,
      date: 15,
    });
    expect(renderer.maybeFindByTestId(StatusTag, 'overdue-m2')).not.toBeNull();
    expect(renderer.maybeFindByTestId(StatusTag, 'overdue-m1')).toBeNull();
  });

  it('shows sync state, failures, CRM mismatch and the mode', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({
        mode: 'deal_properties',
        sync: {
          state: 'failed',
          last_pushed_at: null,
          pending: 2,
          dead_letters: [{ error: 'Property hs_map_progress does not exist', at: '2026-11-26T09:00:00Z' }],
          mismatch: { kind: 'ahead', deal_stage: 'Contract sent', expected_stage: null },
          advice: 'The deal is already at “Contract sent”, further along than the plan. Leave the deal where it is.',
        },
      }),
    );
    const renderer = await renderCard();

    expect(renderer.findByTestId(StatusTag, 'sync-state').text).toBe('Sync failed');
    expect(renderer.findByTestId(Text, 'sync-failure').text).toContain(
      'Property hs_map_progress does not exist',
    );
    const mismatch = renderer.findByTestId(Alert, 'mismatch').text;
    expect(mismatch).toBe(
      'The deal is already at “Contract sent”, further along than the plan. Leave the deal where it is.',
    );
    expect(mismatch).not.toContain('move the deal back');
    expect(renderer.findByTestId(Text, 'mode').text).toContain('only the deal summary properties');
  });

  it('never tells the rep to move the deal back, even without advice from an older backend', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({
        sync: {
          state: 'synced',
          last_pushed_at: null,
          pending: 0,
          dead_letters: [],
          mismatch: { kind: 'ahead', deal_stage: 'Contract sent', expected_stage: 'Qualified' },
        },
      }),
    );
    const renderer = await renderCard();

    const mismatch = renderer.findByTestId(Alert, 'mismatch').text;
    expect(mismatch).toContain('Mark done the milestones that already happened');
    expect(mismatch).not.toContain('move the deal back');
  });

  it('shows pending changes', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({
        sync: { state: 'pending', last_pushed_at: null, pending: 2, dead_letters: [], mismatch: null },
      }),
    );
    const renderer = await renderCard();

    expect(renderer.findByTestId(StatusTag, 'sync-state').text).toBe('Pending (2 changes)');
  });

  it('asks to reconnect when the installation needs it, and still shows the plan', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({
        connection: 'needs_reconnect',
        reconnect_url: 'https://backend.mutualplan.test/oauth/hubspot/install',
      }),
    );
    const renderer = await renderCard();

    expect(renderer.findByTestId(Alert, 'reconnect').props.title).toBe(
      'Reconnect MutualPlan to HubSpot',
    );
    expect(renderer.findByTestId(Button, 'reconnect-button').props.href).toEqual({
      url: 'https://backend.mutualplan.test/oauth/hubspot/install',
      external: true,
    });
    expect(renderer.findByTestId(Heading, 'plan-title').text).toBe('Acme rollout');
  });

  it('shows no reconnect banner when the connection is fine', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.maybeFindByTestId(Alert, 'reconnect')).toBeNull();
  });
});

describe('milestone changes', () => {
  it('sends a status change with the milestone version and shows the answer', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const after = plan({ progress: { done: 2, total: 3, percent: 67 } });
    after.stages[1].milestones[0] = { ...after.stages[1].milestones[0], status: 'done', version: 4 };
    mocked.updateMilestone.mockResolvedValue(envelope({ plan: after }));
    const renderer = await renderCard();

    fire(renderer.findByTestId(Select, 'status-m1'), 'onChange', 'done');

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(ProgressBar, 'progress').props.value).toBe(67),
    );
    expect(mocked.updateMilestone).toHaveBeenCalledWith(CALLER, 'm1', 3, { status: 'done' });
    expect(renderer.findByTestId(Select, 'status-m1').props.value).toBe('done');
  });

  it('sends a risk change', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.updateMilestone.mockResolvedValue(envelope());
    const renderer = await renderCard();

    fire(renderer.findByTestId(Select, 'risk-m2'), 'onChange', 'off_track');

    await vi.waitFor(() => expect(mocked.updateMilestone).toHaveBeenCalled());
    expect(mocked.updateMilestone).toHaveBeenCalledWith(CALLER, 'm2', 1, { risk: 'off_track' });
  });

  it('asks for an optional reason before saving a new due date', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.updateMilestone.mockResolvedValue(envelope());
    const renderer = await renderCard();

    fire(renderer.findByTestId(DateInput, 'due-m1'), 'onChange', { year: 2099, month: 1, date: 20 });

    expect(mocked.updateMilestone).not.toHaveBeenCalled();
    expect(renderer.findByTestId(Input, 'reason-m1').props.label).toContain('from 2099-01-15');
    fire(renderer.findByTestId(Input, 'reason-m1'), 'onChange', 'Legal review takes longer');
    renderer.findByTestId(Button, 'save-due-m1').trigger('onClick');

    await renderer.waitFor(() => expect(renderer.maybeFindByTestId(Input, 'reason-m1')).toBeNull());
    expect(mocked.updateMilestone).toHaveBeenCalledWith(CALLER, 'm1', 3, {
      due_date: '2099-02-20',
      reason: 'Legal review takes longer',
    });
  });

  it('saves a due date without a reason, and cancelling sends nothing', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.updateMilestone.mockResolvedValue(envelope());
    const renderer = await renderCard();

    fire(renderer.findByTestId(DateInput, 'due-m1'), 'onChange', { year: 2099, month: 1, date: 20 });
    renderer.findByTestId(Button, 'cancel-due-m1').trigger('onClick');
    expect(renderer.maybeFindByTestId(Input, 'reason-m1')).toBeNull();
    expect(renderer.findByTestId(DateInput, 'due-m1').props.value).toEqual({
      year: 2099,
      month: 0,
      date: 15,
    });

    fire(renderer.findByTestId(DateInput, 'due-m2'), 'onChange', { year: 2000, month: 2, date: 3 });
    renderer.findByTestId(Button, 'save-due-m2').trigger('onClick');
    await vi.waitFor(() => expect(mocked.updateMilestone).toHaveBeenCalledTimes(1));
    expect(mocked.updateMilestone).toHaveBeenCalledWith(CALLER, 'm2', 1, { due_date: '2000-03-03' });
  });

  it('reloads and tells the user when someone else changed the milestone (412)', async () => {
    const fresh = plan();
    fresh.stages[1].milestones[0] = {
      ...fresh.stages[1].milestones[0],
      status: 'in_progress',
      version: 5,
    };
    mocked.getPlan.mockResolvedValueOnce(envelope()).mockResolvedValueOnce(envelope({ plan: fresh }));
    mocked.updateMilestone.mockRejectedValue(
      problem(412, 'Precondition failed', 'Milestone version 3 is stale; current is 5.'),
    );
    const renderer = await renderCard();

    fire(renderer.findByTestId(Select, 'status-m1'), 'onChange', 'done');

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Select, 'status-m1').props.value).toBe('in_progress'),
    );
    expect(mocked.getPlan).toHaveBeenCalledTimes(2);
    expect(renderer.findByTestId(Alert, 'notice').props.title).toBe(
      'Someone else changed this milestone',
    );
  });

  it('shows the problem detail and field errors when a change is rejected', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.updateMilestone.mockRejectedValue(
      problem(422, 'Invalid milestone', 'The change was not valid.', { due_date: ['must be a date'] }),
    );
    const renderer = await renderCard();

    fire(renderer.findByTestId(Select, 'risk-m1'), 'onChange', 'at_risk');

    await renderer.waitFor(() => expect(renderer.maybeFindByTestId(Alert, 'notice')).not.toBeNull());
    const notice = renderer.findByTestId(Alert, 'notice');
    expect(notice.props.title).toBe('Invalid milestone');
    expect(notice.props.variant).toBe('danger');
    expect(notice.text).toBe('The change was not valid. due_date: must be a date');
    expect(mocked.getPlan).toHaveBeenCalledTimes(1);
  });

  it('moves a milestone down within its stage', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.reorderMilestones.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.findByTestId(Button, 'up-m1').props.disabled).toBe(true);
    renderer.findByTestId(Button, 'down-m1').trigger('onClick');

    await vi.waitFor(() => expect(mocked.reorderMilestones).toHaveBeenCalled());
    expect(mocked.reorderMilestones).toHaveBeenCalledWith(CALLER, 'p1', 's1', ['m2', 'm1']);
  });
});

describe('buyer link', () => {
  it('copies the link to the clipboard', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.findByTestId(Link, 'buyer-link').text).toBe('https://backend.mutualplan.test/p/abc');
    renderer.findByTestId(Button, 'copy-link').trigger('onClick');

    const { copyTextToClipboard } = renderer.mocks.actions;
    expect(copyTextToClipboard.calls).toEqual([['https://backend.mutualplan.test/p/abc']]);
    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Alert, 'notice').props.title).toBe('Buyer link copied'),
    );
  });

  it('rotates the link after a confirmation', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.buyerLink.mockResolvedValue({ url: 'https://backend.mutualplan.test/p/new' });
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'rotate-link').trigger('onClick');
    expect(mocked.buyerLink).not.toHaveBeenCalled();
    expect(renderer.findByTestId(Text, 'rotate-warning')).toBeDefined();
    renderer.findByTestId(Button, 'rotate-confirm').trigger('onClick');

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Link, 'buyer-link').text).toBe('https://backend.mutualplan.test/p/new'),
    );
    expect(mocked.buyerLink).toHaveBeenCalledWith(CALLER, 'p1', true);
    expect(renderer.findByTestId(Alert, 'notice').props.title).toBe('Buyer link rotated');
  });

  it('can cancel a rotation', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'rotate-link').trigger('onClick');
    renderer.findByTestId(Button, 'rotate-cancel').trigger('onClick');

    expect(renderer.maybeFindByTestId(Button, 'rotate-confirm')).toBeNull();
    expect(mocked.buyerLink).not.toHaveBeenCalled();
  });

  it('creates a link when the plan has none', async () => {
    mocked.getPlan.mockResolvedValue(envelope({ buyer_link: null }));
    mocked.buyerLink.mockResolvedValue({ url: 'https://backend.mutualplan.test/p/first' });
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'create-link').trigger('onClick');

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Link, 'buyer-link').text).toBe('https://backend.mutualplan.test/p/first'),
    );
    expect(mocked.buyerLink).toHaveBeenCalledWith(CALLER, 'p1', false);
  });
});

describe('full editor', () => {
  it('opens the editor URL from the backend in an iframe modal and reloads on close', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.editorLink.mockResolvedValue({
      url: 'https://backend.mutualplan.test/editor/p1?t=short-lived',
      expires_at: '2026-11-26T10:05:00Z',
    });
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'open-editor').trigger('onClick');

    const { openIframeModal } = renderer.mocks.actions;
    await vi.waitFor(() => expect(openIframeModal.callCount).toBe(1));
    expect(mocked.editorLink).toHaveBeenCalledWith(CALLER, 'p1');
    const [payload, onClose] = openIframeModal.calls[0];
    expect(payload).toMatchObject({
      uri: 'https://backend.mutualplan.test/editor/p1?t=short-lived',
      title: 'Acme rollout',
    });

    onClose?.();
    await vi.waitFor(() => expect(mocked.getPlan).toHaveBeenCalledTimes(2));
  });

  it('does not open a modal when the editor link cannot be made', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    mocked.editorLink.mockRejectedValue(problem(403, 'Forbidden', 'You cannot edit this plan.'));
    const renderer = await renderCard();

    renderer.findByTestId(Button, 'open-editor').trigger('onClick');

    await renderer.waitFor(() =>
      expect(renderer.findByTestId(Alert, 'notice').text).toBe('You cannot edit this plan.'),
    );
    expect(renderer.mocks.actions.openIframeModal.callCount).toBe(0);
  });
});

describe('a plan the backend trimmed to fit the 1 MB card answer', () => {
  /** A one-stage plan with `shown` milestones sent out of `total`. */
  function bigPlan(shown: number, total: number) {
    const base = plan().stages[1].milestones[0];
    const milestones = Array.from({ length: shown }, (_, i) => ({
      ...base,
      id: `big-${i}`,
      title: `Milestone ${i + 1}`,
      position: i,
    }));
    return plan({
      stages: [{ id: 's1', name: 'Everything', position: 0, milestones, milestone_count: total }],
      progress: { done: 0, total, percent: 0 },
      next_milestone: milestones[0],
      milestones_truncated: shown < total,
      milestone_count: total,
    });
  }

  it(`shows every milestone and no notice at the limit (${CARD_MILESTONE_LIMIT} of ${CARD_MILESTONE_LIMIT})`, async () => {
    mocked.getPlan.mockResolvedValue(envelope({ plan: bigPlan(CARD_MILESTONE_LIMIT, CARD_MILESTONE_LIMIT) }));
    const renderer = await renderCard();

    expect(renderer.findAll(Tile)).toHaveLength(CARD_MILESTONE_LIMIT);
    expect(renderer.maybeFindByTestId(Alert, 'truncated')).toBeNull();
    expect(renderer.findByTestId(Text, 'stage-count-s1').text).toBe(`0 of ${CARD_MILESTONE_LIMIT} done`);
    expect(renderer.findByTestId(Button, 'down-big-0').props.disabled).toBe(false);
  });

  it('says "showing N of M" one past the limit and opens the full editor from there', async () => {
    const total = CARD_MILESTONE_LIMIT + 1;
    mocked.getPlan.mockResolvedValue(envelope({ plan: bigPlan(CARD_MILESTONE_LIMIT, total) }));
    mocked.editorLink.mockResolvedValue({
      url: 'https://backend.mutualplan.test/editor/p1?t=short-lived',
      expires_at: '2026-11-26T10:05:00Z',
    });
    const renderer = await renderCard();

    expect(renderer.findAll(Tile)).toHaveLength(CARD_MILESTONE_LIMIT);
    expect(renderer.findByTestId(Alert, 'truncated').props.title).toBe(
      `Showing ${CARD_MILESTONE_LIMIT} of ${total} milestones`,
    );
    expect(renderer.findByTestId(Text, 'stage-count-s1').text).toBe(
      `${CARD_MILESTONE_LIMIT} of ${total} shown`,
    );
    // The card does not know every id of a trimmed stage, so it cannot reorder it.
    expect(renderer.findByTestId(Button, 'down-big-0').props.disabled).toBe(true);
    expect(renderer.findByTestId(Button, 'up-big-1').props.disabled).toBe(true);

    renderer.findByTestId(Button, 'truncated-open-editor').trigger('onClick');
    await vi.waitFor(() => expect(renderer.mocks.actions.openIframeModal.callCount).toBe(1));
    expect(renderer.mocks.actions.openIframeModal.calls[0][0]).toMatchObject({
      uri: 'https://backend.mutualplan.test/editor/p1?t=short-lived',
    });
  });

  it('an envelope at the limit, as the fixtures shape it, is far below 1 MB', () => {
    const body = JSON.stringify(envelope({ plan: bigPlan(CARD_MILESTONE_LIMIT, 500) }));
    expect(new TextEncoder().encode(body).length).toBeLessThan(CARD_PAYLOAD_BUDGET);
  });
});

describe('content blocks', () => {
  it('shows the block count and opens the editor on its content page', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({ plan: plan({ content: { count: 3, shared: 2, files: 1 } }) }),
    );
    mocked.editorLink.mockResolvedValue({
      url: 'https://backend.mutualplan.test/editor/open/short-lived',
      expires_at: '2026-11-26T10:05:00Z',
    });
    const renderer = await renderCard();

    expect(renderer.findByTestId(Text, 'content-count').text).toBe(
      '3 blocks, 2 shared with the buyer',
    );
    renderer.findByTestId(Button, 'open-content').trigger('onClick');

    const { openIframeModal } = renderer.mocks.actions;
    await vi.waitFor(() => expect(openIframeModal.callCount).toBe(1));
    expect(mocked.editorLink).toHaveBeenCalledWith(CALLER, 'p1', 'content');
    expect(openIframeModal.calls[0][0]).toMatchObject({
      uri: 'https://backend.mutualplan.test/editor/open/short-lived',
    });
  });

  it('invites the rep to add content to a plan without any', async () => {
    mocked.getPlan.mockResolvedValue(
      envelope({ plan: plan({ content: { count: 0, shared: 0, files: 0 } }) }),
    );
    const renderer = await renderCard();

    expect(renderer.findByTestId(Text, 'content-count').text).toBe('No content yet');
    expect(renderer.findByTestId(Button, 'open-content').text).toBe('Add content');
  });

  it('says nothing about content when an older backend does not send it', async () => {
    mocked.getPlan.mockResolvedValue(envelope());
    const renderer = await renderCard();

    expect(renderer.maybeFind(Text, { testId: 'content-count' })).toBeNull();
    expect(renderer.maybeFind(Button, { testId: 'open-content' })).toBeNull();
  });
});
