/** Whether the plan has reached HubSpot, what failed, and deal-stage mismatches. */
import { Alert, Flex, Heading, StatusTag, Text } from '@hubspot/ui-extensions';

import type { Envelope, SyncStatus } from '../types';

const MODE_LABEL: Record<Envelope['mode'], string> = {
  custom_objects: 'Plan and milestones are mirrored as HubSpot custom objects.',
  deal_properties:
    'This account has no custom objects (they need an Enterprise subscription), so only the deal summary properties are updated.',
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
          {sync.mismatch.kind === 'ahead'
            ? `The deal is at "${sync.mismatch.deal_stage}", ahead of the plan, which expects "${sync.mismatch.expected_stage}". Complete the milestones or move the deal back.`
            : `The deal is at "${sync.mismatch.deal_stage}", behind the plan, which expects "${sync.mismatch.expected_stage}". MutualPlan does not move a deal a rep has moved; update the stage if the plan is right.`}
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
