/**
 * Card state: loads the deal's plan envelope and runs every change through the
 * backend, replacing the envelope with the one the backend answers.
 * A 412 (someone else changed the milestone) reloads and tells the user; api.ts has already
 * unwrapped HubSpot's proxy envelope, so a wrapped 412 arrives here as a 412 too.
 */
import { useCallback, useEffect, useState } from 'react';

import * as api from './api';
import { ApiError, problemText, toApiError } from './problem';
import type { Caller, EditorPage, Envelope, Milestone, MilestoneChanges, Stage } from './types';

export type Load =
  | { status: 'loading' }
  | { status: 'error'; error: ApiError }
  | { status: 'ready'; envelope: Envelope };

export interface Notice {
  variant: 'success' | 'info' | 'warning' | 'danger';
  title: string;
  message?: string;
}

export interface PlanState {
  load: Load;
  notice: Notice | null;
  busy: boolean;
  reload: () => Promise<void>;
  create: (template: string, title?: string, dealName?: string) => Promise<void>;
  changeMilestone: (milestone: Milestone, changes: MilestoneChanges) => Promise<boolean>;
  move: (stage: Stage, milestoneId: string, delta: -1 | 1) => Promise<void>;
  buyerLink: (rotate: boolean) => Promise<void>;
  announce: (notice: Notice | null) => void;
  /** A short-lived editor URL; `page` 'content' lands on the plan's content blocks. */
  editorLink: (page?: EditorPage) => Promise<string | null>;
}

export const CONFLICT_NOTICE: Notice = {
  variant: 'warning',
  title: 'Someone else changed this milestone',
  message:
    'The card now shows the latest version of the plan. Make your change again if it is still needed.',
};

export function usePlan(caller: Caller, dealId: string): PlanState {
  const [load, setLoad] = useState<Load>({ status: 'loading' });
  const [notice, setNotice] = useState<Notice | null>(null);
  const [busy, setBusy] = useState(false);

  const { origin, portalId, userId, userEmail } = caller;
  const who: Caller = { origin, portalId, userId, userEmail };

  const reload = useCallback(async () => {
    try {
      const envelope = await api.getPlan({ origin, portalId, userId, userEmail }, dealId);
      setLoad({ status: 'ready', envelope });
    } catch (error) {
      setLoad({ status: 'error', error: toApiError(error) });
    }
  }, [origin, portalId, userId, userEmail, dealId]);

  useEffect(() => {
    void reload();
  }, [reload]);

  const envelope = load.status === 'ready' ? load.envelope : null;
  const planId = envelope?.plan?.id ?? null;

  /** Runs one backend call; true when it succeeded. */
  async function run<T>(
    request: () => Promise<T>,
    onSuccess: (result: T) => void,
  ): Promise<boolean> {
    setBusy(true);
    try {
      onSuccess(await request());
      return true;
    } catch (raw) {
      const error = toApiError(raw);
      if (error.status === 412) {
        setNotice(CONFLICT_NOTICE);
        await reload();
      } else {
        setNotice({
          variant: 'danger',
          title: error.problem.title || 'The change was not saved',
          message: problemText(error.problem),
        });
      }
      return false;
    } finally {
      setBusy(false);
    }
  }

  const replace = (next: Envelope) => setLoad({ status: 'ready', envelope: next });

  return {
    load,
    notice,
    busy,
    reload,

    create: async (template, title, dealName) => {
      await run(() => api.createPlan(who, dealId, template, title, dealName), (next) => {
        replace(next);
        setNotice({ variant: 'success', title: 'Plan created' });
      });
    },

    changeMilestone: (milestone, changes) => {
      setNotice(null);
      return run(() => api.updateMilestone(who, milestone.id, milestone.version, changes), replace);
    },

    move: async (stage, milestoneId, delta) => {
      if (!planId) return;
      const ids = stage.milestones.map((m) => m.id);
      const from = ids.indexOf(milestoneId);
      const to = from + delta;
      if (from < 0 || to < 0 || to >= ids.length) return;
      [ids[from], ids[to]] = [ids[to], ids[from]];
      await run(() => api.reorderMilestones(who, planId, stage.id, ids), replace);
    },

    buyerLink: async (rotate) => {
      if (!planId || !envelope) return;
      await run(() => api.buyerLink(who, planId, rotate), ({ url }) => {
        setLoad({ status: 'ready', envelope: { ...envelope, buyer_link: { url } } });
        setNotice(
          rotate
            ? {
                variant: 'success',
                title: 'Buyer link rotated',
                message: 'The old link no longer works. Send the new one to the buyer.',
              }
            : { variant: 'success', title: 'Buyer link created' },
        );
      });
    },

    announce: setNotice,

    editorLink: async (page?: EditorPage) => {
      if (!planId) return null;
      let url: string | null = null;
      const request = page ? () => api.editorLink(who, planId, page) : () => api.editorLink(who, planId);
      await run(request, (link) => {
        url = link.url;
      });
      return url;
    },
  };
}
