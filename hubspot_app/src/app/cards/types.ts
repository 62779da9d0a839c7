/** Shapes of the MutualPlan card API (backend routes under /hubspot/card/). */

export type MilestoneStatus = 'not_started' | 'in_progress' | 'done';
export type Risk = 'on_track' | 'at_risk' | 'off_track';
export type OwnerSide = 'buyer' | 'seller' | 'both';
export type TemplateKey = 'enterprise' | 'quick';

export interface Owner {
  name: string;
  email: string;
}

export interface Milestone {
  id: string;
  title: string;
  description: string;
  owner_side: OwnerSide;
  owners: Owner[];
  due_date: string | null; // YYYY-MM-DD
  status: MilestoneStatus;
  risk: Risk;
  internal: boolean;
  position: number;
  completed_at: string | null;
  version: number;
  /** Titles of the open milestones this one depends on ("waiting on X"); absent from older backends. */
  waiting_on?: string[];
}

export interface Stage {
  id: string;
  name: string;
  position: number;
  /** The milestones the backend sent: all of them, or the first ones when the plan is trimmed. */
  milestones: Milestone[];
  /** All milestones of this stage, sent and left out (optional; see Plan.milestones_truncated). */
  milestone_count?: number;
}

/**
 * A card answer must stay under HubSpot's 1 MB hubspot.fetch limit, so the backend sends at most
 * CARD_MILESTONE_LIMIT milestones (fewer if the encoded answer would pass CARD_PAYLOAD_BUDGET), in
 * plan order (stage position, then milestone position), and says so with `milestones_truncated`
 * and `milestone_count`. The card shows "Showing N of M milestones" and sends the rep to the
 * full editor. The card does not read the long plan-level fields, so the backend may leave them out.
 */
export interface Plan {
  id: string;
  title: string;
  value_summary?: string;
  objectives?: unknown;
  constraints?: unknown;
  resources?: unknown;
  stakeholders?: unknown;
  stages: Stage[];
  /** True when the backend left milestones out of `stages` to keep the answer small. */
  milestones_truncated?: boolean;
  /** All milestones of the plan (M in "Showing N of M"); progress counts all of them. */
  milestone_count?: number;
  progress: { done: number; total: number; percent: number };
  risk: Risk;
  next_milestone: Milestone | null;
  overdue_count: number;
  slip_count: number;
  slip_days: number;
  version: number;
  /** Plan health and the milestone-based win probability (%), from webapp/analytics.py. */
  health?: Health;
  win_probability?: number | null;
  /** The plan's content blocks: all of them, those the buyer sees, those holding a file
   * (webapp/content.py card_summary); absent from older backends. */
  content?: ContentSummary;
  /** Which buyer-side roles engaged lately (absent from older backends). */
  coverage?: Coverage;
}

export interface ContentSummary {
  count: number;
  shared: number;
  files: number;
}

/** Where an editor link lands: the plan, or its content blocks page. */
export type EditorPage = 'plan' | 'content';

export type Health = 'on_track' | 'at_risk' | 'stalled';

export interface CoverageRole {
  role: string;
  label: string;
  /** someone with this role (and an email) is on the buyer side */
  present: boolean;
  /** and viewed the buyer page or acted in the last `days` days */
  engaged: boolean;
}

export interface Coverage {
  days: number;
  roles: CoverageRole[];
  decision_maker_alert: boolean;
}

export interface Template {
  key: TemplateKey | string;
  name: string;
  description: string;
  milestone_count: number;
  /** The template to preselect: the tenant's default for the pipeline (absent from older backends). */
  default?: boolean;
}

export interface SyncStatus {
  state: 'synced' | 'pending' | 'failed';
  last_pushed_at: string | null;
  pending: number;
  dead_letters: { error: string; at: string }[];
  mismatch: null | {
    kind: 'ahead' | 'behind';
    deal_stage: string;
    /** null when no milestone that moves the deal is done yet */
    expected_stage: string | null;
  };
  /** What the rep should do about the mismatch, in the CRM's stage labels (webapp/mirror.py
   * advice: it never says to move a deal back); absent from older backends. */
  advice?: string | null;
}

export interface Envelope {
  mode: 'custom_objects' | 'deal_properties';
  connection: 'ok' | 'needs_reconnect';
  reconnect_url: string | null;
  plan: Plan | null;
  templates: Template[];
  sync: SyncStatus;
  buyer_link: { url: string } | null;
}

/** Fields the card may change on a milestone (PATCH body without version). */
export interface MilestoneChanges {
  status?: MilestoneStatus;
  risk?: Risk;
  due_date?: string | null;
  reason?: string;
  owners?: Owner[];
}

/** RFC 9457 problem details, as the backend sends them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: unknown;
  /** Sent with 403 not-installed: where an admin (re)installs the app. */
  reconnect_url?: string | null;
}

/**
 * Where and who: `origin` is the backend's HTTPS origin from the project config profile
 * (context.variables.BACKEND_ORIGIN); the ids are read from the extension context and sent in
 * the query string.
 */
export interface Caller {
  origin: string;
  portalId: number;
  userId: number;
  userEmail: string;
}
