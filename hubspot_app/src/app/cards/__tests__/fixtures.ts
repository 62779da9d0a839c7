/** Test data shaped like the backend's card API answers. */
import type { Envelope, Milestone, Plan } from '../types';

export function milestone(overrides: Partial<Milestone> = {}): Milestone {
  return {
    id: 'm1',
    title: 'Kick-off call',
    description: '',
    owner_side: 'seller',
    owners: [{ name: 'Sam Seller', email: 'sam@seller.example' }],
    due_date: '2099-01-15',
    status: 'not_started',
    risk: 'on_track',
    internal: false,
    position: 0,
    completed_at: null,
    version: 3,
    ...overrides,
  };
}

export function plan(overrides: Partial<Plan> = {}): Plan {
  const discovery = [
    milestone(),
    milestone({
      id: 'm2',
      title: 'Security review',
      owner_side: 'buyer',
      owners: [{ name: 'Bea Buyer', email: 'bea@buyer.example' }],
      due_date: '2000-02-01',
      status: 'in_progress',
      risk: 'at_risk',
      position: 1,
      version: 1,
    }),
  ];
  return {
    id: 'p1',
    title: 'Acme rollout',
    value_summary: 'Cut onboarding time in half',
    objectives: [],
    constraints: [],
    resources: [],
    stakeholders: [],
    stages: [
      { id: 's2', name: 'Validation', position: 1, milestones: [milestone({ id: 'm3', title: 'Pilot', status: 'done', position: 0 })] },
      { id: 's1', name: 'Discovery', position: 0, milestones: discovery },
    ],
    progress: { done: 1, total: 3, percent: 33 },
    risk: 'at_risk',
    next_milestone: discovery[0],
    overdue_count: 1,
    slip_count: 2,
    slip_days: 9,
    version: 7,
    health: 'stalled',
    win_probability: 62,
    ...overrides,
  };
}

export function envelope(overrides: Partial<Envelope> = {}): Envelope {
  return {
    mode: 'custom_objects',
    connection: 'ok',
    reconnect_url: null,
    plan: plan(),
    templates: [
      { key: 'enterprise', name: 'Enterprise', description: 'Four stages, 10 milestones', milestone_count: 10 },
      { key: 'quick', name: 'Quick', description: 'Short cycle', milestone_count: 4 },
    ],
    sync: { state: 'synced', last_pushed_at: '2026-11-26T10:00:00Z', pending: 0, dead_letters: [], mismatch: null },
    buyer_link: { url: 'https://backend.mutualplan.test/p/abc' },
    ...overrides,
  };
}
