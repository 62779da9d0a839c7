/** Whether the plan has reached HubSpot, what failed, and deal-stage mismatches. */
import { Alert, Flex, Heading, StatusTag, Text } from '@hubspot/ui-extensions';

import type { Envelope, SyncStatus } from '../types';

const MODE_LABEL: Record<Envelope['mode'], string> = {
  custom_objects: 'Plan and milestones are mirrored as HubSpot custom objects.',
  deal_properties:
    'This account has no custom objects (they need an Enterprise subscription), so only the deal summary properties are updated.',
};

/** Shown only when an older backend sends a mismatch without advice; never "move the deal back". */
const FALLBACK_ADVICE: Record<'ahead' | 'behind', string> = {
  ahead:
    'The deal is further along than the plan. Mark done the milestones that already happened; MutualPlan never moves a deal back.',
  behind:
    'The deal was moved back in HubSpot. MutualPlan does not undo a rep\'s move: move the deal if the plan is right, or mark a milestone not done.',
};

/** How many recent failures to list. */
const SHOWN_FAILURES = 3;

export function SyncPanel({ mode, sync }: { mode: Envelope['mode']; sync: SyncStatus }) {
  return (
    <Flex direction="column" gap="xs">
      <Heading>HubSpot sync</Heading>
      <Flex gap="sm" align="center">
        <SyncTag sync={sync} />
        {sync.last_pushed_at && (
          <Text variant="microcopy" testId="last-pushed">
            Last update sent {sync.last_pushed_at}
          </Text>
        )}
      </Flex>
      {sync.state === 'failed' &&
        sync.dead_letters.slice(0, SHOWN_FAILURES).map((failure, i) => (
          <Text key={i} testId="sync-failure" variant="microcopy">
            {failure.at}: {failure.error}
          </Text>
        ))}
      {sync.mismatch && (
        <Alert testId="mismatch" title="Deal stage and plan disagree" variant="warning">
          {sync.advice || FALLBACK_ADVICE[sync.mismatch.kind]}
        </Alert>
      )}
      <Text variant="microcopy" testId="mode">
        {MODE_LABEL[mode]}
      </Text>
    </Flex>
  );
}

function SyncTag({ sync }: { sync: SyncStatus }) {
  switch (sync.state) {
    case 'synced':
      return (
        <StatusTag testId="sync-state" variant="success">
          Synced
        </StatusTag>
      );
    case 'pending':
      return (
        <StatusTag testId="sync-state" variant="warning">
          {`Pending (${sync.pending} ${sync.pending === 1 ? 'change' : 'changes'})`}
        </StatusTag>
      );
    case 'failed':
      return (
        <StatusTag testId="sync-state" variant="danger">
          Sync failed
        </StatusTag>
      );
  }
}
