/**
 * Shown when the backend trimmed the plan to keep the card answer under HubSpot's 1 MB
 * hubspot.fetch limit (Plan.milestones_truncated, Plan.milestone_count; see types.ts).
 */
import { Alert, Button, Text } from '@hubspot/ui-extensions';

import type { Plan } from '../types';

interface Props {
  plan: Plan;
  busy: boolean;
  onOpenEditor: () => void;
}

export function shownMilestones(plan: Plan): number {
  return plan.stages.reduce((n, stage) => n + stage.milestones.length, 0);
}

export function TruncatedNotice({ plan, busy, onOpenEditor }: Props) {
  if (!plan.milestones_truncated) return null;
  const shown = shownMilestones(plan);
  const total = Math.max(plan.milestone_count ?? plan.progress.total, shown);
  return (
    <Alert testId="truncated" title={`Showing ${shown} of ${total} milestones`} variant="info">
      <Text testId="truncated-text">
        This plan is too large to show in full here. Open the full editor to see and reorder every
        milestone.
      </Text>
      <Button testId="truncated-open-editor" disabled={busy} onClick={onOpenEditor}>
        Open the full editor
      </Button>
    </Alert>
  );
}
