/** One stage of the plan and its milestones, in order. */
import { Flex, Heading, Text } from '@hubspot/ui-extensions';

import type { Milestone, MilestoneChanges, Stage } from '../types';
import { MilestoneTile } from './MilestoneTile';

interface Props {
  stage: Stage;
  busy: boolean;
  /** The backend left milestones out of the plan (see types.ts Plan.milestones_truncated). */
  trimmed?: boolean;
  onChange: (milestone: Milestone, changes: MilestoneChanges) => Promise<boolean>;
  onMove: (milestoneId: string, delta: -1 | 1) => void;
}

export function StageSection({ stage, busy, trimmed = false, onChange, onMove }: Props) {
  const milestones = [...stage.milestones].sort((a, b) => a.position - b.position);
  const done = milestones.filter((m) => m.status === 'done').length;
  const total = stage.milestone_count ?? milestones.length;
  // A stage the backend trimmed cannot be reordered here: the card does not know every id.
  const partial = trimmed && (stage.milestone_count === undefined || total > milestones.length);
  return (
    <Flex direction="column" gap="xs" testId={`stage-${stage.id}`}>
      <Flex gap="sm" align="baseline">
        <Heading testId={`stage-name-${stage.id}`}>{stage.name}</Heading>
        <Text variant="microcopy" testId={`stage-count-${stage.id}`}>
          {partial
            ? `${milestones.length} of ${total} shown`
            : `${done} of ${milestones.length} done`}
        </Text>
      </Flex>
      {milestones.length === 0 && <Text variant="microcopy">No milestones in this stage.</Text>}
      {milestones.map((milestone, index) => (
        <MilestoneTile
          key={milestone.id}
          milestone={milestone}
          busy={busy}
          first={partial || index === 0}
          last={partial || index === milestones.length - 1}
          onChange={onChange}
          onMove={(delta) => onMove(milestone.id, delta)}
        />
      ))}
    </Flex>
  );
}
